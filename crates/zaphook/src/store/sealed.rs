//! What every backend seals with the server's secret key: a cloud connection's secrets, and
//! the check value that tells a server started with another key that it has the wrong one.

use serde::{Deserialize, Serialize};

use super::{StoreError, StoreResult};
use crate::domain::CloudConfig;
use crate::secrets::SecretBox;

/// What the sealed secrets of a cloud connection hold.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Secrets {
    pub access_token: String,
    pub app_secret: String,
    pub verify_token: String,
}

/// The additional data of every sealed connection secret: a sealed value opens only as one.
const SECRETS_CONTEXT: &str = "zaphook connection cloud secrets";

pub(crate) fn seal_secrets(secrets: &SecretBox, cloud: &CloudConfig) -> Vec<u8> {
    let plain = Secrets {
        access_token: cloud.access_token.clone(),
        app_secret: cloud.app_secret.clone(),
        verify_token: cloud.verify_token.clone(),
    };
    // Serialising three strings cannot fail.
    let json = serde_json::to_vec(&plain).unwrap_or_default();
    secrets.seal(SECRETS_CONTEXT, &json)
}

/// Opens the sealed secrets of connection `id`.
pub(crate) fn open_secrets(secrets: &SecretBox, id: i64, sealed: &[u8]) -> StoreResult<Secrets> {
    let plain = secrets
        .open(SECRETS_CONTEXT, sealed)
        .map_err(|e| StoreError::Corrupt(format!("connection {id}: {e}")))?;
    serde_json::from_slice(&plain)
        .map_err(|e| StoreError::Corrupt(format!("connection {id}: sealed secrets: {e}")))
}

const CHECK_CONTEXT: &str = "zaphook secret check";

/// The check value to record in a new database.
pub(crate) fn new_check(secrets: &SecretBox) -> Vec<u8> {
    secrets.seal(CHECK_CONTEXT, b"zaphook")
}

/// Whether `secrets` is the key that sealed the database's check value.
pub(crate) fn check(secrets: &SecretBox, sealed: &[u8]) -> StoreResult<()> {
    secrets.open(CHECK_CONTEXT, sealed).map(|_| ()).map_err(|_| {
        StoreError::SecretKey(
            "the secret key is not the one this database was set up with; start with that key (--secret-key, or the secret.key file kept beside the database)".into(),
        )
    })
}
