//! Rendering of the webhook bodies of `spec/webhooks.md`: the message payload, the ticket
//! payload (with WHAZING's `Type`), the test event, and (in `hooks`) the bodies of izing's
//! per-API-config hooks. Pure: the same state renders the same bytes, so payloads are rendered
//! once, when the event is committed.

use serde::Serialize;

pub mod hooks;

use crate::domain::{
    Contact, EventType, Message, MessageError, MessageStatus, SendType, Ticket, TicketEventKind,
    TicketStatus, User,
};

/// The state an event is rendered from.
pub struct Snapshot<'a> {
    pub ticket: &'a Ticket,
    pub contact: Option<&'a Contact>,
    /// For a message: the agent who sent it (only when `sendType` is `manual`).
    /// For a ticket: the assigned agent.
    pub user: Option<&'a User>,
    /// For a group message: the member who wrote it.
    pub participant: Option<&'a Contact>,
    pub connection_id: i64,
    pub connection_name: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MessageBody<'a> {
    event: EventType,
    id: &'a str,
    message_id: Option<&'a str>,
    message_body: &'a str,
    timestamp: i64,
    status: MessageStatus,
    from_me: bool,
    media_type: crate::domain::MediaType,
    media_url: Option<&'a str>,
    is_deleted: bool,
    send_type: Option<SendType>,
    edited: bool,
    reactions: Vec<ReactionBody<'a>>,
    quoted_message_id: Option<&'a str>,
    error: Option<&'a MessageError>,
    /// Always `null` here: for endpoints with the media-as-base64 filter the dispatcher puts
    /// the file in when it sends ([`with_media_base64`]).
    media_base64: Option<&'a str>,
    ticket: TicketBody<'a>,
    contact: Option<ContactBody<'a>>,
    /// The participant who wrote a group message.
    contactmessage: Option<ContactBody<'a>>,
    user: Option<UserBody<'a>>,
    whatsapp: WhatsappBody<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReactionBody<'a> {
    emoji: &'a str,
    from_me: bool,
    user_id: Option<i64>,
    contact_id: Option<i64>,
    timestamp: i64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TicketBody<'a> {
    id: i64,
    status: TicketStatus,
    protocol: &'a str,
    queue_id: Option<i64>,
    user_id: Option<i64>,
    is_group: bool,
    api_config: Option<ApiConfig<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ApiConfig<'a> {
    external_key: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ContactBody<'a> {
    id: i64,
    name: &'a str,
    phone_number: Option<&'a str>,
    profile_pic_url: Option<&'a str>,
    email: Option<&'a str>,
    is_group: bool,
    pushname: Option<&'a str>,
    lid: Option<&'a str>,
    bsuid: Option<&'a str>,
    username: Option<&'a str>,
    kanban_id: Option<i64>,
    followup_id: Option<i64>,
}

#[derive(Serialize)]
struct UserBody<'a> {
    id: i64,
    name: &'a str,
    email: &'a str,
}

#[derive(Serialize)]
struct WhatsappBody<'a> {
    id: i64,
    name: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TicketEventBody<'a> {
    event: EventType,
    #[serde(rename = "Type")]
    kind: &'static str,
    message_body: &'a str,
    ticket: TicketBody<'a>,
    contact: Option<ContactBody<'a>>,
    whatsapp: WhatsappBody<'a>,
    user: Option<UserBody<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    previous: Option<Previous>,
}

/// Queue and agent of a ticket before a transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Previous {
    pub queue_id: Option<i64>,
    pub user_id: Option<i64>,
}

#[derive(Serialize)]
struct TestBody<'a> {
    event: EventType,
    origin: &'static str,
    timestamp: &'a str,
}

fn ticket_body(t: &Ticket) -> TicketBody<'_> {
    TicketBody {
        id: t.id,
        status: t.status,
        protocol: &t.protocol,
        queue_id: t.queue_id,
        user_id: t.user_id,
        is_group: t.is_group,
        api_config: t
            .external_key
            .as_deref()
            .map(|external_key| ApiConfig { external_key }),
    }
}

fn contact_body(c: &Contact) -> ContactBody<'_> {
    ContactBody {
        id: c.id,
        name: &c.name,
        phone_number: c.number.as_deref(),
        profile_pic_url: c.profile_pic_url.as_deref(),
        email: c.email.as_deref(),
        is_group: c.is_group,
        pushname: c.pushname.as_deref(),
        lid: c.lid.as_deref(),
        bsuid: c.bsuid.as_deref(),
        username: c.username.as_deref(),
        kanban_id: c.kanban_id,
        followup_id: c.followup_id,
    }
}

fn user_body(u: &User) -> UserBody<'_> {
    UserBody {
        id: u.id,
        name: &u.name,
        email: &u.email,
    }
}

fn to_json(body: &impl Serialize) -> String {
    // Serialising plain structs of strings, numbers and options cannot fail.
    serde_json::to_string(body).unwrap_or_else(|_| "{}".to_string())
}

/// The body of `message.created` / `message.updated`.
pub fn message(event: EventType, message: &Message, snap: &Snapshot<'_>) -> String {
    let user = match message.send_type {
        Some(SendType::Manual) => snap.user.map(user_body),
        _ => None,
    };
    to_json(&MessageBody {
        event,
        id: &message.id,
        message_id: message.message_id.as_deref(),
        message_body: &message.body,
        timestamp: message.timestamp,
        status: message.status,
        from_me: message.from_me,
        media_type: message.media_type,
        media_url: message.media_url.as_deref(),
        is_deleted: message.is_deleted,
        send_type: message.send_type,
        edited: message.edited,
        reactions: message
            .reactions
            .iter()
            .map(|r| ReactionBody {
                emoji: &r.emoji,
                from_me: r.from_me,
                user_id: r.user_id,
                contact_id: r.contact_id,
                timestamp: r.timestamp,
            })
            .collect(),
        quoted_message_id: message.quoted_message_id.as_deref(),
        error: message.error.as_ref(),
        media_base64: None,
        ticket: ticket_body(snap.ticket),
        contact: snap.contact.map(contact_body),
        contactmessage: snap.participant.map(contact_body),
        user,
        whatsapp: WhatsappBody {
            id: snap.connection_id,
            name: snap.connection_name,
        },
    })
}

/// The body of `ticket.created` / `ticket.transferred` / `ticket.closed`. `message_body` is
/// the opening message's text for `NewTicket`, `""` for `NewTicketUserCreate`, the ticket's
/// last message text otherwise.
pub fn ticket(kind: TicketEventKind, snap: &Snapshot<'_>, previous: Option<Previous>) -> String {
    let message_body = match kind {
        TicketEventKind::NewTicketUserCreate => "",
        _ => snap.ticket.last_message.as_str(),
    };
    to_json(&TicketEventBody {
        event: kind.event_type(),
        kind: kind.as_str(),
        message_body,
        ticket: ticket_body(snap.ticket),
        contact: snap.contact.map(contact_body),
        whatsapp: WhatsappBody {
            id: snap.connection_id,
            name: snap.connection_name,
        },
        user: snap.user.map(user_body),
        previous: match kind {
            TicketEventKind::TransferTicket => previous,
            _ => None,
        },
    })
}

/// Largest file whose bytes go in `mediaBase64`; a larger one is sent as `null`.
pub const MEDIA_BASE64_MAX: i64 = 16 * 1024 * 1024;

/// A message payload with `mediaBase64` set to `file`'s base64. The key is rendered before
/// any object a peer controls, and a JSON string cannot hold an unescaped quote, so the first
/// `"mediaBase64":null` is the payload's own.
pub fn with_media_base64(payload: &str, file: &[u8]) -> String {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(file);
    payload.replacen(
        "\"mediaBase64\":null",
        &format!("\"mediaBase64\":\"{encoded}\""),
        1,
    )
}

/// The body of `webhook.test`.
pub fn webhook_test(now_ms: i64) -> String {
    to_json(&TestBody {
        event: EventType::WebhookTest,
        origin: "webhook-config",
        timestamp: &crate::domain::rfc3339::format(now_ms),
    })
}

#[cfg(test)]
mod tests;
