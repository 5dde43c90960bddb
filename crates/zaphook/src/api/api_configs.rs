//! Keys to the WHAZING external API: a connection's API configs, each an `apiId` and a token
//! (shown once, stored hashed) that `/v1/api/external/{apiId}/…` takes.

use axum::extract::State;
use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::{ApiError, ApiResult, Checks};
use super::extract::{Company, Json, Path, token_hash};
use crate::domain::{ApiConfig, new_uuid};
use crate::store::{self, StoreError};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_api_config, list_api_configs))
        .routes(routes!(revoke_api_config))
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
}

/// A new API config with its token, shown only in this answer.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedApiConfig {
    #[serde(flatten)]
    config: ApiConfig,
    /// The bearer token of `/v1/api/external/{apiId}`; stored hashed, never shown again.
    token: String,
}

/// Creates a key to the WHAZING external API of a connection.
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
    let mut checks = Checks::default();
    let name = checks.text("name", &body.name, 100);
    checks.done()?;
    let token = generate_external_token();
    let config = ApiConfig {
        id: new_uuid(),
        company_id: company,
        connection_id,
        name,
        token_prefix: token.chars().take(11).collect(),
        created_at: state.ingest.clock.now_ms(),
    };
    let (stored, hash) = (config.clone(), token_hash(&token));
    let found = store::write(&state.ingest.store, move |tx| {
        if tx.connection(company, connection_id)?.is_none() {
            return Ok(false);
        }
        tx.insert_api_config(&stored, &hash)?;
        Ok::<_, StoreError>(true)
    })
    .await?;
    if !found {
        return Err(ApiError::NotFound(format!("connection {connection_id}")));
    }
    Ok((
        StatusCode::CREATED,
        axum::Json(CreatedApiConfig { config, token }),
    ))
}

/// The live API configs of a connection (their tokens are not shown).
#[utoipa::path(get, path = "/api/v1/connections/{id}/api-configs", tag = "external api",
    params(("id" = i64, Path)),
    responses((status = 200, body = Vec<ApiConfig>), (status = 404, body = super::Problem)))]
async fn list_api_configs(
    State(state): State<AppState>,
    Company(company): Company,
    Path(connection_id): Path<i64>,
) -> ApiResult<axum::Json<Vec<ApiConfig>>> {
    let list = store::read(&state.ingest.store, move |tx| {
        if tx.connection(company, connection_id)?.is_none() {
            return Ok(None);
        }
        tx.api_configs(company, connection_id).map(Some)
    })
    .await
    .map_err(ApiError::from)?;
    list.map(axum::Json)
        .ok_or_else(|| ApiError::NotFound(format!("connection {connection_id}")))
}

/// Revokes an API config: its token stops working at once.
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
        tx.revoke_api_config(company, &id, now)
    })
    .await?;
    if revoked {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("api config {api_id}")))
    }
}
