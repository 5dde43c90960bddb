//! Standard Webhooks signing: `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`, where
//! the key is the base64-decoded part of a `whsec_…` secret.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

const PREFIX: &str = "whsec_";

/// A new secret: `whsec_` and 32 random bytes in base64.
pub fn generate_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("{PREFIX}{}", STANDARD.encode(bytes))
}

/// The HMAC key of a secret, or `None` when it is not a `whsec_` secret of 24+ bytes.
pub fn secret_key(secret: &str) -> Option<Vec<u8>> {
    let key = STANDARD.decode(secret.strip_prefix(PREFIX)?).ok()?;
    (key.len() >= 24 && key.len() <= 64).then_some(key)
}

/// One `v1,…` signature of `body` for `id` at `timestamp` with `secret`.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &str) -> Option<String> {
    let key = secret_key(secret)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    Some(format!(
        "v1,{}",
        STANDARD.encode(mac.finalize().into_bytes())
    ))
}

/// The `webhook-signature` header: the current secret's signature, then the previous one's
/// while a rotation is in progress, space separated.
pub fn signature_header(
    secret: &str,
    previous: Option<&str>,
    id: &str,
    timestamp: i64,
    body: &str,
) -> String {
    [Some(secret), previous]
        .into_iter()
        .flatten()
        .filter_map(|s| sign(s, id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Checks a request against `secret`: one of the `v1,` signatures of `header` must match, and
/// `timestamp` must be within `tolerance_secs` of `now` (against replays).
pub fn verify(
    secret: &str,
    id: &str,
    timestamp: &str,
    body: &[u8],
    header: &str,
    now: i64,
    tolerance_secs: i64,
) -> Result<(), String> {
    let key = secret_key(secret).ok_or("the secret is not a whsec_ secret")?;
    let ts: i64 = timestamp
        .parse()
        .map_err(|_| format!("webhook-timestamp {timestamp:?} is not a number"))?;
    if (now - ts).abs() > tolerance_secs {
        return Err(format!(
            "webhook-timestamp is {}s away from now (tolerance {tolerance_secs}s)",
            now - ts
        ));
    }
    let mut expected = Hmac::<Sha256>::new_from_slice(&key).map_err(|e| e.to_string())?;
    expected.update(format!("{id}.{ts}.").as_bytes());
    expected.update(body);
    for signature in header.split(' ') {
        let Some(encoded) = signature.strip_prefix("v1,") else {
            continue;
        };
        if let Ok(given) = STANDARD.decode(encoded)
            && expected.clone().verify_slice(&given).is_ok()
        {
            return Ok(());
        }
    }
    Err("no v1 signature matches the secret".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_are_valid_keys() {
        let s = generate_secret();
        assert!(s.starts_with("whsec_"));
        assert_eq!(secret_key(&s).map(|k| k.len()), Some(32));
        assert_eq!(secret_key("whsec_c2hvcnQ="), None);
        assert_eq!(secret_key("nope"), None);
    }

    #[test]
    fn signature_matches_a_known_vector() {
        // The example of the Standard Webhooks specification.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = r#"{"test": 2432232314}"#;
        assert_eq!(
            sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body).as_deref(),
            Some("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
        );
    }

    #[test]
    fn verify_accepts_any_matching_signature_within_tolerance() {
        let (new, old) = (generate_secret(), generate_secret());
        let header = signature_header(&new, Some(&old), "evt_1", 1000, "{}");
        assert!(verify(&old, "evt_1", "1000", b"{}", &header, 1100, 300).is_ok());
        assert!(verify(&new, "evt_1", "1000", b"{}", &header, 1100, 300).is_ok());
        let other = generate_secret();
        assert!(verify(&other, "evt_1", "1000", b"{}", &header, 1100, 300).is_err());
        assert!(verify(&new, "evt_1", "1000", b"{ }", &header, 1100, 300).is_err());
        assert!(verify(&new, "evt_2", "1000", b"{}", &header, 1100, 300).is_err());
        assert!(verify(&new, "evt_1", "1000", b"{}", &header, 2000, 300).is_err());
        assert!(verify(&new, "evt_1", "soon", b"{}", &header, 1100, 300).is_err());
    }

    #[test]
    fn rotation_sends_both_signatures() {
        let (new, old) = (generate_secret(), generate_secret());
        let header = signature_header(&new, Some(&old), "evt_1", 1, "{}");
        let parts: Vec<_> = header.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(Some(parts[0]), sign(&new, "evt_1", 1, "{}").as_deref());
        assert_eq!(Some(parts[1]), sign(&old, "evt_1", 1, "{}").as_deref());
    }
}
