//! Which events a subscriber wants: name patterns and header conditions, evaluated in Rust on
//! the driver's thread so that unwanted events never reach the consumer's queue.

use regex::Regex;

use crate::proto::Message;

/// Case-insensitive glob (`*`, `?`) over event names and header values.
#[derive(Clone, Debug)]
pub enum Matcher {
    Exact(String),
    Glob(Regex),
    Regex(Regex),
}

impl Matcher {
    /// A pattern with `*`, `?` or `[` is a glob; anything else matches exactly (ignoring case).
    pub fn glob(pattern: &str) -> Result<Matcher, String> {
        if !pattern.contains(['*', '?', '[']) {
            return Ok(Matcher::Exact(pattern.to_owned()));
        }
        let mut re = String::from("(?is)^");
        let mut chars = pattern.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '*' => re.push_str(".*"),
                '?' => re.push('.'),
                '[' => {
                    let mut class = String::from("[");
                    if chars.peek() == Some(&'!') {
                        chars.next();
                        class.push('^');
                    }
                    for c in chars.by_ref() {
                        if c == ']' {
                            break;
                        }
                        if c == '\\' || c == '[' {
                            class.push('\\');
                        }
                        class.push(c);
                    }
                    class.push(']');
                    re.push_str(&class);
                }
                other => re.push_str(&regex::escape(&other.to_string())),
            }
        }
        re.push('$');
        Regex::new(&re)
            .map(Matcher::Glob)
            .map_err(|e| format!("bad pattern {pattern:?}: {e}"))
    }

    /// A regular expression, searched (not anchored) like Python's `re.search`.
    pub fn regex(pattern: &str) -> Result<Matcher, String> {
        Regex::new(pattern)
            .map(Matcher::Regex)
            .map_err(|e| format!("bad regex {pattern:?}: {e}"))
    }

    pub fn matches(&self, value: &str) -> bool {
        match self {
            Matcher::Exact(s) => s.eq_ignore_ascii_case(value),
            Matcher::Glob(re) | Matcher::Regex(re) => re.is_match(value),
        }
    }
}

/// Which events a subscriber wants: any of the name patterns (none = all), and for every
/// header condition, any of its matchers.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub names: Vec<Matcher>,
    pub headers: Vec<(String, Vec<Matcher>)>,
}

impl Filter {
    pub fn matches(&self, msg: &Message) -> bool {
        if !self.names.is_empty() {
            let Some(name) = msg.event_name() else {
                return false;
            };
            if !self.names.iter().any(|m| m.matches(&name)) {
                return false;
            }
        }
        self.headers.iter().all(|(header, matchers)| {
            msg.get(header)
                .is_some_and(|value| matchers.iter().any(|m| m.matches(&value)))
        })
    }
}
