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
use crate::store::{self, NewContact};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_connection, list_connections))
        .routes(routes!(get_connection))
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
        (Channel::Cloud, Some(cloud)) => {
            checks.text("cloud.phoneNumberId", &cloud.phone_number_id, 64);
            checks.text("cloud.accessToken", &cloud.access_token, 1024);
            checks.text("cloud.appSecret", &cloud.app_secret, 256);
            checks.text("cloud.verifyToken", &cloud.verify_token, 256);
            if let Some(url) = &cloud.graph_base_url {
                checks.url("cloud.graphBaseUrl", url);
            }
            Some(cloud)
        }
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
                number: &number,
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
