//! Deadlines that cannot overflow the clock: `timeout=sys.maxsize` (a common "no timeout")
//! or a huge keepalive means "not in this process's lifetime", never a panic in the driver.

use std::time::Duration;

use tokio::time::Instant;

/// About thirty years: later than any process lives, early enough to add to any `Instant`.
const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 30);

/// `from + after`, saturated at [`FAR_FUTURE`] from `from`.
pub(crate) fn deadline_after(from: Instant, after: Duration) -> Instant {
    from + after.min(FAR_FUTURE)
}

/// One action's deadline, kept across every retry it takes (a Digest stale nonce, a cookie
/// re-login): each request gets what is left, never a fresh full timeout.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Deadline {
    pub(crate) at: Instant,
    /// The whole timeout, for the error's text.
    pub(crate) total: Duration,
}

impl Deadline {
    pub(crate) fn after(total: Duration) -> Deadline {
        Deadline {
            at: deadline_after(Instant::now(), total),
            total,
        }
    }

    /// What is left, or None once it passed.
    pub(crate) fn remaining(&self) -> Option<Duration> {
        Some(self.at.saturating_duration_since(Instant::now())).filter(|d| !d.is_zero())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saturates_instead_of_overflowing() {
        let now = Instant::now();
        assert_eq!(deadline_after(now, Duration::MAX), now + FAR_FUTURE);
        let second = Duration::from_secs(1);
        assert_eq!(deadline_after(now, second), now + second);
    }
}
