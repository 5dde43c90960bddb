//! Webhook endpoints, their settings, secrets and health: the repository operations every
//! backend implements for them.

use crate::domain::{Webhook, WebhookFormat, WebhookSpec};

use super::StoreResult;

/// Signing material and address of an endpoint, as a delivery worker needs them.
#[derive(Debug, Clone)]
pub struct Target {
    pub webhook_id: i64,
    pub url: String,
    pub secret: String,
    /// The secret being rotated out, while it still signs alongside the new one.
    pub previous_secret: Option<String>,
    pub token: Option<String>,
    /// The body the endpoint takes, which decides the header `token` goes in.
    pub format: WebhookFormat,
    /// Most attempts per second, when limited.
    pub rate_limit: Option<i64>,
}

pub trait WebhookTx {
    fn insert_webhook(
        &mut self,
        company_id: i64,
        spec: &WebhookSpec,
        now: i64,
    ) -> StoreResult<Webhook>;
    fn webhook(&mut self, company_id: i64, id: i64) -> StoreResult<Option<WebhookSpec>>;
    fn webhook_view(&mut self, company_id: i64, id: i64) -> StoreResult<Option<Webhook>>;
    fn webhooks(&mut self, company_id: i64) -> StoreResult<Vec<Webhook>>;
    fn update_webhook(
        &mut self,
        company_id: i64,
        id: i64,
        spec: &WebhookSpec,
        now: i64,
    ) -> StoreResult<()>;
    fn delete_webhook(&mut self, company_id: i64, id: i64) -> StoreResult<bool>;
    /// Replaces the secret; the old one keeps signing until `previous_until`.
    fn rotate_secret(
        &mut self,
        company_id: i64,
        id: i64,
        secret: &str,
        previous_until: i64,
    ) -> StoreResult<bool>;
    fn target(&mut self, company_id: i64, id: i64, now: i64) -> StoreResult<Option<Target>>;
    /// The company an endpoint belongs to (for the command line, which has no token).
    fn webhook_company(&mut self, id: i64) -> StoreResult<Option<i64>>;
    fn disabled_webhooks(&mut self) -> StoreResult<i64>;
}
