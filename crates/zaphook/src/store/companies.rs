//! Companies and their API tokens (and the dashboard sessions opened with them), connections
//! (with their external API configs), queues and agents: the repository operations every
//! backend implements for them.

use crate::domain::{ApiConfig, Channel, CloudConfig, Connection, Queue, User};

use super::StoreResult;

/// A dashboard sign-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UiSession {
    pub company_id: i64,
    /// The API token signed in with (its hash).
    pub token_hash: String,
    /// What every form of the session must carry.
    pub csrf: String,
    pub created_at: i64,
    pub expires_at: i64,
}

pub trait CompanyTx {
    fn insert_company(&mut self, name: &str, now: i64) -> StoreResult<i64>;
    fn company_exists(&mut self, id: i64) -> StoreResult<bool>;
    fn company_count(&mut self) -> StoreResult<i64>;
    fn insert_token(
        &mut self,
        company_id: i64,
        prefix: &str,
        hash: &str,
        now: i64,
    ) -> StoreResult<()>;
    /// The company of a live token, by the token's hash.
    fn token_company(&mut self, hash: &str) -> StoreResult<Option<i64>>;
    /// Revokes the live tokens whose prefix starts with `prefix`; answers how many.
    fn revoke_tokens(&mut self, prefix: &str, now: i64) -> StoreResult<usize>;
    /// Opens a dashboard session under the hash of its cookie.
    fn insert_ui_session(&mut self, id_hash: &str, session: &UiSession) -> StoreResult<()>;
    /// The session of a cookie, while it has not expired at `now` and its API token is not
    /// revoked.
    fn ui_session(&mut self, id_hash: &str, now: i64) -> StoreResult<Option<UiSession>>;
    /// Ends a session (signing out); answers whether there was one.
    fn delete_ui_session(&mut self, id_hash: &str) -> StoreResult<bool>;
    /// Deletes the sessions expired at `now`.
    fn prune_ui_sessions(&mut self, now: i64) -> StoreResult<usize>;
    fn insert_connection(
        &mut self,
        company_id: i64,
        name: &str,
        channel: Channel,
        cloud: Option<&CloudConfig>,
        now: i64,
    ) -> StoreResult<Connection>;
    fn connection(&mut self, company_id: i64, id: i64) -> StoreResult<Option<Connection>>;
    fn connections(&mut self, company_id: i64) -> StoreResult<Vec<Connection>>;
    /// Stores `config` (its id and token hash new) with the token's hash.
    fn insert_api_config(&mut self, config: &ApiConfig, token_hash: &str) -> StoreResult<()>;
    /// A live external API config of the company.
    fn api_config(&mut self, company_id: i64, id: &str) -> StoreResult<Option<ApiConfig>>;
    /// Changes a live API config's name and `authToken`; answers whether one was found.
    fn update_api_config(
        &mut self,
        company_id: i64,
        id: &str,
        name: &str,
        auth_token: Option<&str>,
    ) -> StoreResult<bool>;
    /// The live external API configs of a connection, oldest first.
    fn api_configs(&mut self, company_id: i64, connection_id: i64) -> StoreResult<Vec<ApiConfig>>;
    /// The live external API config of a token, by the token's hash.
    fn api_config_by_token(&mut self, token_hash: &str) -> StoreResult<Option<ApiConfig>>;
    /// Revokes an external API config; answers whether a live one was found.
    fn revoke_api_config(&mut self, company_id: i64, id: &str, now: i64) -> StoreResult<bool>;
    fn insert_queue(&mut self, company_id: i64, name: &str, now: i64) -> StoreResult<Queue>;
    fn queue(&mut self, company_id: i64, id: i64) -> StoreResult<Option<Queue>>;
    fn queues(&mut self, company_id: i64) -> StoreResult<Vec<Queue>>;
    fn insert_user(
        &mut self,
        company_id: i64,
        name: &str,
        email: &str,
        now: i64,
    ) -> StoreResult<User>;
    fn user(&mut self, company_id: i64, id: i64) -> StoreResult<Option<User>>;
    fn users(&mut self, company_id: i64) -> StoreResult<Vec<User>>;
}
