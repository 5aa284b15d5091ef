//! UTC timestamps in the formats Asterisk prints (no timezone database: the simulator is UTC).

use std::time::SystemTime;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stamp {
    pub(crate) year: i64,
    pub(crate) month: u32,
    pub(crate) day: u32,
    pub(crate) hour: u32,
    pub(crate) minute: u32,
    pub(crate) second: u32,
    pub(crate) micros: u32,
    pub(crate) epoch: u64,
}

impl Stamp {
    pub(crate) fn of(t: SystemTime) -> Stamp {
        let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
        let secs = d.as_secs();
        let (year, month, day) = civil_from_days((secs / 86_400) as i64);
        let rem = secs % 86_400;
        Stamp {
            year,
            month,
            day,
            hour: (rem / 3600) as u32,
            minute: (rem / 60 % 60) as u32,
            second: (rem % 60) as u32,
            micros: d.subsec_micros(),
            epoch: secs,
        }
    }

    pub(crate) fn date(&self) -> String {
        format!("{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }

    pub(crate) fn time(&self) -> String {
        format!("{:02}:{:02}:{:02}", self.hour, self.minute, self.second)
    }

    /// `2026-11-26T11:02:58.459+0000` (security events).
    pub(crate) fn event_tv(&self) -> String {
        format!(
            "{}T{}.{:03}+0000",
            self.date(),
            self.time(),
            self.micros / 1000
        )
    }

    /// `1795690978.459736` (Ping).
    pub(crate) fn epoch_micros(&self) -> String {
        format!("{}.{:06}", self.epoch, self.micros)
    }

    /// `2026-11-26 11:03:49` (Cdr).
    pub(crate) fn cdr(&self) -> String {
        format!("{} {}", self.date(), self.time())
    }
}

/// Howard Hinnant's days-to-civil conversion.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_a_known_instant() {
        // 1795690978.459736 is 2026-11-26T11:02:58.459Z (tcp-login-logoff.jsonl).
        let t = SystemTime::UNIX_EPOCH + Duration::from_micros(1_795_690_978_459_736);
        let s = Stamp::of(t);
        assert_eq!(s.event_tv(), "2026-11-26T11:02:58.459+0000");
        assert_eq!(s.epoch_micros(), "1795690978.459736");
        assert_eq!(s.cdr(), "2026-11-26 11:02:58");
    }
}
