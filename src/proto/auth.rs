//! Credentials on the wire: the MD5 challenge key. (HTTP Digest, which answers a server's
//! challenge per request, lives with the rest of AJAM in `http.rs`.)

use md5::{Digest, Md5};

use super::action::hex_lower;

/// The `Key` for an MD5 challenge login: lowercase hex of md5(challenge + secret).
/// Asterisk compares it as a string, so the case matters.
pub fn md5_key(challenge: &str, secret: &str) -> String {
    let mut hasher = Md5::new();
    hasher.update(challenge.as_bytes());
    hasher.update(secret.as_bytes());
    hex_lower(&hasher.finalize())
}
