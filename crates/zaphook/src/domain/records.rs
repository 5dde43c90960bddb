//! The records the store keeps and the API shows: connections, queues, users, contacts,
//! tickets, messages, reactions, webhook endpoints and deliveries. Times are Unix
//! milliseconds inside and RFC 3339 strings on the wire.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{
    Channel, DeliveryStatus, EventType, MediaType, MessageStatus, Ordering, SendType, TicketStatus,
    WebhookFormat,
};

/// Serialises Unix milliseconds as an RFC 3339 string.
pub mod rfc3339 {
    use serde::Serializer;
    use time::OffsetDateTime;
    use time::format_description::well_known::Rfc3339;

    pub fn format(ms: i64) -> String {
        OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
            .ok()
            .and_then(|t| t.format(&Rfc3339).ok())
            .unwrap_or_default()
    }

    /// Parses an RFC 3339 string into Unix milliseconds.
    pub fn parse(text: &str) -> Option<i64> {
        let t = OffsetDateTime::parse(text, &Rfc3339).ok()?;
        i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
    }

    pub fn serialize<S: Serializer>(ms: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(*ms))
    }

    pub mod option {
        use serde::Serializer;

        pub fn serialize<S: Serializer>(ms: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
            match ms {
                Some(ms) => s.serialize_str(&super::format(*ms)),
                None => s.serialize_none(),
            }
        }
    }
}

/// Settings of a WhatsApp Cloud API connection, secrets included (never shown by the API).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CloudConfig {
    pub phone_number_id: String,
    pub access_token: String,
    pub app_secret: String,
    pub verify_token: String,
    /// Default `https://graph.facebook.com`; a stand-in Graph server in tests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graph_base_url: Option<String>,
    /// Default `v25.0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graph_version: Option<String>,
}

/// What a `cloud` connection shows of its settings and health (never its secrets).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CloudState {
    pub phone_number_id: String,
    pub graph_base_url: String,
    pub graph_version: String,
    /// The path of the callback URL to give Meta, on this server's public URL.
    pub callback_path: String,
    /// When the last verified callback arrived.
    #[serde(serialize_with = "rfc3339::option::serialize")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_callback_at: Option<i64>,
    /// Why the last send failed (Meta's code and title), until a send succeeds.
    pub last_send_error: Option<String>,
    #[serde(serialize_with = "rfc3339::option::serialize")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_send_error_at: Option<i64>,
    /// Meta refused the access token (error 190): update it with `PATCH`.
    pub token_refused: bool,
}

/// A WhatsApp number the company runs (WHAZING's "whatsapp").
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Connection {
    pub id: i64,
    pub name: String,
    pub channel: Channel,
    /// The Cloud API phone number id, for `cloud` connections.
    pub phone_number_id: Option<String>,
    /// Settings and health of a `cloud` connection; null for other channels.
    pub cloud: Option<CloudState>,
    #[serde(serialize_with = "rfc3339::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
}

impl Connection {
    /// The connection's state as WHAZING names it (`/statuschannel`, izing's
    /// `hookSessionStatus`): a sandbox connection is always `CONNECTED`; a Cloud API one is
    /// `DISCONNECTED` while Meta refuses its access token.
    pub fn session_status(&self) -> &'static str {
        if self.cloud.as_ref().is_some_and(|c| c.token_refused) {
            "DISCONNECTED"
        } else {
            "CONNECTED"
        }
    }
}

/// A key to the WHAZING external API (`/v1/api/external/{apiId}`) of one connection; its
/// token is stored hashed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiConfig {
    /// The `apiId` of the external API's URLs: a UUID.
    #[serde(rename = "apiId")]
    pub id: String,
    #[serde(skip)]
    pub company_id: i64,
    pub connection_id: i64,
    pub name: String,
    /// The first characters of the token, to tell tokens apart.
    pub token_prefix: String,
    #[serde(serialize_with = "rfc3339::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
    /// The integrator's `authToken`, sent as a raw `authorization` header with every request
    /// to the config's hooks; never shown.
    #[serde(skip)]
    pub auth_token: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Queue {
    pub id: i64,
    pub name: String,
    #[serde(serialize_with = "rfc3339::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
}

/// An agent.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: i64,
    pub name: String,
    pub email: String,
    #[serde(serialize_with = "rfc3339::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
}

/// The other party of a conversation: a person or a group.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Contact {
    pub id: i64,
    pub name: String,
    /// Digits only with country code; for a group, the group id. Null for a user known only
    /// by BSUID.
    pub number: Option<String>,
    /// The Cloud API's business-scoped user id (`BR.…`), when known.
    pub bsuid: Option<String>,
    /// The user's WhatsApp username, when known.
    pub username: Option<String>,
    pub profile_pic_url: Option<String>,
    pub email: Option<String>,
    pub is_group: bool,
    pub pushname: Option<String>,
    pub lid: Option<String>,
    pub kanban_id: Option<i64>,
    pub followup_id: Option<i64>,
    /// Custom fields (WHAZING's `extraInfo`).
    pub extra_info: Vec<ExtraInfo>,
    #[serde(serialize_with = "rfc3339::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
}

/// One custom field of a contact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ExtraInfo {
    pub name: String,
    pub value: String,
}

impl ExtraInfo {
    /// The fields as stored: a JSON array.
    pub fn to_stored(fields: &[ExtraInfo]) -> String {
        serde_json::to_string(fields).unwrap_or_else(|_| "[]".to_string())
    }

    /// The fields stored as `text`; what cannot be read is no fields.
    pub fn from_stored(text: &str) -> Vec<ExtraInfo> {
        serde_json::from_str(text).unwrap_or_default()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Ticket {
    pub id: i64,
    pub connection_id: i64,
    pub contact_id: i64,
    pub status: TicketStatus,
    pub protocol: String,
    pub queue_id: Option<i64>,
    pub user_id: Option<i64>,
    pub is_group: bool,
    /// The integrator's key, from ticket creation or an API send; sent as `apiConfig`.
    pub external_key: Option<String>,
    /// The external API config (`apiId`) that last created or sent to the ticket: its
    /// `urlMessageStatus` hears the acks of the ticket's messages.
    pub api_config_id: Option<String>,
    /// Text of the latest message of the ticket.
    pub last_message: String,
    #[serde(serialize_with = "rfc3339::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
    #[serde(serialize_with = "rfc3339::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Reaction {
    pub emoji: String,
    pub from_me: bool,
    pub user_id: Option<i64>,
    pub contact_id: Option<i64>,
    /// Unix milliseconds.
    pub timestamp: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    /// zaphook's own id (`msg_…`).
    pub id: String,
    /// The channel's id; null until the channel accepted an outbound message.
    pub message_id: Option<String>,
    pub connection_id: i64,
    pub ticket_id: i64,
    pub contact_id: i64,
    pub body: String,
    /// Unix milliseconds.
    pub timestamp: i64,
    pub status: MessageStatus,
    pub from_me: bool,
    pub media_type: MediaType,
    pub media_url: Option<String>,
    pub is_deleted: bool,
    pub send_type: Option<SendType>,
    pub edited: bool,
    pub reactions: Vec<Reaction>,
    pub quoted_message_id: Option<String>,
    pub user_id: Option<i64>,
    /// Why an outbound message is `failed`.
    pub error: Option<MessageError>,
    /// The channel's original object of an inbound message, as it came.
    #[schema(value_type = Option<Object>)]
    pub original: Option<serde_json::Value>,
    /// In a group: the contact who wrote it.
    pub participant_id: Option<i64>,
    #[serde(serialize_with = "rfc3339::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
}

/// The channel's reason for a failed message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct MessageError {
    pub code: i64,
    pub title: String,
    /// Who reported it: `whatsapp`.
    pub source: String,
}

/// A webhook endpoint as the API shows it (secret and token are shown only when created or
/// rotated).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Webhook {
    pub id: i64,
    pub url: String,
    pub events: Vec<EventType>,
    /// The body it takes: `whazing` (WHAZING's payloads), or one of izing's hooks
    /// (`hook_message_status`, `hook_session_status`) of the API config `apiConfigId`.
    pub format: WebhookFormat,
    /// The API config that owns this endpoint (its `urlMessageStatus` or `urlServiceStatus`),
    /// which alone changes or removes it.
    pub api_config_id: Option<String>,
    pub connection_id: Option<i64>,
    pub queue_id: Option<i64>,
    /// With `queueId`: the ticket's last message is sent when the ticket enters the queue.
    pub start_on_transfer: bool,
    pub filters: Filters,
    /// The same as `filters.includeGroups` (the older name).
    pub include_groups: bool,
    pub ordering: Ordering,
    pub has_token: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    pub description: Option<String>,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub rate_limit: Option<i64>,
    #[serde(serialize_with = "rfc3339::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
}

/// Which events of its scope an endpoint receives beyond their type, as WHAZING's webhook
/// settings offer them. `received`, `sent`, `ticketOpen` and `ticketPending` apply to message
/// events only; a message of a closed ticket is sent while either ticket filter is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Filters {
    /// Messages from the contact.
    pub received: bool,
    /// Messages we sent: agents, the API, the business's own phone.
    pub sent: bool,
    /// Events of group conversations.
    pub include_groups: bool,
    /// Messages of open tickets.
    pub ticket_open: bool,
    /// Messages of pending tickets; with this and `ticketOpen` off no message event is sent.
    pub ticket_pending: bool,
    /// `mediaBase64` filled with the file's bytes, for media zaphook stores, of at most 16 MiB.
    pub media_base64: bool,
}

impl Default for Filters {
    /// Everything, without the media's bytes.
    fn default() -> Self {
        Filters {
            received: true,
            sent: true,
            include_groups: true,
            ticket_open: true,
            ticket_pending: true,
            media_base64: false,
        }
    }
}

/// Everything needed to store or change an endpoint.
#[derive(Debug, Clone)]
pub struct WebhookSpec {
    pub url: String,
    pub events: Vec<EventType>,
    pub format: WebhookFormat,
    /// The API config that owns a hook endpoint.
    pub api_config_id: Option<String>,
    pub connection_id: Option<i64>,
    pub queue_id: Option<i64>,
    pub start_on_transfer: bool,
    pub filters: Filters,
    pub ordering: Ordering,
    pub token: Option<String>,
    pub secret: String,
    pub description: Option<String>,
    pub enabled: bool,
    pub rate_limit: Option<i64>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    pub id: String,
    pub webhook_id: i64,
    pub event_id: String,
    pub event_type: EventType,
    pub status: DeliveryStatus,
    pub attempts: i64,
    #[serde(serialize_with = "rfc3339::option::serialize")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_attempt_at: Option<i64>,
    pub last_status_code: Option<i64>,
    #[serde(serialize_with = "rfc3339::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
    #[serde(serialize_with = "rfc3339::option::serialize")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub delivered_at: Option<i64>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    #[serde(serialize_with = "rfc3339::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub at: i64,
    pub status_code: Option<i64>,
    pub latency_ms: i64,
    pub error: Option<String>,
    /// The first 4 KiB of the response body.
    pub response_body: Option<String>,
    /// The request's headers as sent, one `name: value` a line (the API key's value left
    /// out); `None` for attempts made before they were kept. Shown by the dashboard.
    #[serde(skip)]
    pub request_headers: Option<String>,
}

/// One delivery with its payload and every attempt.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryDetail {
    #[serde(flatten)]
    pub delivery: Delivery,
    /// The body exactly as it is sent (the bytes that are signed).
    #[schema(value_type = Object)]
    pub payload: Box<serde_json::value::RawValue>,
    pub attempts_log: Vec<Attempt>,
}
