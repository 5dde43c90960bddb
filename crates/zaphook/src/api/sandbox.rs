//! The contact's side of a sandbox connection: send a message in, move the status of a message
//! we sent, react. These routes exist only for sandbox connections.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::{ApiError, ApiResult, Checks};
use super::extract::{Company, Json, Path};
use super::messages::{MAX_TEXT, emoji, media};
use crate::domain::{self, Channel, MediaType, Message, MessageStatus};
use crate::ingest::{self, Identity, InboundMessage, Participant};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(inbound))
        .routes(routes!(status))
        .routes(routes!(reaction))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InboundBody {
    /// The contact's number (or a group id ending in `@g.us`).
    from: String,
    /// The contact's WhatsApp profile name.
    name: Option<String>,
    #[serde(default)]
    body: String,
    media_type: Option<MediaType>,
    media_url: Option<String>,
    /// The channel's id of the message; the same id twice is one message.
    id: Option<String>,
    /// When the contact sent it: Unix seconds or milliseconds (default: now).
    timestamp: Option<i64>,
    quoted_message_id: Option<String>,
    /// In a group (`from` ending in `@g.us`): the number of the member who wrote.
    participant: Option<String>,
    /// That member's WhatsApp profile name.
    participant_name: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Accepted {
    /// zaphook's id of the message.
    id: String,
    /// The channel's id of the message.
    message_id: Option<String>,
}

/// A contact sends a message in → `message.created` (and `ticket.created` with `NewTicket` when
/// it opens a ticket).
#[utoipa::path(post, path = "/api/v1/connections/{id}/sandbox/inbound", tag = "sandbox",
    params(("id" = i64, Path)), request_body = InboundBody,
    responses((status = 202, body = Accepted), (status = 404, body = super::Problem),
        (status = 409, body = super::Problem), (status = 422, body = super::Problem)))]
async fn inbound(
    State(state): State<AppState>,
    Company(company): Company,
    Path(connection_id): Path<i64>,
    Json(body): Json<InboundBody>,
) -> ApiResult<(StatusCode, axum::Json<Accepted>)> {
    let mut checks = Checks::default();
    let (from, is_group) = checks.number("from", &body.from);
    let name = checks.optional_text("name", body.name.as_deref(), 200);
    let media_type = media(&mut checks, body.media_type, body.media_url.as_deref());
    if body.body.trim().is_empty() && media_type == MediaType::Chat {
        checks.fail("body", "a text message needs a body");
    }
    checks.text_at_most("body", &body.body, MAX_TEXT);
    let message_id = match body.id.as_deref().map(str::trim) {
        Some("") => {
            checks.fail("id", "must not be empty");
            String::new()
        }
        Some(id) if id.len() > 255 => {
            checks.fail("id", "must be at most 255 characters");
            String::new()
        }
        Some(id) => id.to_string(),
        None => domain::new_sandbox_message_id(),
    };
    let quoted = checks.optional_text("quotedMessageId", body.quoted_message_id.as_deref(), 255);
    let participant_name =
        checks.optional_text("participantName", body.participant_name.as_deref(), 200);
    let participant = match &body.participant {
        Some(number) => {
            let (number, participant_is_group) = checks.number("participant", number);
            if participant_is_group {
                checks.fail("participant", "must be a member's number, not a group");
            }
            if !is_group {
                checks.fail(
                    "participant",
                    "is only for a message in a group (from ending in @g.us)",
                );
            }
            Some(Participant {
                who: Identity::number(number),
                name: participant_name,
            })
        }
        None => {
            if participant_name.is_some() {
                checks.fail("participantName", "needs participant");
            }
            None
        }
    };
    if body.timestamp.is_some_and(|t| t < 0) {
        checks.fail("timestamp", "must be Unix seconds or milliseconds");
    }
    checks.done()?;
    let timestamp = body
        .timestamp
        .map(domain::timestamp_to_ms)
        .unwrap_or_else(|| state.ingest.clock.now_ms());
    let cmd = InboundMessage {
        connection_id,
        channel: Channel::Sandbox,
        contact: Identity::number(from),
        echo: false,
        is_group,
        name,
        body: body.body,
        media_type,
        media_url: body.media_url.map(|u| u.trim().to_string()),
        message_id,
        timestamp,
        quoted_message_id: quoted,
        participant,
        original: None,
    };
    let message = state.ingest.inbound(company, cmd).await?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(Accepted {
            id: message.id,
            message_id: message.message_id,
        }),
    ))
}

/// Statuses a contact's phone reports for a message we sent.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReportedStatus {
    Delivered,
    Read,
    Played,
    Failed,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StatusBody {
    message_id: String,
    status: ReportedStatus,
}

async fn require_sandbox(state: &AppState, company: i64, connection_id: i64) -> ApiResult<()> {
    let connection = crate::store::read(&state.ingest.store, move |tx| {
        tx.connection(company, connection_id)
    })
    .await?;
    match connection {
        None => Err(ApiError::NotFound(format!("connection {connection_id}"))),
        Some(c) if c.channel != Channel::Sandbox => Err(ApiError::Conflict(format!(
            "connection {connection_id} is a {} connection, not sandbox",
            c.channel
        ))),
        Some(_) => Ok(()),
    }
}

/// The contact's phone reports a status for a message we sent → `message.updated` when the
/// status moves forward (a late `delivered` after `read` changes nothing).
#[utoipa::path(post, path = "/api/v1/connections/{id}/sandbox/status", tag = "sandbox",
    params(("id" = i64, Path)), request_body = StatusBody,
    responses((status = 200, body = Message), (status = 404, body = super::Problem)))]
async fn status(
    State(state): State<AppState>,
    Company(company): Company,
    Path(connection_id): Path<i64>,
    Json(body): Json<StatusBody>,
) -> ApiResult<axum::Json<Message>> {
    require_sandbox(&state, company, connection_id).await?;
    let status = match body.status {
        ReportedStatus::Delivered => MessageStatus::Delivered,
        ReportedStatus::Read => MessageStatus::Read,
        ReportedStatus::Played => MessageStatus::Played,
        ReportedStatus::Failed => MessageStatus::Failed,
    };
    let message_id = body.message_id;
    let message = state
        .ingest
        .run(company, move |tx, company, now| {
            ingest::status_update(tx, company, now, connection_id, &message_id, status, None)
        })
        .await?;
    Ok(axum::Json(message))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContactReactionBody {
    from: String,
    /// The channel's id of the message reacted to.
    message_id: String,
    /// One emoji; empty removes the contact's reaction.
    emoji: String,
}

/// A contact reacts to a message → `message.updated`.
#[utoipa::path(post, path = "/api/v1/connections/{id}/sandbox/reaction", tag = "sandbox",
    params(("id" = i64, Path)), request_body = ContactReactionBody,
    responses((status = 200, body = Message), (status = 404, body = super::Problem)))]
async fn reaction(
    State(state): State<AppState>,
    Company(company): Company,
    Path(connection_id): Path<i64>,
    Json(body): Json<ContactReactionBody>,
) -> ApiResult<axum::Json<Message>> {
    let mut checks = Checks::default();
    let (from, _) = checks.number("from", &body.from);
    let emoji = emoji(&mut checks, &body.emoji);
    checks.done()?;
    require_sandbox(&state, company, connection_id).await?;
    let message_id = body.message_id;
    let message = state
        .ingest
        .run(company, move |tx, company, now| {
            let from = Identity::number(from.clone());
            ingest::contact_reaction(tx, company, now, connection_id, &from, &message_id, &emoji)
        })
        .await?;
    Ok(axum::Json(message))
}
