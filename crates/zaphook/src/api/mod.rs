//! The HTTP API: routers by resource under `/api/v1` (bearer token per company), health,
//! readiness and metrics, and the OpenAPI document with its browsable UI, built from the same
//! route list so the document cannot drift from the code.

mod api_configs;
mod cloud;
mod error;
mod external;
mod extract;
mod messages;
mod resources;
mod sandbox;
mod tickets;
pub(crate) mod webhooks;

use std::sync::OnceLock;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_swagger_ui::SwaggerUi;

pub use error::{ApiError, ApiResult, FieldError, Problem};
pub use extract::{TokenCache, token_hash};

use crate::delivery::http::HttpSender;
use crate::ingest::Ingest;
use crate::store;

/// Largest request body the API reads.
pub const MAX_BODY: usize = 256 * 1024;
/// Default and largest page of a list.
pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 200;

#[derive(Clone)]
pub struct AppState {
    pub ingest: Ingest,
    pub sender: HttpSender,
    pub tokens: extract::TokenCache,
    /// Woken when a Cloud API callback body was stored.
    pub inbox_ready: std::sync::Arc<tokio::sync::Notify>,
    /// Where stored media files are.
    pub media_dir: std::path::PathBuf,
    /// This server's public base URL (of `mediaUrl`), without a trailing `/`.
    pub public_url: String,
    /// Turns true when the server starts to stop: long-lived answers (the dashboard's event
    /// streams) end, so the graceful shutdown does not wait on them.
    pub closing: tokio::sync::watch::Receiver<bool>,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "zaphook",
        description = "Self-hosted WhatsApp helpdesk core: every message and ticket change as a signed webhook in the WHAZING payload shape."
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    components(schemas(Problem, FieldError))
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// A page of a list and the cursor of the next one.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `after` to get the next page; null on the last page.
    pub next: Option<String>,
}

/// Clamps a requested page size.
pub fn page_limit(limit: Option<i64>) -> ApiResult<i64> {
    match limit {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(_) => Err(ApiError::field(
            "limit",
            format!("must be between 1 and {MAX_LIMIT}"),
        )),
    }
}

/// Folds recorded histogram samples into their buckets; without it they pile up between
/// scrapes. Runs until `shutdown` turns true.
pub async fn metrics_upkeep(mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
    while !*shutdown.borrow() {
        tokio::select! {
            _ = tick.tick() => prometheus().run_upkeep(),
            _ = shutdown.changed() => {}
        }
    }
}

fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let buckets = [
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0,
        ];
        let recorder = PrometheusBuilder::new()
            .set_buckets(&buckets)
            .map(|b| b.build_recorder())
            .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
        let handle = recorder.handle();
        // A second application in one process (tests) shares the first one's recorder.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// The OpenAPI document and the API routes, in one place.
fn api() -> (axum::Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(resources::router())
        .merge(api_configs::router())
        .merge(tickets::router())
        .merge(messages::router())
        .merge(sandbox::router())
        .merge(webhooks::router())
        .merge(cloud::router())
        .split_for_parts()
}

/// The OpenAPI document of the API.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api().1
}

pub fn router(state: AppState) -> axum::Router {
    prometheus();
    let (routes, doc) = api();
    routes
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .merge(external::router())
        .merge(crate::ui::router())
        .merge(SwaggerUi::new("/docs").url("/api/openapi.json", doc))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

async fn healthz() -> &'static str {
    "ok"
}

/// Ready when the database answers a read and its writes are not failing.
async fn readyz(State(state): State<AppState>) -> ApiResult<&'static str> {
    store::read(&state.ingest.store, |tx| tx.company_count())
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    if let Some(fault) = state.ingest.store.write_fault() {
        return Err(ApiError::Unavailable(format!(
            "writes are failing: {fault}"
        )));
    }
    Ok("ready")
}

async fn metrics_text() -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        prometheus().render(),
    )
        .into_response()
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!("route {}", uri.path()))
}
