//! Connections, queues, agents and contacts: the records tickets and messages refer to.

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::{ApiError, ApiResult, Checks};
use super::extract::{Company, Json, Path, Query};
use crate::domain::{Channel, CloudConfig, Connection, Contact, Queue, User};
use crate::ingest;
use crate::store::{self, NewContact};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_connection, list_connections))
        .routes(routes!(get_connection, update_connection))
        .routes(routes!(create_queue, list_queues))
        .routes(routes!(create_user, list_users))
        .routes(routes!(create_contact, list_contacts))
}

/// A connection to create. `cloud` is required for (and only for) the `cloud` channel.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewConnection {
    name: String,
    channel: Channel,
    cloud: Option<CloudConfig>,
}

/// Creates a connection (a WhatsApp number). Secrets of a cloud connection are never shown.
#[utoipa::path(post, path = "/api/v1/connections", tag = "connections",
    request_body = NewConnection,
    responses((status = 201, body = Connection), (status = 422, body = super::Problem)))]
async fn create_connection(
    State(state): State<AppState>,
    Company(company): Company,
    Json(body): Json<NewConnection>,
) -> ApiResult<(StatusCode, axum::Json<Connection>)> {
    let mut checks = Checks::default();
    let name = checks.text("name", &body.name, 100);
    let cloud = match (body.channel, body.cloud) {
        (Channel::Sandbox, Some(_)) => {
            checks.fail("cloud", "only a cloud connection takes cloud settings");
            None
        }
        (Channel::Sandbox, None) => None,
        (Channel::Cloud, None) => {
            checks.fail("cloud", "a cloud connection needs its cloud settings");
            None
        }
        (Channel::Cloud, Some(cloud)) => Some(check_cloud(&mut checks, cloud)),
    };
    checks.done()?;
    let now = state.ingest.clock.now_ms();
    let channel = body.channel;
    let connection = store::write(&state.ingest.store, move |tx| {
        tx.insert_connection(company, &name, channel, cloud.as_ref(), now)
    })
    .await
    .map_err(ApiError::from)?;
    Ok((StatusCode::CREATED, axum::Json(connection)))
}

/// Checks and trims a cloud connection's settings.
fn check_cloud(checks: &mut Checks, cloud: CloudConfig) -> CloudConfig {
    let phone_number_id = checks.text("cloud.phoneNumberId", &cloud.phone_number_id, 64);
    if !phone_number_id.chars().all(|c| c.is_ascii_digit()) {
        checks.fail(
            "cloud.phoneNumberId",
            "must be the digits of Meta's phone number id",
        );
    }
    let graph_version = cloud.graph_version.map(|v| v.trim().to_string());
    if let Some(v) = &graph_version {
        let numbers = v
            .strip_prefix('v')
            .map(|n| n.split('.').collect::<Vec<_>>());
        let valid = numbers.is_some_and(|parts| {
            parts.len() == 2
                && parts
                    .iter()
                    .all(|p| !p.is_empty() && p.len() <= 3 && p.chars().all(|c| c.is_ascii_digit()))
        });
        if !valid {
            checks.fail(
                "cloud.graphVersion",
                "must be a Graph API version like v25.0",
            );
        }
    }
    CloudConfig {
        phone_number_id,
        access_token: checks.text("cloud.accessToken", &cloud.access_token, 1024),
        app_secret: checks.text("cloud.appSecret", &cloud.app_secret, 256),
        verify_token: checks.text("cloud.verifyToken", &cloud.verify_token, 256),
        graph_base_url: cloud.graph_base_url.map(|url| {
            checks
                .url("cloud.graphBaseUrl", &url)
                .trim_end_matches('/')
                .to_string()
        }),
        graph_version,
    }
}

/// Changes to a connection; for a cloud connection any of its settings, the others kept.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConnectionPatch {
    name: Option<String>,
    cloud: Option<CloudPatch>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CloudPatch {
    phone_number_id: Option<String>,
    access_token: Option<String>,
    app_secret: Option<String>,
    verify_token: Option<String>,
    graph_base_url: Option<String>,
    graph_version: Option<String>,
}

/// Changes a connection: its name, or a cloud connection's settings (only a new access token
/// clears a refused-token state). Secrets are never shown.
#[utoipa::path(patch, path = "/api/v1/connections/{id}", tag = "connections",
    params(("id" = i64, Path)), request_body = ConnectionPatch,
    responses((status = 200, body = Connection), (status = 404, body = super::Problem),
        (status = 409, body = super::Problem), (status = 422, body = super::Problem)))]
async fn update_connection(
    State(state): State<AppState>,
    Company(company): Company,
    Path(id): Path<i64>,
    Json(body): Json<ConnectionPatch>,
) -> ApiResult<axum::Json<Connection>> {
    let mut checks = Checks::default();
    let name = body.name.map(|n| checks.text("name", &n, 100));
    checks.done()?;
    let patch = body.cloud;
    let now = state.ingest.clock.now_ms();
    let connection = store::write(&state.ingest.store, move |tx| {
        let current = tx
            .connection(company, id)?
            .ok_or_else(|| ApiError::NotFound(format!("connection {id}")))?;
        let cloud = match (&patch, current.channel) {
            (None, _) => None,
            (Some(_), Channel::Sandbox) => {
                return Err(ApiError::field(
                    "cloud",
                    "only a cloud connection takes cloud settings",
                ));
            }
            (Some(p), Channel::Cloud) => {
                let (_, old) = tx
                    .cloud_config(id)?
                    .ok_or_else(|| ApiError::NotFound(format!("connection {id}")))?;
                let merged = CloudConfig {
                    phone_number_id: p.phone_number_id.clone().unwrap_or(old.phone_number_id),
                    access_token: p.access_token.clone().unwrap_or(old.access_token),
                    app_secret: p.app_secret.clone().unwrap_or(old.app_secret),
                    verify_token: p.verify_token.clone().unwrap_or(old.verify_token),
                    graph_base_url: p.graph_base_url.clone().or(old.graph_base_url),
                    graph_version: p.graph_version.clone().or(old.graph_version),
                };
                let mut checks = Checks::default();
                let merged = check_cloud(&mut checks, merged);
                checks.done()?;
                Some(merged)
            }
        };
        let name = name.clone().unwrap_or(current.name);
        let new_token = patch.as_ref().is_some_and(|p| p.access_token.is_some());
        // A new token ends a refusal: the connection is connected again.
        let reconnected = new_token && tx.set_token_refused(id, None)?;
        tx.update_connection(company, id, &name, cloud.as_ref(), new_token)?;
        let connection = tx
            .connection(company, id)?
            .ok_or_else(|| ApiError::NotFound(format!("connection {id}")))?;
        if reconnected {
            ingest::emit_session_status(tx, company, now, &connection)?;
        }
        Ok(connection)
    })
    .await?;
    Ok(axum::Json(connection))
}

/// Lists the company's connections.
#[utoipa::path(get, path = "/api/v1/connections", tag = "connections",
    responses((status = 200, body = Vec<Connection>)))]
async fn list_connections(
    State(state): State<AppState>,
    Company(company): Company,
) -> ApiResult<axum::Json<Vec<Connection>>> {
    let list = store::read(&state.ingest.store, move |tx| tx.connections(company))
        .await
        .map_err(ApiError::from)?;
    Ok(axum::Json(list))
}

/// One connection.
#[utoipa::path(get, path = "/api/v1/connections/{id}", tag = "connections",
    params(("id" = i64, Path)),
    responses((status = 200, body = Connection), (status = 404, body = super::Problem)))]
async fn get_connection(
    State(state): State<AppState>,
    Company(company): Company,
    Path(id): Path<i64>,
) -> ApiResult<axum::Json<Connection>> {
    store::read(&state.ingest.store, move |tx| tx.connection(company, id))
        .await
        .map_err(ApiError::from)?
        .map(axum::Json)
        .ok_or_else(|| ApiError::NotFound(format!("connection {id}")))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewQueue {
    name: String,
}

/// Creates a queue (a department tickets are routed to).
#[utoipa::path(post, path = "/api/v1/queues", tag = "queues", request_body = NewQueue,
    responses((status = 201, body = Queue), (status = 422, body = super::Problem)))]
async fn create_queue(
    State(state): State<AppState>,
    Company(company): Company,
    Json(body): Json<NewQueue>,
) -> ApiResult<(StatusCode, axum::Json<Queue>)> {
    let mut checks = Checks::default();
    let name = checks.text("name", &body.name, 100);
    checks.done()?;
    let now = state.ingest.clock.now_ms();
    let queue = store::write(&state.ingest.store, move |tx| {
        tx.insert_queue(company, &name, now)
    })
    .await
    .map_err(ApiError::from)?;
    Ok((StatusCode::CREATED, axum::Json(queue)))
}

/// Lists the company's queues.
#[utoipa::path(get, path = "/api/v1/queues", tag = "queues",
    responses((status = 200, body = Vec<Queue>)))]
async fn list_queues(
    State(state): State<AppState>,
    Company(company): Company,
) -> ApiResult<axum::Json<Vec<Queue>>> {
    let list = store::read(&state.ingest.store, move |tx| tx.queues(company))
        .await
        .map_err(ApiError::from)?;
    Ok(axum::Json(list))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewUser {
    name: String,
    email: String,
}

/// Creates an agent.
#[utoipa::path(post, path = "/api/v1/users", tag = "users", request_body = NewUser,
    responses((status = 201, body = User), (status = 422, body = super::Problem)))]
async fn create_user(
    State(state): State<AppState>,
    Company(company): Company,
    Json(body): Json<NewUser>,
) -> ApiResult<(StatusCode, axum::Json<User>)> {
    let mut checks = Checks::default();
    let name = checks.text("name", &body.name, 100);
    let email = checks.text("email", &body.email, 254);
    if !email.is_empty() && !email.contains('@') {
        checks.fail("email", "must be an email address");
    }
    checks.done()?;
    let now = state.ingest.clock.now_ms();
    let user = store::write(&state.ingest.store, move |tx| {
        tx.insert_user(company, &name, &email, now)
    })
    .await
    .map_err(ApiError::from)?;
    Ok((StatusCode::CREATED, axum::Json(user)))
}

/// Lists the company's agents.
#[utoipa::path(get, path = "/api/v1/users", tag = "users",
    responses((status = 200, body = Vec<User>)))]
async fn list_users(
    State(state): State<AppState>,
    Company(company): Company,
) -> ApiResult<axum::Json<Vec<User>>> {
    let list = store::read(&state.ingest.store, move |tx| tx.users(company))
        .await
        .map_err(ApiError::from)?;
    Ok(axum::Json(list))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewContactBody {
    /// Phone number with country code, or a group id (`…@g.us`).
    number: String,
    name: Option<String>,
    email: Option<String>,
}

/// Creates a contact. A number that already has a contact is a 409 naming it.
#[utoipa::path(post, path = "/api/v1/contacts", tag = "contacts", request_body = NewContactBody,
    responses((status = 201, body = Contact), (status = 409, body = super::Problem),
        (status = 422, body = super::Problem)))]
async fn create_contact(
    State(state): State<AppState>,
    Company(company): Company,
    Json(body): Json<NewContactBody>,
) -> ApiResult<(StatusCode, axum::Json<Contact>)> {
    let mut checks = Checks::default();
    let (number, is_group) = checks.number("number", &body.number);
    let name = checks.optional_text("name", body.name.as_deref(), 200);
    let email = checks.optional_text("email", body.email.as_deref(), 254);
    if email.as_ref().is_some_and(|e| !e.contains('@')) {
        checks.fail("email", "must be an email address");
    }
    checks.done()?;
    let now = state.ingest.clock.now_ms();
    let contact = store::write(&state.ingest.store, move |tx| {
        if let Some(existing) = tx.contact_by_number(company, &number)? {
            return Err(ApiError::Conflict(format!(
                "contact {} already has number {number}",
                existing.id
            )));
        }
        Ok(tx.insert_contact(
            company,
            &NewContact {
                number: Some(&number),
                bsuid: None,
                username: None,
                name: name.as_deref().unwrap_or(&number),
                pushname: None,
                email: email.as_deref(),
                is_group,
            },
            now,
        )?)
    })
    .await?;
    Ok((StatusCode::CREATED, axum::Json(contact)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ContactQuery {
    /// Only the contact with this number.
    number: Option<String>,
}

/// Lists contacts, or finds one by number.
#[utoipa::path(get, path = "/api/v1/contacts", tag = "contacts", params(ContactQuery),
    responses((status = 200, body = Vec<Contact>)))]
async fn list_contacts(
    State(state): State<AppState>,
    Company(company): Company,
    Query(query): Query<ContactQuery>,
) -> ApiResult<axum::Json<Vec<Contact>>> {
    let number = match query.number {
        Some(raw) => {
            let mut checks = Checks::default();
            let (number, _) = checks.number("number", &raw);
            checks.done()?;
            Some(number)
        }
        None => None,
    };
    let list = store::read(&state.ingest.store, move |tx| {
        tx.contacts(company, number.as_deref())
    })
    .await
    .map_err(ApiError::from)?;
    Ok(axum::Json(list))
}
