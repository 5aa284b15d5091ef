//! Variables as the dialplan sees them: channel variables, globals, a few built-ins and the
//! dialplan functions the recordings use, and `${...}` expansion.

use std::time::{Duration, SystemTime};

use super::model::ChanId;
use crate::sim::core::{Core, lock};
use crate::sim::time::Stamp;

/// A variable or function as the dialplan sees it (`${...}` inside `Set`, `UserEvent`...).
pub(crate) fn lookup(core: &Core, chan: Option<ChanId>, name: &str) -> String {
    if let Some((func, arg)) = name.strip_suffix(')').and_then(|n| n.split_once('(')) {
        return function(core, chan, func, arg);
    }
    if let Some(id) = chan {
        let calls = lock(&core.calls);
        if let Some(c) = calls.channels.get(&id) {
            if let Some((_, v)) = c.vars.iter().find(|(k, _)| k == name) {
                return v.clone();
            }
            match name {
                "CHANNEL" => return c.name.clone(),
                "UNIQUEID" => return c.uniqueid.clone(),
                "EXTEN" => return c.exten.clone(),
                "CONTEXT" => return c.context.clone(),
                _ => {}
            }
        }
    }
    lock(&core.globals).get(name).cloned().unwrap_or_default()
}

/// `LEN`, `GLOBAL`, `STRFTIME` and `CALLERID`; other functions read as empty.
fn function(core: &Core, chan: Option<ChanId>, func: &str, arg: &str) -> String {
    match func.to_ascii_uppercase().as_str() {
        "LEN" => arg.chars().count().to_string(),
        "GLOBAL" => lock(&core.globals).get(arg).cloned().unwrap_or_default(),
        "STRFTIME" => {
            // Only the epoch form the recording used: STRFTIME(<epoch>,UTC,%Y).
            let mut parts = arg.split(',');
            let epoch = parts.next().and_then(|e| e.trim().parse::<u64>().ok());
            let fmt = parts.nth(1).unwrap_or("");
            match epoch {
                Some(e) if fmt == "%Y" => {
                    Stamp::of(SystemTime::UNIX_EPOCH + Duration::from_secs(e))
                        .year
                        .to_string()
                }
                _ => String::new(),
            }
        }
        "CALLERID" => {
            let calls = lock(&core.calls);
            chan.and_then(|id| calls.channels.get(&id))
                .map(|c| match arg {
                    "name" => c.cid_name.clone(),
                    _ => c.cid_num.clone(),
                })
                .unwrap_or_default()
        }
        _ => String::new(),
    }
}

/// Expands `${...}` (nested too) in dialplan application data.
pub(crate) fn expand(core: &Core, chan: Option<ChanId>, text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let Some(end) = closing_brace(after) else {
            out.push_str(&rest[i..]);
            return out;
        };
        let inner = expand(core, chan, &after[..end]);
        out.push_str(&lookup(core, chan, &inner));
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// Where the `}` closing an opened `${` is, counting nested `${...}`.
fn closing_brace(after: &str) -> Option<usize> {
    let bytes = after.as_bytes();
    let mut depth = 1usize;
    let mut j = 0;
    while j < bytes.len() {
        if bytes[j] == b'$' && bytes.get(j + 1) == Some(&b'{') {
            depth += 1;
            j += 1;
        } else if bytes[j] == b'}' {
            depth -= 1;
            if depth == 0 {
                return Some(j);
            }
        }
        j += 1;
    }
    None
}
