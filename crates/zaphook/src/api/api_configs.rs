//! Keys to the WHAZING external API: a connection's API configs, each an `apiId` and a token
//! (shown once, stored hashed) that `/v1/api/external/{apiId}/…` takes, with izing's older
//! hooks: `urlMessageStatus` (the acks of the messages of the tickets the config last used)
//! and `urlServiceStatus` (the connection's state), and the `authToken` sent with them as a
//! raw `authorization` header.
//!
//! Each hook is a webhook endpoint the config owns (format `hook_message_status` or
//! `hook_session_status`), so it has the outbox, signing, retries, per-ticket order and the
//! delivery log of every endpoint. It is made, changed and removed with its config's URL here;
//! `/api/v1/webhooks` lists it (with its `apiConfigId`), tests it, rotates its secret and
//! shows its deliveries, but refuses to change or remove it on its own.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::{ApiError, ApiResult, Checks};
use super::extract::{Company, Json, Path, nullable, token_hash};
use super::webhooks::check_target;
use crate::delivery::sign;
use crate::delivery::ssrf::TargetPolicy;
use crate::domain::{ApiConfig, Filters, Ordering, Webhook, WebhookFormat, WebhookSpec, new_uuid};
use crate::store::{self, StoreError, Tx};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_api_config, list_api_configs))
        .routes(routes!(patch_api_config, revoke_api_config))
}

/// A token of the external API: `zx_` and 32 random characters, so it is never mistaken for a
/// `zh_` token of zaphook's own API.
fn generate_external_token() -> String {
    let bytes: [u8; 24] = rand::random();
    format!("zx_{}", URL_SAFE_NO_PAD.encode(bytes))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewApiConfig {
    name: String,
    /// izing's hook for the acks of messages (`hookMessageStatus`); empty means none.
    url_message_status: Option<String>,
    /// izing's hook for the connection's state (`hookSessionStatus`); empty means none.
    url_service_status: Option<String>,
    /// Sent as a raw `authorization` header with every hook request; never shown.
    auth_token: Option<String>,
}

/// Changes to an API config: keys left out keep their value; `null` or `""` removes a hook
/// (its endpoint and delivery log) or the `authToken`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApiConfigPatch {
    name: Option<String>,
    /// Giving it (even unchanged) also enables the hook's endpoint again if it was disabled.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    url_message_status: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    url_service_status: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    auth_token: Option<Option<String>>,
}

/// An API config as the API shows it: never its token nor its `authToken`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiConfigView {
    #[serde(flatten)]
    config: ApiConfig,
    /// Where the acks of the messages of the tickets this config last used are POSTed.
    url_message_status: Option<String>,
    /// Where the connection's state changes are POSTed.
    url_service_status: Option<String>,
    /// The endpoint of `urlMessageStatus` in `/api/v1/webhooks` (its deliveries, test, secret).
    message_status_webhook_id: Option<i64>,
    /// The endpoint of `urlServiceStatus` in `/api/v1/webhooks`.
    service_status_webhook_id: Option<i64>,
    /// Whether an `authToken` is set (it is never shown).
    has_auth_token: bool,
    /// The signing secrets of the hook endpoints this request made, shown only here (later
    /// through `POST /api/v1/webhooks/{id}/rotate-secret`).
    #[serde(skip_serializing_if = "Option::is_none")]
    hook_secrets: Option<HookSecrets>,
}

#[derive(Debug, Default, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HookSecrets {
    #[serde(skip_serializing_if = "Option::is_none")]
    url_message_status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    url_service_status: Option<String>,
}

impl ApiConfigView {
    /// `config` with its hooks, out of the company's endpoints.
    fn of(config: ApiConfig, endpoints: &[Webhook]) -> Self {
        let hook = |format| {
            endpoints.iter().find(|w| {
                w.format == format && w.api_config_id.as_deref() == Some(config.id.as_str())
            })
        };
        let (message, service) = (
            hook(WebhookFormat::HookMessageStatus),
            hook(WebhookFormat::HookSessionStatus),
        );
        ApiConfigView {
            url_message_status: message.map(|w| w.url.clone()),
            url_service_status: service.map(|w| w.url.clone()),
            message_status_webhook_id: message.map(|w| w.id),
            service_status_webhook_id: service.map(|w| w.id),
            has_auth_token: config.auth_token.is_some(),
            hook_secrets: None,
            config,
        }
    }
}

/// A new API config with its token, shown only in this answer.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedApiConfig {
    #[serde(flatten)]
    config: ApiConfigView,
    /// The bearer token of `/v1/api/external/{apiId}`; stored hashed, never shown again.
    token: String,
}

/// A hook URL as given: `None` when empty (izing's forms send `""` for none).
fn hook_url(
    checks: &mut Checks,
    field: &str,
    url: Option<&str>,
    targets: &TargetPolicy,
) -> Option<String> {
    let url = url.map(str::trim).filter(|u| !u.is_empty())?;
    Some(check_target(checks, field, url, targets))
}

/// The `authToken` as given: `None` when empty; it must fit in an HTTP header.
fn auth_token(checks: &mut Checks, token: Option<&str>) -> Option<String> {
    let token = checks.optional_text("authToken", token, 512)?;
    if HeaderValue::from_str(&token).is_err() {
        checks.fail(
            "authToken",
            "must fit in an HTTP header: visible characters and spaces, no line breaks",
        );
    }
    Some(token)
}

/// What a request asks of one hook: `None` leaves it as it is, `Some(None)` removes it,
/// `Some(Some(url))` sets it (and enables its endpoint).
type HookChange = Option<Option<String>>;

/// Makes, changes or removes the hook endpoints of `config` as asked, and gives every one
/// the config's `authToken`. Answers the secrets of the endpoints it made.
fn sync_hooks(
    tx: &mut dyn Tx,
    config: &ApiConfig,
    changes: [(WebhookFormat, HookChange); 2],
    now: i64,
) -> ApiResult<Option<HookSecrets>> {
    let company = config.company_id;
    let owned: Vec<Webhook> = tx
        .webhooks(company)?
        .into_iter()
        .filter(|w| w.api_config_id.as_deref() == Some(config.id.as_str()))
        .collect();
    let mut secrets = HookSecrets::default();
    for (format, change) in changes {
        let current = owned.iter().find(|w| w.format == format);
        let description = Some(format!("{format} hook of API config {}", config.name));
        match (current, change) {
            (None, None | Some(None)) => {}
            (Some(w), Some(None)) => {
                tx.delete_webhook(company, w.id)?;
            }
            (Some(w), change) => {
                let Some(mut spec) = tx.webhook(company, w.id)? else {
                    continue;
                };
                if let Some(Some(url)) = change {
                    spec.url = url;
                    spec.enabled = true;
                }
                spec.token = config.auth_token.clone();
                spec.description = description;
                tx.update_webhook(company, w.id, &spec, now)?;
            }
            (None, Some(Some(url))) => {
                let spec = WebhookSpec {
                    url,
                    events: format.hook_event().into_iter().collect(),
                    format,
                    api_config_id: Some(config.id.clone()),
                    connection_id: Some(config.connection_id),
                    queue_id: None,
                    start_on_transfer: false,
                    filters: Filters::default(),
                    ordering: Ordering::Ticket,
                    token: config.auth_token.clone(),
                    secret: sign::generate_secret(),
                    description,
                    enabled: true,
                    rate_limit: None,
                };
                tx.insert_webhook(company, &spec, now)?;
                let secret = Some(spec.secret);
                match format {
                    WebhookFormat::HookMessageStatus => secrets.url_message_status = secret,
                    _ => secrets.url_service_status = secret,
                }
            }
        }
    }
    let made = secrets.url_message_status.is_some() || secrets.url_service_status.is_some();
    Ok(made.then_some(secrets))
}

/// The view of `config` as stored now, with the secrets a request made.
fn view(
    tx: &mut dyn Tx,
    config: ApiConfig,
    secrets: Option<HookSecrets>,
) -> ApiResult<ApiConfigView> {
    let endpoints = tx.webhooks(config.company_id)?;
    Ok(ApiConfigView {
        hook_secrets: secrets,
        ..ApiConfigView::of(config, &endpoints)
    })
}

/// Creates a key to the WHAZING external API of a connection, with izing's hooks if given
/// (their endpoints' signing secrets are in `hookSecrets`).
#[utoipa::path(post, path = "/api/v1/connections/{id}/api-configs", tag = "external api",
    params(("id" = i64, Path)), request_body = NewApiConfig,
    responses((status = 201, body = CreatedApiConfig), (status = 404, body = super::Problem),
        (status = 422, body = super::Problem)))]
async fn create_api_config(
    State(state): State<AppState>,
    Company(company): Company,
    Path(connection_id): Path<i64>,
    Json(body): Json<NewApiConfig>,
) -> ApiResult<(StatusCode, axum::Json<CreatedApiConfig>)> {
    let targets = state.sender.targets();
    let mut checks = Checks::default();
    let name = checks.text("name", &body.name, 100);
    let message_url = hook_url(
        &mut checks,
        "urlMessageStatus",
        body.url_message_status.as_deref(),
        targets,
    );
    let service_url = hook_url(
        &mut checks,
        "urlServiceStatus",
        body.url_service_status.as_deref(),
        targets,
    );
    let auth = auth_token(&mut checks, body.auth_token.as_deref());
    checks.done()?;
    let token = generate_external_token();
    let now = state.ingest.clock.now_ms();
    let config = ApiConfig {
        id: new_uuid(),
        company_id: company,
        connection_id,
        name,
        token_prefix: token.chars().take(11).collect(),
        created_at: now,
        auth_token: auth,
    };
    let hash = token_hash(&token);
    let created = store::write(&state.ingest.store, move |tx| {
        if tx.connection(company, connection_id)?.is_none() {
            return Ok(None);
        }
        tx.insert_api_config(&config, &hash)?;
        let changes = [
            (WebhookFormat::HookMessageStatus, Some(message_url.clone())),
            (WebhookFormat::HookSessionStatus, Some(service_url.clone())),
        ];
        let secrets = sync_hooks(tx, &config, changes, now)?;
        view(tx, config.clone(), secrets).map(Some)
    })
    .await?;
    let config =
        created.ok_or_else(|| ApiError::NotFound(format!("connection {connection_id}")))?;
    Ok((
        StatusCode::CREATED,
        axum::Json(CreatedApiConfig { config, token }),
    ))
}

/// The live API configs of a connection, with their hooks (their tokens are not shown).
#[utoipa::path(get, path = "/api/v1/connections/{id}/api-configs", tag = "external api",
    params(("id" = i64, Path)),
    responses((status = 200, body = Vec<ApiConfigView>), (status = 404, body = super::Problem)))]
async fn list_api_configs(
    State(state): State<AppState>,
    Company(company): Company,
    Path(connection_id): Path<i64>,
) -> ApiResult<axum::Json<Vec<ApiConfigView>>> {
    let list = store::read(&state.ingest.store, move |tx| {
        if tx.connection(company, connection_id)?.is_none() {
            return Ok(None);
        }
        let endpoints = tx.webhooks(company)?;
        let configs = tx.api_configs(company, connection_id)?;
        Ok::<_, StoreError>(Some(
            configs
                .into_iter()
                .map(|c| ApiConfigView::of(c, &endpoints))
                .collect(),
        ))
    })
    .await
    .map_err(ApiError::from)?;
    list.map(axum::Json)
        .ok_or_else(|| ApiError::NotFound(format!("connection {connection_id}")))
}

fn config_not_found(api_id: &str) -> ApiError {
    ApiError::NotFound(format!("api config {api_id}"))
}

/// Changes an API config's name, its hooks' URLs or its `authToken`. A hook given for the
/// first time gets an endpoint (its signing secret in `hookSecrets`); `null` or `""`
/// removes one with its delivery log.
#[utoipa::path(patch, path = "/api/v1/api-configs/{apiId}", tag = "external api",
    params(("apiId" = String, Path)), request_body = ApiConfigPatch,
    responses((status = 200, body = ApiConfigView), (status = 404, body = super::Problem),
        (status = 409, body = super::Problem), (status = 422, body = super::Problem)))]
async fn patch_api_config(
    State(state): State<AppState>,
    Company(company): Company,
    Path(api_id): Path<String>,
    Json(body): Json<ApiConfigPatch>,
) -> ApiResult<axum::Json<ApiConfigView>> {
    let targets = state.sender.targets();
    let mut checks = Checks::default();
    let name = body.name.map(|n| checks.text("name", &n, 100));
    let message_url = body
        .url_message_status
        .map(|u| hook_url(&mut checks, "urlMessageStatus", u.as_deref(), targets));
    let service_url = body
        .url_service_status
        .map(|u| hook_url(&mut checks, "urlServiceStatus", u.as_deref(), targets));
    let auth = body
        .auth_token
        .map(|t| auth_token(&mut checks, t.as_deref()));
    checks.done()?;
    let now = state.ingest.clock.now_ms();
    let id = api_id.clone();
    let changed = store::write(&state.ingest.store, move |tx| {
        let Some(mut config) = tx.api_config(company, &id)? else {
            return Err(config_not_found(&id));
        };
        if let Some(name) = &name {
            config.name = name.clone();
        }
        if let Some(auth) = &auth {
            config.auth_token = auth.clone();
        }
        tx.update_api_config(company, &id, &config.name, config.auth_token.as_deref())?;
        let changes = [
            (WebhookFormat::HookMessageStatus, message_url.clone()),
            (WebhookFormat::HookSessionStatus, service_url.clone()),
        ];
        let secrets = sync_hooks(tx, &config, changes, now)?;
        view(tx, config, secrets)
    })
    .await?;
    Ok(axum::Json(changed))
}

/// Revokes an API config: its token stops working at once, and its hooks' endpoints are
/// removed with their delivery logs.
#[utoipa::path(delete, path = "/api/v1/api-configs/{apiId}", tag = "external api",
    params(("apiId" = String, Path)),
    responses((status = 204), (status = 404, body = super::Problem)))]
async fn revoke_api_config(
    State(state): State<AppState>,
    Company(company): Company,
    Path(api_id): Path<String>,
) -> ApiResult<StatusCode> {
    let now = state.ingest.clock.now_ms();
    let id = api_id.clone();
    let revoked = store::write(&state.ingest.store, move |tx| {
        let Some(config) = tx.api_config(company, &id)? else {
            return Ok(false);
        };
        let none = [
            (WebhookFormat::HookMessageStatus, Some(None)),
            (WebhookFormat::HookSessionStatus, Some(None)),
        ];
        sync_hooks(tx, &config, none, now)?;
        Ok::<_, ApiError>(tx.revoke_api_config(company, &id, now)?)
    })
    .await?;
    if revoked {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(config_not_found(&api_id))
    }
}
