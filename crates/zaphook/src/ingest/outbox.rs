//! Appending events to the outbox: the payload rendered from the state in the transaction,
//! one delivery per subscribed endpoint, leased for a hand-off when nothing holds it back.
//! izing's per-API-config hooks are events of their own, rendered in izing's shape for the
//! hook endpoints alone (a message's ack, a connection's state).

use super::*;

/// What the command already loaded in this transaction, so rendering need not load it again.
#[derive(Debug, Default, Clone, Copy)]
pub struct Known<'a> {
    pub contact: Option<&'a Contact>,
    pub connection: Option<&'a domain::Connection>,
}

/// Appends an event for every endpoint subscribed to it; renders the payload only when one is.
/// `media_url` is the message's, whose file goes in `mediaBase64` for the endpoints that ask.
fn append(
    tx: &mut dyn Tx,
    scope: EventScope<'_>,
    now: i64,
    media_url: Option<&str>,
    render: impl FnOnce(&mut dyn Tx) -> IngestResult<String>,
) -> IngestResult<()> {
    let subscribers = tx.subscribers(&scope, now)?;
    if subscribers.is_empty() {
        return Ok(());
    }
    let payload: Arc<str> = Arc::from(render(tx)?);
    let media = match media_url {
        Some(url) if subscribers.iter().any(|s| s.media_base64) => {
            media_for_base64(tx, scope.company_id, url)?
        }
        _ => None,
    };
    let event_id = domain::new_event_id();
    tx.insert_event(&event_id, &scope, &payload, media.as_deref(), now)?;
    // A connection's states keep their order as a ticket's events do: a session hook's
    // endpoint hears of one connection and no ticket, so the connection is its key.
    let order_key = match scope.event_type {
        EventType::HookSessionStatus => scope.connection_id,
        _ => scope.ticket_id,
    };
    let handoff = tx
        .handoffs()
        .as_ref()
        .map(|h| ((h.lease, h.lease_until), h.busy.clone()));
    for s in subscribers {
        let ordering_key = match s.ordering {
            domain::Ordering::Ticket => order_key,
            domain::Ordering::None => None,
        };
        let id = domain::new_delivery_id();
        let delivery = NewDelivery {
            id: &id,
            event_id: &event_id,
            event_type: scope.event_type,
            webhook_id: s.target.webhook_id,
            company_id: scope.company_id,
            ticket_id: scope.ticket_id,
            ordering_key,
        };
        let handed = handoff
            .as_ref()
            .filter(|(_, busy)| !busy.contains(&s.target.webhook_id))
            .map(|&((lease, lease_until), _)| Claimed {
                seq: 0,
                ordering_key,
                id: id.clone(),
                event_id: event_id.clone(),
                event_type: scope.event_type,
                attempts: 0,
                lease,
                lease_until,
                payload: Arc::clone(&payload),
                media: media.clone().filter(|_| s.media_base64),
                target: s.target,
            });
        tx.insert_delivery(&delivery, now, handed)?;
    }
    Ok(())
}

/// The stored file behind a `mediaUrl` zaphook serves (`…/media/{key}`, the company's own),
/// if it is small enough to go in `mediaBase64`.
fn media_for_base64(tx: &mut dyn Tx, company_id: i64, url: &str) -> IngestResult<Option<Arc<str>>> {
    let Some((_, key)) = url.rsplit_once("/media/") else {
        return Ok(None);
    };
    Ok(tx
        .media(key)?
        .filter(|m| m.company_id == company_id && m.size <= payload::MEDIA_BASE64_MAX)
        .map(|m| Arc::from(m.sha256)))
}

fn scope(company_id: i64, event_type: EventType, ticket: &Ticket) -> EventScope<'static> {
    EventScope {
        company_id,
        event_type,
        connection_id: Some(ticket.connection_id),
        queue_id: ticket.queue_id,
        is_group: ticket.is_group,
        ticket_id: Some(ticket.id),
        message: None,
        previous_queue_id: None,
        transfer_start: false,
        api_config: None,
    }
}

fn message_scope(
    company_id: i64,
    event_type: EventType,
    message: &Message,
    ticket: &Ticket,
) -> EventScope<'static> {
    EventScope {
        message: Some(MessageScope {
            from_me: message.from_me,
            ticket_status: ticket.status,
        }),
        ..scope(company_id, event_type, ticket)
    }
}

/// Loads what a payload of `ticket` shows beside it (contact, agent, a group message's
/// participant, connection name), unless `known` has it, and renders it with `render`.
fn render_for(
    tx: &mut dyn Tx,
    company_id: i64,
    ticket: &Ticket,
    user_id: Option<i64>,
    participant_id: Option<i64>,
    known: Known<'_>,
    render: impl FnOnce(&Snapshot<'_>) -> String,
) -> IngestResult<String> {
    let loaded_contact;
    let contact = match known.contact.filter(|c| c.id == ticket.contact_id) {
        Some(contact) => Some(contact),
        None => {
            loaded_contact = tx.contact(company_id, ticket.contact_id)?;
            loaded_contact.as_ref()
        }
    };
    let user = match user_id {
        Some(id) => tx.user(company_id, id)?,
        None => None,
    };
    let participant = match participant_id {
        Some(id) => tx.contact(company_id, id)?,
        None => None,
    };
    let loaded_name;
    let name = match known.connection.filter(|c| c.id == ticket.connection_id) {
        Some(connection) => connection.name.as_str(),
        None => {
            loaded_name = tx
                .connection(company_id, ticket.connection_id)?
                .map(|c| c.name)
                .unwrap_or_default();
            loaded_name.as_str()
        }
    };
    Ok(render(&Snapshot {
        ticket,
        contact,
        user: user.as_ref(),
        participant: participant.as_ref(),
        connection_id: ticket.connection_id,
        connection_name: name,
    }))
}

/// Appends `message.created` / `message.updated` for `message` on `ticket`.
pub fn emit_message(
    tx: &mut dyn Tx,
    company_id: i64,
    now: i64,
    event_type: EventType,
    message: &Message,
    ticket: &Ticket,
    known: Known<'_>,
) -> IngestResult<()> {
    let scope = message_scope(company_id, event_type, message, ticket);
    append(tx, scope, now, message.media_url.as_deref(), |tx| {
        render_for(
            tx,
            company_id,
            ticket,
            message.user_id,
            message.participant_id,
            known,
            |snap| payload::message(event_type, message, snap),
        )
    })
}

/// For the endpoints of the queue `ticket` has just entered that start on transfer: the
/// ticket's last message as `message.created`, so their flow starts as if it had just come.
pub fn emit_transfer_start(
    tx: &mut dyn Tx,
    company_id: i64,
    now: i64,
    ticket: &Ticket,
) -> IngestResult<()> {
    if ticket.queue_id.is_none() {
        return Ok(());
    }
    let Some(message) = tx.last_ticket_message(ticket.id)? else {
        return Ok(());
    };
    let event_type = EventType::MessageCreated;
    let scope = EventScope {
        transfer_start: true,
        ..message_scope(company_id, event_type, &message, ticket)
    };
    append(tx, scope, now, message.media_url.as_deref(), |tx| {
        render_for(
            tx,
            company_id,
            ticket,
            message.user_id,
            message.participant_id,
            Known::default(),
            |snap| payload::message(event_type, &message, snap),
        )
    })
}

/// Appends a ticket event of `kind` for `ticket`; its `user` is the assigned agent.
pub fn emit_ticket(
    tx: &mut dyn Tx,
    company_id: i64,
    now: i64,
    kind: TicketEventKind,
    ticket: &Ticket,
    previous: Option<Previous>,
    known: Known<'_>,
) -> IngestResult<()> {
    let scope = EventScope {
        // A queue's endpoints hear that a ticket left it.
        previous_queue_id: previous.and_then(|p| p.queue_id),
        ..scope(company_id, kind.event_type(), ticket)
    };
    append(tx, scope, now, None, |tx| {
        render_for(
            tx,
            company_id,
            ticket,
            ticket.user_id,
            None,
            known,
            |snap| payload::ticket(kind, snap, previous),
        )
    })
}

/// izing's `hookMessageStatus`: the ack of `message` (its status changed), for the
/// `urlMessageStatus` of the API config that last used its ticket. Nothing when no API config
/// did, or when that config has no such hook.
pub fn emit_ack(
    tx: &mut dyn Tx,
    company_id: i64,
    now: i64,
    message: &Message,
    ticket: &Ticket,
) -> IngestResult<()> {
    let Some(api_config) = ticket.api_config_id.as_deref() else {
        return Ok(());
    };
    let scope = EventScope {
        api_config: Some(api_config),
        ..scope(company_id, EventType::HookMessageStatus, ticket)
    };
    append(tx, scope, now, None, |_| {
        Ok(payload::hooks::message_status(message, ticket))
    })
}

/// izing's `hookSessionStatus`: the state `connection` is now in, for the `urlServiceStatus`
/// of each of its API configs that has one.
pub fn emit_session_status(
    tx: &mut dyn Tx,
    company_id: i64,
    now: i64,
    connection: &domain::Connection,
) -> IngestResult<()> {
    let scope = EventScope {
        company_id,
        event_type: EventType::HookSessionStatus,
        connection_id: Some(connection.id),
        queue_id: None,
        is_group: false,
        ticket_id: None,
        message: None,
        previous_queue_id: None,
        transfer_start: false,
        api_config: None,
    };
    append(tx, scope, now, None, |_| {
        Ok(payload::hooks::session_status(connection, now))
    })
}
