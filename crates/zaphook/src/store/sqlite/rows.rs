//! Reading rows into records: the column lists of each table and the mapping of a row.

use rusqlite::Row;
use rusqlite::types::Type;

use crate::channels::cloud::graph;
use crate::domain::{
    Channel, CloudState, Connection as Conn, Contact, Delivery, DeliveryStatus, EventType,
    ExtraInfo, Filters, Message, MessageError, Ordering, Ticket, Webhook, WebhookFormat,
    WebhookSpec,
};

/// Reads a text column holding a wire name of an enum.
pub(super) fn wire<T>(
    row: &Row<'_>,
    idx: usize,
    parse: fn(&str) -> Option<T>,
) -> rusqlite::Result<T> {
    let text: String = row.get(idx)?;
    parse(&text).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            idx,
            Type::Text,
            format!("unknown value {text:?}").into(),
        )
    })
}

pub(super) const CONNECTION_COLS: &str = "id, name, channel, phone_number_id, graph_base_url, graph_version, last_callback_at, last_send_error, last_send_error_at, token_refused_at, created_at";

pub(super) fn connection_row(row: &Row<'_>) -> rusqlite::Result<Conn> {
    let id: i64 = row.get(0)?;
    let channel = wire(row, 2, Channel::parse)?;
    let phone_number_id: Option<String> = row.get(3)?;
    let cloud = match channel {
        Channel::Cloud => Some(CloudState {
            phone_number_id: phone_number_id.clone().unwrap_or_default(),
            graph_base_url: row
                .get::<_, Option<String>>(4)?
                .unwrap_or_else(|| graph::DEFAULT_BASE_URL.to_string()),
            graph_version: row
                .get::<_, Option<String>>(5)?
                .unwrap_or_else(|| graph::DEFAULT_VERSION.to_string()),
            callback_path: format!("/channels/cloud/{id}"),
            last_callback_at: row.get(6)?,
            last_send_error: row.get(7)?,
            last_send_error_at: row.get(8)?,
            token_refused: row.get::<_, Option<i64>>(9)?.is_some(),
        }),
        Channel::Sandbox => None,
    };
    Ok(Conn {
        id,
        name: row.get(1)?,
        channel,
        phone_number_id,
        cloud,
        created_at: row.get(10)?,
    })
}

pub(super) const CONTACT_COLS: &str = "id, name, number, profile_pic_url, email, is_group, pushname, lid, kanban_id, followup_id, created_at, bsuid, username, extra_info";

pub(super) fn contact_row(row: &Row<'_>) -> rusqlite::Result<Contact> {
    Ok(Contact {
        id: row.get(0)?,
        name: row.get(1)?,
        number: row.get(2)?,
        profile_pic_url: row.get(3)?,
        email: row.get(4)?,
        is_group: row.get(5)?,
        pushname: row.get(6)?,
        lid: row.get(7)?,
        kanban_id: row.get(8)?,
        followup_id: row.get(9)?,
        created_at: row.get(10)?,
        bsuid: row.get(11)?,
        username: row.get(12)?,
        extra_info: ExtraInfo::from_stored(&row.get::<_, String>(13)?),
    })
}

pub(super) const TICKET_COLS: &str = "id, connection_id, contact_id, status, protocol, queue_id, user_id, is_group, external_key, last_message, created_at, updated_at, api_config_id";

pub(super) fn ticket_row(row: &Row<'_>) -> rusqlite::Result<Ticket> {
    Ok(Ticket {
        id: row.get(0)?,
        connection_id: row.get(1)?,
        contact_id: row.get(2)?,
        status: wire(row, 3, crate::domain::TicketStatus::parse)?,
        protocol: row.get(4)?,
        queue_id: row.get(5)?,
        user_id: row.get(6)?,
        is_group: row.get(7)?,
        external_key: row.get(8)?,
        last_message: row.get(9)?,
        created_at: row.get(10)?,
        updated_at: row.get(11)?,
        api_config_id: row.get(12)?,
    })
}

pub(super) const MESSAGE_COLS: &str = "id, message_id, connection_id, ticket_id, contact_id, body, timestamp, status, from_me, media_type, media_url, is_deleted, send_type, edited, quoted_message_id, user_id, created_at, error_code, error_title, original, participant_id";

pub(super) fn message_row(row: &Row<'_>) -> rusqlite::Result<Message> {
    let send_type: Option<String> = row.get(12)?;
    let send_type = match send_type {
        None => None,
        Some(text) => Some(crate::domain::SendType::parse(&text).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                12,
                Type::Text,
                format!("unknown send type {text:?}").into(),
            )
        })?),
    };
    Ok(Message {
        id: row.get(0)?,
        message_id: row.get(1)?,
        connection_id: row.get(2)?,
        ticket_id: row.get(3)?,
        contact_id: row.get(4)?,
        body: row.get(5)?,
        timestamp: row.get(6)?,
        status: wire(row, 7, crate::domain::MessageStatus::parse)?,
        from_me: row.get(8)?,
        media_type: wire(row, 9, crate::domain::MediaType::parse)?,
        media_url: row.get(10)?,
        is_deleted: row.get(11)?,
        send_type,
        edited: row.get(13)?,
        reactions: Vec::new(),
        quoted_message_id: row.get(14)?,
        user_id: row.get(15)?,
        created_at: row.get(16)?,
        error: match (
            row.get::<_, Option<i64>>(17)?,
            row.get::<_, Option<String>>(18)?,
        ) {
            (Some(code), title) => Some(MessageError {
                code,
                title: title.unwrap_or_default(),
                source: "whatsapp".to_string(),
            }),
            (None, _) => None,
        },
        original: row
            .get::<_, Option<String>>(19)?
            .and_then(|text| serde_json::from_str(&text).ok()),
        participant_id: row.get(20)?,
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
fn filters_of(row: &Row<'_>) -> rusqlite::Result<Filters> {
    Ok(Filters {
        received: row.get(14)?,
        sent: row.get(15)?,
        include_groups: row.get(5)?,
        ticket_open: row.get(16)?,
        ticket_pending: row.get(17)?,
        media_base64: row.get(18)?,
    })
}

pub(super) fn webhook_row(row: &Row<'_>) -> rusqlite::Result<Webhook> {
    let token: Option<String> = row.get(7)?;
    Ok(Webhook {
        id: row.get(0)?,
        url: row.get(1)?,
        events: parse_events(&row.get::<_, String>(2)?),
        format: wire(row, 20, WebhookFormat::parse)?,
        api_config_id: row.get(21)?,
        connection_id: row.get(3)?,
        queue_id: row.get(4)?,
        start_on_transfer: row.get(19)?,
        filters: filters_of(row)?,
        include_groups: row.get(5)?,
        ordering: wire(row, 6, Ordering::parse)?,
        has_token: token.is_some(),
        secret: None,
        description: row.get(9)?,
        enabled: row.get(10)?,
        disabled_reason: row.get(11)?,
        rate_limit: row.get(12)?,
        created_at: row.get(13)?,
    })
}

pub(super) fn webhook_spec_row(row: &Row<'_>) -> rusqlite::Result<WebhookSpec> {
    Ok(WebhookSpec {
        url: row.get(1)?,
        events: parse_events(&row.get::<_, String>(2)?),
        format: wire(row, 20, WebhookFormat::parse)?,
        api_config_id: row.get(21)?,
        connection_id: row.get(3)?,
        queue_id: row.get(4)?,
        start_on_transfer: row.get(19)?,
        filters: filters_of(row)?,
        ordering: wire(row, 6, Ordering::parse)?,
        token: row.get(7)?,
        secret: row.get(8)?,
        description: row.get(9)?,
        enabled: row.get(10)?,
        rate_limit: row.get(12)?,
    })
}

pub(super) const DELIVERY_COLS: &str = "d.id, d.webhook_id, d.event_id, d.event_type, d.state, d.attempts, d.next_attempt_at, d.last_status_code, d.created_at, d.delivered_at";

pub(super) fn delivery_row(row: &Row<'_>) -> rusqlite::Result<Delivery> {
    let status = wire(row, 4, DeliveryStatus::parse)?;
    let next: i64 = row.get(6)?;
    Ok(Delivery {
        id: row.get(0)?,
        webhook_id: row.get(1)?,
        event_id: row.get(2)?,
        event_type: wire(row, 3, EventType::parse)?,
        status,
        attempts: row.get(5)?,
        next_attempt_at: matches!(status, DeliveryStatus::Pending | DeliveryStatus::Failed)
            .then_some(next),
        last_status_code: row.get(7)?,
        created_at: row.get(8)?,
        delivered_at: row.get(9)?,
    })
}
