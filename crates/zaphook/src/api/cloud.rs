//! The Cloud API's side of the HTTP server: the callback URL of each `cloud` connection
//! (Meta's verification handshake, and its notifications: signature checked over the raw
//! bytes before anything is read, then kept in the inbox before the 200), and the stored
//! media served at the unguessable URLs that payloads carry as `mediaUrl`.

use std::collections::HashMap;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::ApiError;
use super::extract::{Path, Query};
use crate::channels::cloud::{self, media};
use crate::store;

/// Largest callback body read (Meta's bodies are far smaller).
pub const MAX_CALLBACK: usize = 3 * 1024 * 1024;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(verify, callback))
        .layer(DefaultBodyLimit::max(MAX_CALLBACK))
        .merge(OpenApiRouter::new().routes(routes!(serve_media)))
}

fn refuse(status: StatusCode, why: &'static str) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain")], why).into_response()
}

/// Meta's verification handshake: `hub.mode=subscribe` with the connection's verify token is
/// answered with `hub.challenge`; anything else is 403.
#[utoipa::path(get, path = "/channels/cloud/{id}", tag = "cloud", security(()),
    params(("id" = i64, Path, description = "The cloud connection"),
        ("hub.mode" = Option<String>, Query), ("hub.verify_token" = Option<String>, Query),
        ("hub.challenge" = Option<String>, Query)),
    responses((status = 200, description = "The challenge", content_type = "text/plain", body = String),
        (status = 403, description = "Not this connection's verify token")))]
async fn verify(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let cloud = store::read(&state.ingest.store, move |tx| tx.cloud_config(id)).await?;
    let token_ok = match (&cloud, query.get("hub.verify_token")) {
        (Some((_, cloud)), Some(given)) => cloud::same_secret(&cloud.verify_token, given),
        _ => false,
    };
    let challenge = query
        .get("hub.challenge")
        .filter(|c| !c.is_empty() && c.len() <= 256);
    match (
        query.get("hub.mode").map(String::as_str),
        token_ok,
        challenge,
    ) {
        (Some("subscribe"), true, Some(challenge)) => Ok((
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, HeaderValue::from_static("text/plain")),
                (
                    header::X_CONTENT_TYPE_OPTIONS,
                    HeaderValue::from_static("nosniff"),
                ),
            ],
            challenge.clone(),
        )
            .into_response()),
        _ => Ok(refuse(StatusCode::FORBIDDEN, "verification refused")),
    }
}

/// A notification from Meta: its `X-Hub-Signature-256` verified over the raw bytes, the body
/// kept, then answered 200; it is read into events after that.
#[utoipa::path(post, path = "/channels/cloud/{id}", tag = "cloud", security(()),
    params(("id" = i64, Path, description = "The cloud connection"),
        ("x-hub-signature-256" = String, Header, description = "sha256=<hex HMAC-SHA256 of the body with the app secret>")),
    request_body(content = Object, description = "A Cloud API notification, as Meta sends it"),
    responses((status = 200, description = "Kept"), (status = 401, description = "Missing or wrong signature"),
        (status = 404, body = super::Problem), (status = 413, description = "Larger than 3 MiB")))]
async fn callback(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let Some((company_id, cloud)) =
        store::read(&state.ingest.store, move |tx| tx.cloud_config(id)).await?
    else {
        metrics::counter!("zaphook_cloud_callbacks_total", "outcome" => "unknown_connection")
            .increment(1);
        return Err(ApiError::NotFound(format!("cloud connection {id}")));
    };
    let signature = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok());
    if !cloud::signature_valid(&cloud.app_secret, signature, &body) {
        metrics::counter!("zaphook_cloud_callbacks_total", "outcome" => "bad_signature")
            .increment(1);
        tracing::warn!(
            connection = id,
            "refused a callback with a missing or wrong signature"
        );
        return Ok(refuse(StatusCode::UNAUTHORIZED, "invalid signature"));
    }
    let now = state.ingest.clock.now_ms();
    store::write(&state.ingest.store, move |tx| {
        tx.insert_inbox(company_id, id, &body, now)
    })
    .await?;
    metrics::counter!("zaphook_cloud_callbacks_total", "outcome" => "accepted").increment(1);
    Ok(StatusCode::OK.into_response())
}

/// A stored media file, to whoever has its URL (the `mediaUrl` of a payload).
#[utoipa::path(get, path = "/media/{key}", tag = "cloud", security(()),
    params(("key" = String, Path)),
    responses((status = 200, description = "The file, with its content type"),
        (status = 404, body = super::Problem)))]
async fn serve_media(
    State(state): State<AppState>,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    if !media::is_media_key(&key) {
        return Err(ApiError::NotFound("media".into()));
    }
    let stored = store::read(&state.ingest.store, move |tx| tx.media(&key))
        .await?
        .ok_or_else(|| ApiError::NotFound("media".into()))?;
    let path = media::media_path(&state.media_dir, &stored.sha256);
    let bytes = tokio::fs::read(&path).await.map_err(|e| {
        tracing::error!(path = %path.display(), error = %e, "a stored media file cannot be read");
        ApiError::NotFound("media".into())
    })?;
    let content_type = stored
        .mime_type
        .as_deref()
        .and_then(|m| HeaderValue::from_str(m).ok())
        .unwrap_or_else(|| HeaderValue::from_static("application/octet-stream"));
    let mut response = Response::new(Body::from(bytes));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, content_type);
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=31536000, immutable"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    Ok(response)
}
