//! The WhatsApp Cloud API channel: Meta's signed callbacks in (verified, kept in the inbox,
//! read into ingest commands), messages out through the Graph API, media fetched and stored.

pub mod content;
pub mod graph;
pub mod inbox;
pub mod media;
pub mod notify;
pub mod outbound;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Whether `header` (`X-Hub-Signature-256`) is `sha256=` and the lowercase or uppercase hex
/// HMAC-SHA256 of the raw `body` with the app secret. Compared in constant time.
pub fn signature_valid(app_secret: &str, header: Option<&str>, body: &[u8]) -> bool {
    let Some(hex) = header.and_then(|h| h.trim().strip_prefix("sha256=")) else {
        return false;
    };
    let Some(given) = decode_hex(hex) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(app_secret.as_bytes()) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&given).is_ok()
}

/// Whether two secrets are equal, in time that does not depend on where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() != 64 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_checked_over_the_raw_bytes() {
        // The check of the shared fixtures' README.
        let body = "{\"text\":{\"body\":\"café\"}}".as_bytes();
        let good = "sha256=d0c411924f46299702b190bbe4b5da59c4bb5641ea114e4e11535ad85929c4f0";
        assert!(signature_valid("test_app_secret", Some(good), body));
        assert!(signature_valid(
            "test_app_secret",
            Some(&good.to_uppercase().replace("SHA256=", "sha256=")),
            body
        ));
        assert!(!signature_valid("other_secret", Some(good), body));
        assert!(!signature_valid(
            "test_app_secret",
            Some(good),
            b"{\"text\":{\"body\":\"cafe\"}}"
        ));
        assert!(!signature_valid("test_app_secret", None, body));
        assert!(!signature_valid("test_app_secret", Some("sha1=abc"), body));
        assert!(!signature_valid("test_app_secret", Some("sha256=zz"), body));
        assert!(!signature_valid("test_app_secret", Some("sha256=é€"), body));
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("verify-me", "verify-me"));
        assert!(!same_secret("verify-me", "verify-m"));
        assert!(!same_secret("verify-me", "verify-mx"));
    }
}
