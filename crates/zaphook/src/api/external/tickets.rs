//! The external API's ticket routes: open one, find a contact's open ticket or all of its
//! tickets, change status, agent or queue (a transfer), and read a ticket's messages. Every
//! ticket is one of the API config's connection.

use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Body, Caller, ExternalError, ExternalResult, id_field, text_field};
use crate::api::AppState;
use crate::api::error::Checks;
use crate::domain::{ApiConfig, Contact, Ticket, TicketStatus};
use crate::ingest::{self, ContactRef, CreateTicket, PatchTicket};
use crate::store::{self, StoreError, TicketFilter, Tx};

/// Tickets `showallticket` answers at most, newest first.
const MAX_TICKETS: i64 = 200;
/// Messages `GET /ticket/{id}` answers at most, oldest first.
const MAX_MESSAGES: i64 = 1000;

/// A ticket as WHAZING answers it: its fields, `whatsappId` for the connection, `apiConfig`,
/// and the contact.
pub fn ticket_json(ticket: &Ticket, contact: Option<&Contact>) -> Value {
    json!({
        "id": ticket.id,
        "status": ticket.status,
        "protocol": ticket.protocol,
        "lastMessage": ticket.last_message,
        "isGroup": ticket.is_group,
        "contactId": ticket.contact_id,
        "userId": ticket.user_id,
        "queueId": ticket.queue_id,
        "whatsappId": ticket.connection_id,
        "apiConfig": ticket.external_key.as_ref().map(|k| json!({ "externalKey": k })),
        "createdAt": crate::domain::rfc3339::format(ticket.created_at),
        "updatedAt": crate::domain::rfc3339::format(ticket.updated_at),
        "contact": contact.map(super::contacts::contact_json),
    })
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateBody {
    #[serde(default, deserialize_with = "text_field")]
    number: Option<String>,
    status: Option<String>,
    #[serde(default, deserialize_with = "id_field")]
    queue_id: Option<i64>,
    #[serde(default, deserialize_with = "id_field")]
    user_id: Option<i64>,
    #[serde(default, deserialize_with = "text_field")]
    external_key: Option<String>,
}

/// Reads a ticket status as WHAZING writes it.
fn status(checks: &mut Checks, value: Option<&str>) -> Option<TicketStatus> {
    match value.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        None | Some("") => None,
        Some("open") => Some(TicketStatus::Open),
        Some("pending") => Some(TicketStatus::Pending),
        Some("closed") => Some(TicketStatus::Closed),
        Some(other) => {
            checks.fail(
                "status",
                format!("{other:?} is not open, pending or closed"),
            );
            None
        }
    }
}

/// `POST /createticket`: the contact's open or pending ticket on the connection, or a new one
/// (`ticket.created`); `externalKey` sets its `apiConfig`.
pub async fn create(
    State(state): State<AppState>,
    Caller(config): Caller,
    Body(body): Body<CreateBody>,
) -> ExternalResult<axum::Json<Value>> {
    let mut checks = Checks::default();
    let Some(number) = body.number.as_deref() else {
        return Err(ExternalError::bad_request("number is a required field"));
    };
    let (number, is_group) = checks.number("number", number);
    let status = status(&mut checks, body.status.as_deref()).unwrap_or(TicketStatus::Pending);
    if status == TicketStatus::Closed {
        checks.fail("status", "a new ticket is pending or open");
    }
    let external_key = checks.optional_text("externalKey", body.external_key.as_deref(), 255);
    checks.done()?;
    let cmd = CreateTicket {
        connection_id: config.connection_id,
        contact: ContactRef::Number { number, is_group },
        queue_id: body.queue_id,
        user_id: body.user_id,
        status,
        external_key,
        api_config_id: Some(config.id.clone()),
    };
    let (ticket, contact) = state
        .ingest
        .run(config.company_id, move |tx, company, now| {
            let (ticket, _) = ingest::create_ticket(tx, company, now, &cmd)?;
            let contact = tx.contact(company, ticket.contact_id)?;
            Ok((ticket, contact))
        })
        .await?;
    Ok(axum::Json(ticket_json(&ticket, contact.as_ref())))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NumberBody {
    #[serde(default, deserialize_with = "text_field")]
    number: Option<String>,
}

/// The contact of `number` (normalised), if the company has one.
fn contact_of(
    tx: &mut dyn Tx,
    config: &ApiConfig,
    number: &str,
) -> Result<Option<Contact>, StoreError> {
    tx.contact_by_number(config.company_id, number)
}

fn number_of(body: &NumberBody) -> ExternalResult<String> {
    let Some(raw) = body.number.as_deref() else {
        return Err(ExternalError::bad_request("number is a required field"));
    };
    let mut checks = Checks::default();
    let (number, _) = checks.number("number", raw);
    checks.done()?;
    Ok(number)
}

/// `POST /showticket`: the contact's open or pending ticket on the connection, or 404.
pub async fn show(
    State(state): State<AppState>,
    Caller(config): Caller,
    Body(body): Body<NumberBody>,
) -> ExternalResult<axum::Json<Value>> {
    let number = number_of(&body)?;
    let found = store::read(&state.ingest.store, move |tx| {
        let Some(contact) = contact_of(tx, &config, &number)? else {
            return Ok(None);
        };
        let ticket = tx.active_ticket(config.connection_id, contact.id)?;
        Ok::<_, StoreError>(ticket.map(|t| (t, contact)))
    })
    .await?;
    match found {
        Some((ticket, contact)) => Ok(axum::Json(ticket_json(&ticket, Some(&contact)))),
        None => Err(ExternalError::not_found("ERR_NO_TICKET_FOUND")),
    }
}

/// `POST /showallticket`: every ticket of the contact on the connection, newest first.
pub async fn show_all(
    State(state): State<AppState>,
    Caller(config): Caller,
    Body(body): Body<NumberBody>,
) -> ExternalResult<axum::Json<Value>> {
    let number = number_of(&body)?;
    let found = store::read(&state.ingest.store, move |tx| {
        let Some(contact) = contact_of(tx, &config, &number)? else {
            return Ok(None);
        };
        let filter = TicketFilter {
            connection_id: Some(config.connection_id),
            contact_id: Some(contact.id),
            limit: MAX_TICKETS,
            ..TicketFilter::default()
        };
        let tickets = tx.tickets(config.company_id, &filter)?;
        Ok::<_, StoreError>(Some((tickets, contact)))
    })
    .await?;
    let Some((tickets, contact)) = found else {
        return Err(ExternalError::not_found("ERR_NO_CONTACT_FOUND"));
    };
    let list: Vec<Value> = tickets
        .iter()
        .map(|t| ticket_json(t, Some(&contact)))
        .collect();
    Ok(axum::Json(Value::Array(list)))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateBody {
    #[serde(default, deserialize_with = "id_field")]
    ticket_id: Option<i64>,
    status: Option<String>,
    #[serde(default, deserialize_with = "id_field")]
    user_id: Option<i64>,
    #[serde(default, deserialize_with = "id_field")]
    queue_id: Option<i64>,
}

/// Changes a ticket of the connection; answers it with its contact.
async fn update(
    state: AppState,
    config: ApiConfig,
    ticket_id: i64,
    patch: PatchTicket,
) -> ExternalResult<axum::Json<Value>> {
    let (ticket, contact) = state
        .ingest
        .run(config.company_id, move |tx, company, now| {
            match tx.ticket(company, ticket_id)? {
                Some(t) if t.connection_id == config.connection_id => {}
                _ => return Err(ingest::IngestError::NotFound(format!("ticket {ticket_id}"))),
            }
            let ticket = ingest::update_ticket(tx, company, now, ticket_id, &patch)?;
            let contact = tx.contact(company, ticket.contact_id)?;
            Ok((ticket, contact))
        })
        .await
        .map_err(|e| match e {
            ingest::IngestError::NotFound(_) => ExternalError::not_found("ERR_NO_TICKET_FOUND"),
            e => e.into(),
        })?;
    Ok(axum::Json(ticket_json(&ticket, contact.as_ref())))
}

/// `POST /updateticketinfo`: status, agent or queue (`ticket.transferred`, `ticket.closed`).
pub async fn update_info(
    State(state): State<AppState>,
    Caller(config): Caller,
    Body(body): Body<UpdateBody>,
) -> ExternalResult<axum::Json<Value>> {
    let Some(ticket_id) = body.ticket_id else {
        return Err(ExternalError::bad_request("ticketId is a required field"));
    };
    let mut checks = Checks::default();
    let status = status(&mut checks, body.status.as_deref());
    checks.done()?;
    let patch = PatchTicket {
        status,
        queue_id: body.queue_id.map(Some),
        user_id: body.user_id.map(Some),
    };
    update(state, config, ticket_id, patch).await
}

/// `POST /updatequeue`: moves a ticket to a queue, a transfer (`ticket.transferred`).
pub async fn update_queue(
    State(state): State<AppState>,
    Caller(config): Caller,
    Body(body): Body<UpdateBody>,
) -> ExternalResult<axum::Json<Value>> {
    let (Some(ticket_id), Some(queue_id)) = (body.ticket_id, body.queue_id) else {
        return Err(ExternalError::bad_request(
            "ticketId and queueId are required fields",
        ));
    };
    let patch = PatchTicket {
        status: None,
        queue_id: Some(Some(queue_id)),
        user_id: None,
    };
    update(state, config, ticket_id, patch).await
}

/// `GET /ticket/{id}`: the ticket's messages, oldest first.
pub async fn messages(
    State(state): State<AppState>,
    Caller(config): Caller,
    axum::extract::Path((_, id)): axum::extract::Path<(String, String)>,
) -> ExternalResult<axum::Json<Value>> {
    let Ok(ticket_id) = id.trim().parse::<i64>() else {
        return Err(ExternalError::not_found("ERR_NO_TICKET_FOUND"));
    };
    let found = store::read(&state.ingest.store, move |tx| {
        match tx.ticket(config.company_id, ticket_id)? {
            Some(t) if t.connection_id == config.connection_id => {
                tx.ticket_messages(ticket_id, None, MAX_MESSAGES).map(Some)
            }
            _ => Ok(None),
        }
    })
    .await?;
    match found {
        Some(messages) => Ok(axum::Json(
            json!({ "messages": messages, "count": messages.len() }),
        )),
        None => Err(ExternalError::not_found("ERR_NO_TICKET_FOUND")),
    }
}
