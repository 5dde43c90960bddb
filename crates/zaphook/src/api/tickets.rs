//! Tickets: open one through the API, read, list, and change status, queue or agent (which
//! emits `ticket.transferred` / `ticket.closed`).

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ApiResult, Checks};
use super::extract::{Company, Json, Path, Query};
use super::{AppState, Page, page_limit};
use crate::domain::{Contact, Message, Ticket, TicketStatus};
use crate::ingest::{self, ContactRef, CreateTicket, PatchTicket};
use crate::store::{self, TicketFilter};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_ticket, list_tickets))
        .routes(routes!(get_ticket, patch_ticket))
        .routes(routes!(ticket_messages))
}

/// A ticket with its contact.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TicketView {
    #[serde(flatten)]
    ticket: Ticket,
    /// `{"externalKey": …}` when the ticket has one, as in webhook payloads.
    #[schema(value_type = Option<Object>)]
    api_config: Option<serde_json::Value>,
    contact: Option<Contact>,
}

fn view(ticket: Ticket, contact: Option<Contact>) -> TicketView {
    let api_config = ticket
        .external_key
        .as_ref()
        .map(|k| serde_json::json!({ "externalKey": k }));
    TicketView {
        ticket,
        api_config,
        contact,
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewTicketBody {
    connection_id: i64,
    /// The contact's number; give this or `contactId`.
    number: Option<String>,
    contact_id: Option<i64>,
    queue_id: Option<i64>,
    user_id: Option<i64>,
    /// `pending` (default) or `open`.
    status: Option<TicketStatus>,
    /// The integrator's key, sent back as `apiConfig.externalKey` in every payload.
    external_key: Option<String>,
}

/// Opens a ticket (`ticket.created`, `NewTicketUserCreate`). If the contact already has an open
/// or pending ticket on the connection, answers 200 with it (its key updated when given).
#[utoipa::path(post, path = "/api/v1/tickets", tag = "tickets", request_body = NewTicketBody,
    responses((status = 201, body = TicketView), (status = 200, body = TicketView),
        (status = 422, body = super::Problem)))]
async fn create_ticket(
    State(state): State<AppState>,
    Company(company): Company,
    Json(body): Json<NewTicketBody>,
) -> ApiResult<(StatusCode, axum::Json<TicketView>)> {
    let mut checks = Checks::default();
    let contact = match (&body.number, body.contact_id) {
        (Some(number), None) => {
            let (number, is_group) = checks.number("number", number);
            ContactRef::Number { number, is_group }
        }
        (None, Some(id)) => ContactRef::Id(id),
        _ => {
            checks.fail("number", "give exactly one of number and contactId");
            ContactRef::Id(0)
        }
    };
    let status = body.status.unwrap_or(TicketStatus::Pending);
    if status == TicketStatus::Closed {
        checks.fail("status", "a new ticket is pending or open");
    }
    let external_key = checks.optional_text("externalKey", body.external_key.as_deref(), 255);
    checks.done()?;
    let cmd = CreateTicket {
        connection_id: body.connection_id,
        contact,
        queue_id: body.queue_id,
        user_id: body.user_id,
        status,
        external_key,
        api_config_id: None,
    };
    let (ticket, contact, created) = state
        .ingest
        .run(company, move |tx, company, now| {
            let (ticket, created) = ingest::create_ticket(tx, company, now, &cmd)?;
            let contact = tx.contact(company, ticket.contact_id)?;
            Ok((ticket, contact, created))
        })
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(view(ticket, contact))))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TicketQuery {
    status: Option<TicketStatus>,
    connection_id: Option<i64>,
    queue_id: Option<i64>,
    /// The `next` of the previous page.
    after: Option<String>,
    /// Page size, 1 to 200 (default 50).
    limit: Option<i64>,
}

/// Lists tickets, newest first.
#[utoipa::path(get, path = "/api/v1/tickets", tag = "tickets", params(TicketQuery),
    responses((status = 200, body = Page<TicketView>)))]
async fn list_tickets(
    State(state): State<AppState>,
    Company(company): Company,
    Query(query): Query<TicketQuery>,
) -> ApiResult<axum::Json<Page<TicketView>>> {
    let limit = page_limit(query.limit)?;
    let before_id = match query.after {
        Some(after) => Some(
            after
                .parse::<i64>()
                .map_err(|_| ApiError::field("after", "must be the `next` of a previous page"))?,
        ),
        None => None,
    };
    let filter = TicketFilter {
        status: query.status,
        connection_id: query.connection_id,
        queue_id: query.queue_id,
        contact_id: None,
        before_id,
        limit,
    };
    let items = store::read(&state.ingest.store, move |tx| {
        let tickets = tx.tickets(company, &filter)?;
        let mut items = Vec::with_capacity(tickets.len());
        for t in tickets {
            let contact = tx.contact(company, t.contact_id)?;
            items.push(view(t, contact));
        }
        Ok::<_, ApiError>(items)
    })
    .await?;
    let next = (items.len() as i64 == limit)
        .then(|| items.last().map(|t| t.ticket.id.to_string()))
        .flatten();
    Ok(axum::Json(Page { items, next }))
}

/// One ticket with its contact.
#[utoipa::path(get, path = "/api/v1/tickets/{id}", tag = "tickets", params(("id" = i64, Path)),
    responses((status = 200, body = TicketView), (status = 404, body = super::Problem)))]
async fn get_ticket(
    State(state): State<AppState>,
    Company(company): Company,
    Path(id): Path<i64>,
) -> ApiResult<axum::Json<TicketView>> {
    let found = store::read(&state.ingest.store, move |tx| {
        let Some(ticket) = tx.ticket(company, id)? else {
            return Ok(None);
        };
        let contact = tx.contact(company, ticket.contact_id)?;
        Ok::<_, ApiError>(Some(view(ticket, contact)))
    })
    .await?;
    found
        .map(axum::Json)
        .ok_or_else(|| ApiError::NotFound(format!("ticket {id}")))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PatchTicketBody {
    status: Option<TicketStatus>,
    /// A queue id, or null to take the ticket out of its queue.
    #[serde(default, deserialize_with = "super::extract::nullable")]
    #[schema(value_type = Option<i64>)]
    queue_id: Option<Option<i64>>,
    /// An agent id, or null to unassign.
    #[serde(default, deserialize_with = "super::extract::nullable")]
    #[schema(value_type = Option<i64>)]
    user_id: Option<Option<i64>>,
}

/// Changes status, queue or agent: `ticket.transferred` when queue or agent changed,
/// `ticket.closed` when the ticket became closed.
#[utoipa::path(patch, path = "/api/v1/tickets/{id}", tag = "tickets", params(("id" = i64, Path)),
    request_body = PatchTicketBody,
    responses((status = 200, body = TicketView), (status = 404, body = super::Problem),
        (status = 409, body = super::Problem)))]
async fn patch_ticket(
    State(state): State<AppState>,
    Company(company): Company,
    Path(id): Path<i64>,
    Json(body): Json<PatchTicketBody>,
) -> ApiResult<axum::Json<TicketView>> {
    let patch = PatchTicket {
        status: body.status,
        queue_id: body.queue_id,
        user_id: body.user_id,
    };
    let (ticket, contact) = state
        .ingest
        .run(company, move |tx, company, now| {
            let ticket = ingest::update_ticket(tx, company, now, id, &patch)?;
            let contact = tx.contact(company, ticket.contact_id)?;
            Ok((ticket, contact))
        })
        .await?;
    Ok(axum::Json(view(ticket, contact)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct MessagePageQuery {
    /// The `next` of the previous page.
    after: Option<String>,
    /// Page size, 1 to 200 (default 50).
    limit: Option<i64>,
}

/// The messages of a ticket, oldest first.
#[utoipa::path(get, path = "/api/v1/tickets/{id}/messages", tag = "tickets",
    params(("id" = i64, Path), MessagePageQuery),
    responses((status = 200, body = Page<Message>), (status = 404, body = super::Problem)))]
async fn ticket_messages(
    State(state): State<AppState>,
    Company(company): Company,
    Path(id): Path<i64>,
    Query(query): Query<MessagePageQuery>,
) -> ApiResult<axum::Json<Page<Message>>> {
    let limit = page_limit(query.limit)?;
    let items = store::read(&state.ingest.store, move |tx| {
        if tx.ticket(company, id)?.is_none() {
            return Err(ApiError::NotFound(format!("ticket {id}")));
        }
        Ok(tx.ticket_messages(id, query.after.as_deref(), limit)?)
    })
    .await?;
    let next = (items.len() as i64 == limit)
        .then(|| items.last().map(|m| m.id.clone()))
        .flatten();
    Ok(axum::Json(Page { items, next }))
}
