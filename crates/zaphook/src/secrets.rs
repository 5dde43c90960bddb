//! The server's secret key and the sealing of secrets at rest (a connection's Cloud API access
//! token, app secret and verify token) with ChaCha20-Poly1305. The key lives apart from the
//! database: given by `--secret-key` / `ZAPHOOK_SECRET_KEY`, or generated on first start into
//! `<data-dir>/secret.key` (mode 0600), so a copy of the database alone reveals no secret.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

/// File of the generated key inside the data directory.
pub const KEY_FILE: &str = "secret.key";

/// Format byte of a sealed value, so another scheme can follow without guessing.
const VERSION: u8 = 1;
const NONCE_LEN: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(
        "the secret key must be 32 bytes as base64 (44 characters) or hex (64 characters); generate one with `openssl rand -base64 32`"
    )]
    BadKey,
    #[error("cannot read or write the secret key file {path}: {error}")]
    File {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(
        "a sealed secret could not be opened: it was sealed with another secret key, or it is damaged"
    )]
    Open,
}

/// The key that seals and opens secrets.
#[derive(Clone)]
pub struct SecretBox {
    cipher: ChaCha20Poly1305,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(…)")
    }
}

impl SecretBox {
    pub fn from_key(key: &[u8; 32]) -> Self {
        SecretBox {
            cipher: ChaCha20Poly1305::new(Key::from_slice(key)),
        }
    }

    /// A key from its text form: base64 or hex of 32 bytes.
    pub fn parse(text: &str) -> Result<Self, SecretError> {
        let text = text.trim();
        let bytes = if text.len() == 64 && text.chars().all(|c| c.is_ascii_hexdigit()) {
            (0..32)
                .map(|i| u8::from_str_radix(&text[i * 2..i * 2 + 2], 16))
                .collect::<Result<Vec<u8>, _>>()
                .map_err(|_| SecretError::BadKey)?
        } else {
            STANDARD.decode(text).map_err(|_| SecretError::BadKey)?
        };
        let key: [u8; 32] = bytes.try_into().map_err(|_| SecretError::BadKey)?;
        Ok(SecretBox::from_key(&key))
    }

    /// The given key, else the one in `<data_dir>/secret.key`, created (0600) when missing.
    pub fn load_or_create(data_dir: &Path, given: Option<&str>) -> Result<Self, SecretError> {
        if let Some(text) = given {
            return SecretBox::parse(text);
        }
        let path = data_dir.join(KEY_FILE);
        let file_error = |error| SecretError::File {
            path: path.clone(),
            error,
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => SecretBox::parse(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key: [u8; 32] = rand::random();
                write_private(&path, format!("{}\n", STANDARD.encode(key)).as_bytes())
                    .map_err(file_error)?;
                tracing::info!(path = %path.display(), "generated the secret key that seals connection secrets; back it up with the database");
                Ok(SecretBox::from_key(&key))
            }
            Err(e) => Err(file_error(e)),
        }
    }

    /// Encrypts `plain`; `context` (what the value is) must be the same to open it.
    pub fn seal(&self, context: &str, plain: &[u8]) -> Vec<u8> {
        let nonce: [u8; NONCE_LEN] = rand::random();
        let payload = Payload {
            msg: plain,
            aad: context.as_bytes(),
        };
        // Encryption fails only for messages beyond 2^38 bytes, far beyond a few secrets.
        let sealed = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), payload)
            .unwrap_or_default();
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    pub fn open(&self, context: &str, sealed: &[u8]) -> Result<Vec<u8>, SecretError> {
        let (version, rest) = sealed.split_first().ok_or(SecretError::Open)?;
        if *version != VERSION || rest.len() < NONCE_LEN {
            return Err(SecretError::Open);
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let payload = Payload {
            msg: ciphertext,
            aad: context.as_bytes(),
        };
        self.cipher
            .decrypt(Nonce::from_slice(nonce), payload)
            .map_err(|_| SecretError::Open)
    }
}

fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_the_same_key_and_context() {
        let a = SecretBox::from_key(&[7; 32]);
        let sealed = a.seal("cloud", b"token");
        assert_ne!(&sealed[13..], b"token");
        assert_eq!(a.open("cloud", &sealed).unwrap(), b"token");
        assert!(a.open("other", &sealed).is_err());
        assert!(
            SecretBox::from_key(&[8; 32])
                .open("cloud", &sealed)
                .is_err()
        );
        assert!(a.open("cloud", &sealed[..5]).is_err());
        assert!(a.open("cloud", &[]).is_err());
    }

    #[test]
    fn keys_parse_from_base64_or_hex() {
        let b64 = STANDARD.encode([1u8; 32]);
        let hex: String = [1u8; 32].iter().map(|b| format!("{b:02x}")).collect();
        let sealed = SecretBox::parse(&b64).unwrap().seal("c", b"x");
        assert_eq!(
            SecretBox::parse(&hex).unwrap().open("c", &sealed).unwrap(),
            b"x"
        );
        assert!(SecretBox::parse("short").is_err());
        assert!(SecretBox::parse(&STANDARD.encode([1u8; 16])).is_err());
    }

    #[test]
    fn a_generated_key_is_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = SecretBox::load_or_create(dir.path(), None).unwrap();
        let sealed = first.seal("c", b"x");
        let again = SecretBox::load_or_create(dir.path(), None).unwrap();
        assert_eq!(again.open("c", &sealed).unwrap(), b"x");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
