//! Reading PostgreSQL rows into records: a typed column, an enum's wire name, and the column
//! lists and mappings of the tables read in more than one place.

use postgres::Row;
use postgres::types::FromSql;

use crate::channels::cloud::graph;
use crate::domain::{
    Channel, CloudState, Connection as Conn, Contact, Delivery, DeliveryStatus, EventType,
    ExtraInfo, Filters, Message, MessageError, Ordering, SendType, Ticket, TicketStatus, Webhook,
    WebhookFormat, WebhookSpec,
};
use crate::store::{StoreError, StoreResult};

/// Column `idx` of `row`, as `T`.
pub(super) fn col<'a, T: FromSql<'a>>(row: &'a Row, idx: usize) -> StoreResult<T> {
    row.try_get(idx)
        .map_err(|e| StoreError::Corrupt(format!("column {idx}: {e}")))
}

/// A text column holding a wire name of an enum.
pub(super) fn wire<T>(row: &Row, idx: usize, parse: fn(&str) -> Option<T>) -> StoreResult<T> {
    let text: String = col(row, idx)?;
    parse(&text).ok_or_else(|| StoreError::Corrupt(format!("unknown value {text:?}")))
}

pub(super) const CONNECTION_COLS: &str = "id, name, channel, phone_number_id, graph_base_url, graph_version, last_callback_at, last_send_error, last_send_error_at, token_refused_at, created_at";

pub(super) fn connection_row(row: &Row) -> StoreResult<Conn> {
    let id: i64 = col(row, 0)?;
    let channel = wire(row, 2, Channel::parse)?;
    let phone_number_id: Option<String> = col(row, 3)?;
    let cloud = match channel {
        Channel::Cloud => Some(CloudState {
            phone_number_id: phone_number_id.clone().unwrap_or_default(),
            graph_base_url: col::<Option<String>>(row, 4)?
                .unwrap_or_else(|| graph::DEFAULT_BASE_URL.to_string()),
            graph_version: col::<Option<String>>(row, 5)?
                .unwrap_or_else(|| graph::DEFAULT_VERSION.to_string()),
            callback_path: format!("/channels/cloud/{id}"),
            last_callback_at: col(row, 6)?,
            last_send_error: col(row, 7)?,
            last_send_error_at: col(row, 8)?,
            token_refused: col::<Option<i64>>(row, 9)?.is_some(),
        }),
        Channel::Sandbox => None,
    };
    Ok(Conn {
        id,
        name: col(row, 1)?,
        channel,
        phone_number_id,
        cloud,
        created_at: col(row, 10)?,
    })
}

pub(super) const CONTACT_COLS: &str = "id, name, number, profile_pic_url, email, is_group, pushname, lid, kanban_id, followup_id, created_at, bsuid, username, extra_info";

pub(super) fn contact_row(row: &Row) -> StoreResult<Contact> {
    Ok(Contact {
        id: col(row, 0)?,
        name: col(row, 1)?,
        number: col(row, 2)?,
        profile_pic_url: col(row, 3)?,
        email: col(row, 4)?,
        is_group: col(row, 5)?,
        pushname: col(row, 6)?,
        lid: col(row, 7)?,
        kanban_id: col(row, 8)?,
        followup_id: col(row, 9)?,
        created_at: col(row, 10)?,
        bsuid: col(row, 11)?,
        username: col(row, 12)?,
        extra_info: ExtraInfo::from_stored(&col::<String>(row, 13)?),
    })
}

pub(super) const TICKET_COLS: &str = "id, connection_id, contact_id, status, protocol, queue_id, user_id, is_group, external_key, last_message, created_at, updated_at, api_config_id";

pub(super) fn ticket_row(row: &Row) -> StoreResult<Ticket> {
    Ok(Ticket {
        id: col(row, 0)?,
        connection_id: col(row, 1)?,
        contact_id: col(row, 2)?,
        status: wire(row, 3, TicketStatus::parse)?,
        protocol: col(row, 4)?,
        queue_id: col(row, 5)?,
        user_id: col(row, 6)?,
        is_group: col(row, 7)?,
        external_key: col(row, 8)?,
        last_message: col(row, 9)?,
        created_at: col(row, 10)?,
        updated_at: col(row, 11)?,
        api_config_id: col(row, 12)?,
    })
}

pub(super) const MESSAGE_COLS: &str = "id, message_id, connection_id, ticket_id, contact_id, body, timestamp, status, from_me, media_type, media_url, is_deleted, send_type, edited, quoted_message_id, user_id, created_at, error_code, error_title, original, participant_id";

pub(super) fn message_row(row: &Row) -> StoreResult<Message> {
    let send_type: Option<String> = col(row, 12)?;
    let send_type = match send_type {
        None => None,
        Some(text) => Some(
            SendType::parse(&text)
                .ok_or_else(|| StoreError::Corrupt(format!("unknown send type {text:?}")))?,
        ),
    };
    Ok(Message {
        id: col(row, 0)?,
        message_id: col(row, 1)?,
        connection_id: col(row, 2)?,
        ticket_id: col(row, 3)?,
        contact_id: col(row, 4)?,
        body: col(row, 5)?,
        timestamp: col(row, 6)?,
        status: wire(row, 7, crate::domain::MessageStatus::parse)?,
        from_me: col(row, 8)?,
        media_type: wire(row, 9, crate::domain::MediaType::parse)?,
        media_url: col(row, 10)?,
        is_deleted: col(row, 11)?,
        send_type,
        edited: col(row, 13)?,
        reactions: Vec::new(),
        quoted_message_id: col(row, 14)?,
        user_id: col(row, 15)?,
        created_at: col(row, 16)?,
        error: match (
            col::<Option<i64>>(row, 17)?,
            col::<Option<String>>(row, 18)?,
        ) {
            (Some(code), title) => Some(MessageError {
                code,
                title: title.unwrap_or_default(),
                source: "whatsapp".to_string(),
            }),
            (None, _) => None,
        },
        original: col::<Option<String>>(row, 19)?.and_then(|text| serde_json::from_str(&text).ok()),
        participant_id: col(row, 20)?,
    })
}

pub(super) const WEBHOOK_COLS: &str = "id, url, events, connection_id, queue_id, include_groups, ordering, token, secret, description, enabled, disabled_reason, rate_limit, created_at, filter_received, filter_sent, filter_ticket_open, filter_ticket_pending, media_base64, start_on_transfer, format, api_config_id";

pub(super) fn parse_events(text: &str) -> Vec<EventType> {
    text.split(',').filter_map(EventType::parse).collect()
}

pub(super) fn join_events(events: &[EventType]) -> String {
    events
        .iter()
        .map(|e| e.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// The filters of a row of WEBHOOK_COLS.
fn filters_of(row: &Row) -> StoreResult<Filters> {
    Ok(Filters {
        received: col(row, 14)?,
        sent: col(row, 15)?,
        include_groups: col(row, 5)?,
        ticket_open: col(row, 16)?,
        ticket_pending: col(row, 17)?,
        media_base64: col(row, 18)?,
    })
}

pub(super) fn webhook_row(row: &Row) -> StoreResult<Webhook> {
    let token: Option<String> = col(row, 7)?;
    Ok(Webhook {
        id: col(row, 0)?,
        url: col(row, 1)?,
        events: parse_events(&col::<String>(row, 2)?),
        format: wire(row, 20, WebhookFormat::parse)?,
        api_config_id: col(row, 21)?,
        connection_id: col(row, 3)?,
        queue_id: col(row, 4)?,
        start_on_transfer: col(row, 19)?,
        filters: filters_of(row)?,
        include_groups: col(row, 5)?,
        ordering: wire(row, 6, Ordering::parse)?,
        has_token: token.is_some(),
        secret: None,
        description: col(row, 9)?,
        enabled: col(row, 10)?,
        disabled_reason: col(row, 11)?,
        rate_limit: col(row, 12)?,
        created_at: col(row, 13)?,
    })
}

pub(super) fn webhook_spec_row(row: &Row) -> StoreResult<WebhookSpec> {
    Ok(WebhookSpec {
        url: col(row, 1)?,
        events: parse_events(&col::<String>(row, 2)?),
        format: wire(row, 20, WebhookFormat::parse)?,
        api_config_id: col(row, 21)?,
        connection_id: col(row, 3)?,
        queue_id: col(row, 4)?,
        start_on_transfer: col(row, 19)?,
        filters: filters_of(row)?,
        ordering: wire(row, 6, Ordering::parse)?,
        token: col(row, 7)?,
        secret: col(row, 8)?,
        description: col(row, 9)?,
        enabled: col(row, 10)?,
        rate_limit: col(row, 12)?,
    })
}

pub(super) const DELIVERY_COLS: &str = "d.id, d.webhook_id, d.event_id, d.event_type, d.state, d.attempts, d.next_attempt_at, d.last_status_code, d.created_at, d.delivered_at";

pub(super) fn delivery_row(row: &Row) -> StoreResult<Delivery> {
    let status = wire(row, 4, DeliveryStatus::parse)?;
    let next: i64 = col(row, 6)?;
    Ok(Delivery {
        id: col(row, 0)?,
        webhook_id: col(row, 1)?,
        event_id: col(row, 2)?,
        event_type: wire(row, 3, EventType::parse)?,
        status,
        attempts: col(row, 5)?,
        next_attempt_at: matches!(status, DeliveryStatus::Pending | DeliveryStatus::Failed)
            .then_some(next),
        last_status_code: col(row, 7)?,
        created_at: col(row, 8)?,
        delivered_at: col(row, 9)?,
    })
}
