//! Commands → domain rules → one transaction of the store. Each command finds or creates what
//! it needs (contact, ticket), applies the rules (status moves forward, one reaction per
//! reactor), and appends in the same transaction the events it caused: the payload rendered
//! as the state is now, and one delivery per subscribed endpoint (the outbox). The caller gets
//! its answer after the commit; delivery workers are woken then.

use std::sync::Arc;

use tokio::sync::{Notify, mpsc};

use crate::clock::Clock;
use crate::domain::{
    self, Channel, Contact, EventType, MediaType, Message, MessageStatus, Reaction, SendType,
    Ticket, TicketEventKind, TicketStatus,
};
use crate::payload::{self, Previous, Snapshot};
use crate::store::{
    self, Claimed, EventScope, Handoffs, NewContact, NewDelivery, NewTicket, Reactor, SendJob,
    Store, StoreError, Tx,
};

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn not_found(what: impl Into<String>) -> IngestError {
    IngestError::NotFound(what.into())
}

fn invalid(field: &'static str, message: impl Into<String>) -> IngestError {
    IngestError::Invalid {
        field,
        message: message.into(),
    }
}

pub type IngestResult<T> = Result<T, IngestError>;

/// A message from a contact, as a channel received it.
#[derive(Debug, Clone)]
pub struct InboundMessage {
    pub connection_id: i64,
    /// The channel the message must have come through.
    pub channel: Channel,
    /// Normalised number (or group id) of the sender.
    pub from: String,
    pub is_group: bool,
    pub name: Option<String>,
    pub body: String,
    pub media_type: MediaType,
    pub media_url: Option<String>,
    pub message_id: String,
    pub timestamp: i64,
    pub quoted_message_id: Option<String>,
}

/// Where an outbound message goes.
#[derive(Debug, Clone)]
pub enum Recipient {
    Number {
        connection_id: i64,
        number: String,
        is_group: bool,
    },
    /// An open or pending ticket; `connection_id`, when given, must be the ticket's.
    Ticket { id: i64, connection_id: Option<i64> },
}

/// A message to send.
#[derive(Debug, Clone)]
pub struct SendMessage {
    pub to: Recipient,
    pub body: String,
    pub media_type: MediaType,
    pub media_url: Option<String>,
    pub quoted_message_id: Option<String>,
    pub external_key: Option<String>,
    pub user_id: Option<i64>,
    pub send_type: SendType,
}

/// A ticket to open through the API.
#[derive(Debug, Clone)]
pub struct CreateTicket {
    pub connection_id: i64,
    pub contact: ContactRef,
    pub queue_id: Option<i64>,
    pub user_id: Option<i64>,
    pub status: TicketStatus,
    pub external_key: Option<String>,
}

#[derive(Debug, Clone)]
pub enum ContactRef {
    Id(i64),
    Number { number: String, is_group: bool },
}

/// Changes to a ticket; `Some(None)` clears a queue or an agent.
#[derive(Debug, Clone, Default)]
pub struct PatchTicket {
    pub status: Option<TicketStatus>,
    pub queue_id: Option<Option<i64>>,
    pub user_id: Option<Option<i64>>,
}

/// Runs commands against the store and wakes the workers that act on what they appended.
#[derive(Clone)]
pub struct Ingest {
    pub store: Arc<dyn Store>,
    pub clock: Clock,
    /// Woken after a commit that may have appended deliveries.
    pub deliveries_ready: Arc<Notify>,
    /// Woken after a commit that appended a channel send job.
    pub sends_ready: Arc<Notify>,
    /// Where deliveries leased as they are written go once committed: the local dispatcher.
    pub handoff: Option<Handoff>,
}

/// The way to the local dispatcher for deliveries leased at write time.
#[derive(Clone)]
pub struct Handoff {
    pub lease: std::time::Duration,
    pub sender: mpsc::UnboundedSender<Vec<Claimed>>,
    /// Endpoints the dispatcher has no room for now (it keeps this up to date).
    pub busy: Arc<std::sync::Mutex<Vec<i64>>>,
}

impl Ingest {
    /// Runs `f` in a write transaction with the company and the current time, then wakes the
    /// delivery workers.
    pub async fn run<R, F>(&self, company_id: i64, f: F) -> IngestResult<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut dyn Tx, i64, i64) -> IngestResult<R> + Send + 'static,
    {
        let now = self.clock.now_ms();
        let started = std::time::Instant::now();
        let lease = self.handoff.as_ref().map(|h| Handoffs {
            lease: rand::random::<u32>() as i64,
            lease_until: now + h.lease.as_millis() as i64,
            claimed: Vec::new(),
            busy: h.busy.lock().map(|b| b.clone()).unwrap_or_default(),
        });
        let result = store::write(&self.store, move |tx| {
            *tx.handoffs() = lease;
            let answer = f(tx, company_id, now)?;
            let handoffs = tx.handoffs().take().unwrap_or_default();
            Ok::<_, IngestError>((answer, handoffs))
        })
        .await;
        metrics::histogram!("zaphook_ingest_commit_seconds")
            .record(started.elapsed().as_secs_f64());
        let (answer, handoffs) = result?;
        match &self.handoff {
            // Deliveries not handed off wait in the database, and the dispatcher knows when
            // to claim them: when the older delivery they wait behind finishes, or when their
            // busy endpoint has room again.
            Some(handoff) if !handoffs.claimed.is_empty() => {
                // If the dispatcher is gone the leases expire and the deliveries are claimed
                // like any other.
                let _ = handoff.sender.send(handoffs.claimed);
            }
            Some(_) => {}
            None => self.deliveries_ready.notify_one(),
        }
        Ok(answer)
    }

    pub async fn inbound(&self, company_id: i64, cmd: InboundMessage) -> IngestResult<Message> {
        self.run(company_id, move |tx, company, now| {
            inbound(tx, company, now, &cmd)
        })
        .await
    }

    pub async fn send(&self, company_id: i64, cmd: SendMessage) -> IngestResult<Message> {
        let result = self
            .run(company_id, move |tx, company, now| {
                send(tx, company, now, &cmd)
            })
            .await;
        if result.is_ok() {
            self.sends_ready.notify_one();
        }
        result
    }
}

fn connection_name(tx: &mut dyn Tx, company_id: i64, id: i64) -> IngestResult<String> {
    Ok(tx
        .connection(company_id, id)?
        .map(|c| c.name)
        .unwrap_or_default())
}

/// Appends an event for every endpoint subscribed to it; renders the payload only when one is.
fn append(
    tx: &mut dyn Tx,
    scope: EventScope,
    now: i64,
    render: impl FnOnce(&mut dyn Tx) -> IngestResult<String>,
) -> IngestResult<()> {
    let subscribers = tx.subscribers(&scope, now)?;
    if subscribers.is_empty() {
        return Ok(());
    }
    let payload: Arc<str> = Arc::from(render(tx)?);
    let event_id = domain::new_event_id();
    tx.insert_event(&event_id, &scope, &payload, now)?;
    let handoff = tx
        .handoffs()
        .as_ref()
        .map(|h| ((h.lease, h.lease_until), h.busy.clone()));
    for s in subscribers {
        let lease = handoff
            .as_ref()
            .filter(|(_, busy)| !busy.contains(&s.target.webhook_id))
            .map(|(lease, _)| *lease);
        let ordering_key = match s.ordering {
            domain::Ordering::Ticket => scope.ticket_id,
            domain::Ordering::None => None,
        };
        let id = domain::new_delivery_id();
        let leased = tx.insert_delivery(
            &NewDelivery {
                id: &id,
                event_id: &event_id,
                event_type: scope.event_type,
                webhook_id: s.target.webhook_id,
                ordering_key,
            },
            now,
            lease,
        )?;
        let Some(handoffs) = tx.handoffs().as_mut() else {
            continue;
        };
        if let Some(seq) = leased {
            handoffs.claimed.push(Claimed {
                seq,
                ordering_key,
                id,
                event_id: event_id.clone(),
                event_type: scope.event_type,
                attempts: 0,
                lease: handoffs.lease,
                lease_until: handoffs.lease_until,
                payload: Arc::clone(&payload),
                target: s.target,
            });
        }
    }
    Ok(())
}

fn scope(company_id: i64, event_type: EventType, ticket: &Ticket) -> EventScope {
    EventScope {
        company_id,
        event_type,
        connection_id: Some(ticket.connection_id),
        queue_id: ticket.queue_id,
        is_group: ticket.is_group,
        ticket_id: Some(ticket.id),
    }
}

/// Appends `message.created` / `message.updated` for `message` on `ticket`.
pub fn emit_message(
    tx: &mut dyn Tx,
    company_id: i64,
    now: i64,
    event_type: EventType,
    message: &Message,
    ticket: &Ticket,
) -> IngestResult<()> {
    append(tx, scope(company_id, event_type, ticket), now, |tx| {
        let contact = tx.contact(company_id, ticket.contact_id)?;
        let user = match message.user_id {
            Some(id) => tx.user(company_id, id)?,
            None => None,
        };
        let name = connection_name(tx, company_id, ticket.connection_id)?;
        Ok(payload::message(
            event_type,
            message,
            &Snapshot {
                ticket,
                contact: contact.as_ref(),
                user: user.as_ref(),
                connection_id: ticket.connection_id,
                connection_name: &name,
            },
        ))
    })
}

/// Appends a ticket event of `kind` for `ticket`.
pub fn emit_ticket(
    tx: &mut dyn Tx,
    company_id: i64,
    now: i64,
    kind: TicketEventKind,
    ticket: &Ticket,
    previous: Option<Previous>,
) -> IngestResult<()> {
    append(
        tx,
        scope(company_id, kind.event_type(), ticket),
        now,
        |tx| {
            let contact = tx.contact(company_id, ticket.contact_id)?;
            let user = match ticket.user_id {
                Some(id) => tx.user(company_id, id)?,
                None => None,
            };
            let name = connection_name(tx, company_id, ticket.connection_id)?;
            Ok(payload::ticket(
                kind,
                &Snapshot {
                    ticket,
                    contact: contact.as_ref(),
                    user: user.as_ref(),
                    connection_id: ticket.connection_id,
                    connection_name: &name,
                },
                previous,
            ))
        },
    )
}

fn find_or_create_contact(
    tx: &mut dyn Tx,
    company_id: i64,
    now: i64,
    number: &str,
    is_group: bool,
    name: Option<&str>,
) -> IngestResult<Contact> {
    if let Some(contact) = tx.contact_by_number(company_id, number)? {
        return Ok(contact);
    }
    Ok(tx.insert_contact(
        company_id,
        &NewContact {
            number,
            name: name.unwrap_or(number),
            pushname: name,
            email: None,
            is_group,
        },
        now,
    )?)
}

/// The open or pending ticket of the contact on the connection, or a new pending one.
/// Answers whether it was created.
fn find_or_create_ticket(
    tx: &mut dyn Tx,
    company_id: i64,
    now: i64,
    connection_id: i64,
    contact: &Contact,
) -> IngestResult<(Ticket, bool)> {
    if let Some(ticket) = tx.active_ticket(connection_id, contact.id)? {
        return Ok((ticket, false));
    }
    let ticket = tx.insert_ticket(
        company_id,
        &NewTicket {
            connection_id,
            contact_id: contact.id,
            status: TicketStatus::Pending,
            queue_id: None,
            user_id: None,
            is_group: contact.is_group,
            external_key: None,
        },
        now,
    )?;
    Ok((ticket, true))
}

fn summary(body: &str, media_type: MediaType) -> String {
    if body.is_empty() && media_type != MediaType::Chat {
        format!("[{media_type}]")
    } else {
        body.to_string()
    }
}

/// Files a message a contact sent. The same channel id twice on one connection is one message.
pub fn inbound(
    tx: &mut dyn Tx,
    company_id: i64,
    now: i64,
    cmd: &InboundMessage,
) -> IngestResult<Message> {
    let connection = tx
        .connection(company_id, cmd.connection_id)?
        .ok_or_else(|| not_found(format!("connection {}", cmd.connection_id)))?;
    if connection.channel != cmd.channel {
        return Err(IngestError::Conflict(format!(
            "connection {} is a {} connection, not {}",
            connection.id, connection.channel, cmd.channel
        )));
    }
    if let Some(existing) = tx.message_by_channel_id(connection.id, &cmd.message_id)? {
        return Ok(existing);
    }
    let mut contact = find_or_create_contact(
        tx,
        company_id,
        now,
        &cmd.from,
        cmd.is_group,
        cmd.name.as_deref(),
    )?;
    if let Some(name) = &cmd.name
        && contact.pushname.as_deref() != Some(name)
    {
        tx.set_contact_pushname(contact.id, name)?;
        contact.pushname = Some(name.clone());
    }
    let (mut ticket, created) =
        find_or_create_ticket(tx, company_id, now, connection.id, &contact)?;
    ticket.last_message = summary(&cmd.body, cmd.media_type);
    ticket.updated_at = now;
    tx.update_ticket(&ticket)?;
    let message = Message {
        id: domain::new_message_id(),
        message_id: Some(cmd.message_id.clone()),
        connection_id: connection.id,
        ticket_id: ticket.id,
        contact_id: contact.id,
        body: cmd.body.clone(),
        timestamp: cmd.timestamp,
        status: MessageStatus::Received,
        from_me: false,
        media_type: cmd.media_type,
        media_url: cmd.media_url.clone(),
        is_deleted: false,
        send_type: None,
        edited: false,
        reactions: Vec::new(),
        quoted_message_id: cmd.quoted_message_id.clone(),
        user_id: None,
        created_at: now,
    };
    tx.insert_message(company_id, &message)?;
    if created {
        emit_ticket(
            tx,
            company_id,
            now,
            TicketEventKind::NewTicket,
            &ticket,
            None,
        )?;
    }
    emit_message(
        tx,
        company_id,
        now,
        EventType::MessageCreated,
        &message,
        &ticket,
    )?;
    Ok(message)
}

fn require_user(tx: &mut dyn Tx, company_id: i64, user_id: Option<i64>) -> IngestResult<()> {
    if let Some(id) = user_id
        && tx.user(company_id, id)?.is_none()
    {
        return Err(invalid("userId", format!("user {id} does not exist")));
    }
    Ok(())
}

fn require_queue(tx: &mut dyn Tx, company_id: i64, queue_id: Option<i64>) -> IngestResult<()> {
    if let Some(id) = queue_id
        && tx.queue(company_id, id)?.is_none()
    {
        return Err(invalid("queueId", format!("queue {id} does not exist")));
    }
    Ok(())
}

/// Accepts a message to send: stores it `pending` and queues it for its channel. The ticket is
/// found or created; `message.created` follows when the channel accepts the message.
pub fn send(
    tx: &mut dyn Tx,
    company_id: i64,
    now: i64,
    cmd: &SendMessage,
) -> IngestResult<Message> {
    require_user(tx, company_id, cmd.user_id)?;
    let (mut ticket, created) = match &cmd.to {
        Recipient::Ticket { id, connection_id } => {
            let ticket = tx
                .ticket(company_id, *id)?
                .ok_or_else(|| not_found(format!("ticket {id}")))?;
            if connection_id.is_some_and(|c| c != ticket.connection_id) {
                return Err(invalid(
                    "connectionId",
                    format!("ticket {id} is on connection {}", ticket.connection_id),
                ));
            }
            if ticket.status == TicketStatus::Closed {
                return Err(IngestError::Conflict(format!(
                    "ticket {id} is closed; send to the number to open a new ticket"
                )));
            }
            (ticket, false)
        }
        Recipient::Number {
            connection_id,
            number,
            is_group,
        } => {
            if tx.connection(company_id, *connection_id)?.is_none() {
                return Err(invalid(
                    "connectionId",
                    format!("connection {connection_id} does not exist"),
                ));
            }
            let contact = find_or_create_contact(tx, company_id, now, number, *is_group, None)?;
            find_or_create_ticket(tx, company_id, now, *connection_id, &contact)?
        }
    };
    let channel = tx
        .connection(company_id, ticket.connection_id)?
        .map(|c| c.channel);
    if channel == Some(Channel::Cloud) {
        return Err(IngestError::Conflict(
            "sending through Cloud API connections is not available yet; use a sandbox connection"
                .into(),
        ));
    }
    if cmd.external_key.is_some() {
        ticket.external_key = cmd.external_key.clone();
    }
    ticket.last_message = summary(&cmd.body, cmd.media_type);
    ticket.updated_at = now;
    tx.update_ticket(&ticket)?;
    let message = Message {
        id: domain::new_message_id(),
        message_id: None,
        connection_id: ticket.connection_id,
        ticket_id: ticket.id,
        contact_id: ticket.contact_id,
        body: cmd.body.clone(),
        timestamp: now,
        status: MessageStatus::Pending,
        from_me: true,
        media_type: cmd.media_type,
        media_url: cmd.media_url.clone(),
        is_deleted: false,
        send_type: Some(cmd.send_type),
        edited: false,
        reactions: Vec::new(),
        quoted_message_id: cmd.quoted_message_id.clone(),
        user_id: cmd.user_id,
        created_at: now,
    };
    tx.insert_message(company_id, &message)?;
    tx.insert_send_job(
        &SendJob {
            message_id: message.id.clone(),
            company_id,
            connection_id: ticket.connection_id,
            attempts: 0,
        },
        now,
    )?;
    if created {
        emit_ticket(
            tx,
            company_id,
            now,
            TicketEventKind::NewTicketUserCreate,
            &ticket,
            None,
        )?;
    }
    Ok(message)
}

/// The channel accepted an outbound message under `channel_id`: it becomes `sended` and
/// `message.created` (fromMe) is appended.
pub fn accept_outbound(
    tx: &mut dyn Tx,
    company_id: i64,
    now: i64,
    id: &str,
    channel_id: &str,
) -> IngestResult<Message> {
    tx.finish_send_job(id)?;
    let mut message = tx
        .message(company_id, id)?
        .ok_or_else(|| not_found(format!("message {id}")))?;
    let ticket = tx
        .ticket(company_id, message.ticket_id)?
        .ok_or_else(|| not_found(format!("ticket {}", message.ticket_id)))?;
    message.message_id = Some(channel_id.to_string());
    if message.status.can_advance_to(MessageStatus::Sended) {
        message.status = MessageStatus::Sended;
    }
    tx.update_message(&message)?;
    emit_message(
        tx,
        company_id,
        now,
        EventType::MessageCreated,
        &message,
        &ticket,
    )?;
    Ok(message)
}

fn ticket_of(tx: &mut dyn Tx, company_id: i64, message: &Message) -> IngestResult<Ticket> {
    tx.ticket(company_id, message.ticket_id)?
        .ok_or_else(|| not_found(format!("ticket {}", message.ticket_id)))
}

/// A delivery status from the channel for a message we sent. Moves only forward; a status that
/// would move it back changes nothing and emits nothing.
pub fn status_update(
    tx: &mut dyn Tx,
    company_id: i64,
    now: i64,
    connection_id: i64,
    channel_id: &str,
    status: MessageStatus,
) -> IngestResult<Message> {
    let mut message = tx
        .message_by_channel_id(connection_id, channel_id)?
        .filter(|m| m.from_me)
        .ok_or_else(|| not_found(format!("sent message {channel_id}")))?;
    if !message.status.can_advance_to(status) {
        return Ok(message);
    }
    message.status = status;
    tx.update_message(&message)?;
    let ticket = ticket_of(tx, company_id, &message)?;
    emit_message(
        tx,
        company_id,
        now,
        EventType::MessageUpdated,
        &message,
        &ticket,
    )?;
    Ok(message)
}

/// Sets or (with an empty emoji) removes one reactor's reaction on a message.
pub fn react(
    tx: &mut dyn Tx,
    company_id: i64,
    now: i64,
    mut message: Message,
    reactor: Reactor,
    emoji: &str,
) -> IngestResult<Message> {
    let reaction = (!emoji.is_empty()).then(|| Reaction {
        emoji: emoji.to_string(),
        from_me: matches!(reactor, Reactor::User(_)),
        user_id: match reactor {
            Reactor::User(id) => Some(id),
            Reactor::Contact(_) => None,
        },
        contact_id: match reactor {
            Reactor::Contact(id) => Some(id),
            Reactor::User(_) => None,
        },
        timestamp: now,
    });
    tx.set_reaction(&message.id, reactor, reaction.as_ref())?;
    message.reactions = tx
        .message(company_id, &message.id)?
        .map(|m| m.reactions)
        .unwrap_or_default();
    let ticket = ticket_of(tx, company_id, &message)?;
    emit_message(
        tx,
        company_id,
        now,
        EventType::MessageUpdated,
        &message,
        &ticket,
    )?;
    Ok(message)
}

/// A contact of a connection reacts to one of the connection's messages.
pub fn contact_reaction(
    tx: &mut dyn Tx,
    company_id: i64,
    now: i64,
    connection_id: i64,
    from: &str,
    channel_id: &str,
    emoji: &str,
) -> IngestResult<Message> {
    let message = tx
        .message_by_channel_id(connection_id, channel_id)?
        .ok_or_else(|| not_found(format!("message {channel_id}")))?;
    let contact = tx
        .contact_by_number(company_id, from)?
        .ok_or_else(|| not_found(format!("contact {from}")))?;
    react(
        tx,
        company_id,
        now,
        message,
        Reactor::Contact(contact.id),
        emoji,
    )
}

/// Finds a message by zaphook's id (`msg_…`) or by the channel's id; a channel id used on
/// two connections is ambiguous.
pub fn resolve_message(tx: &mut dyn Tx, company_id: i64, id: &str) -> IngestResult<Message> {
    if let Some(m) = tx.message(company_id, id)? {
        return Ok(m);
    }
    let mut found = tx.messages_by_channel_id(company_id, id)?;
    match found.len() {
        0 => Err(not_found(format!("message {id}"))),
        1 => Ok(found.remove(0)),
        _ => Err(IngestError::Conflict(format!(
            "messageId {id} names messages on {} connections; use the message's id (msg_…)",
            found.len()
        ))),
    }
}

/// An agent reacts to a message.
pub fn agent_reaction(
    tx: &mut dyn Tx,
    company_id: i64,
    now: i64,
    id: &str,
    user_id: i64,
    emoji: &str,
) -> IngestResult<Message> {
    require_user(tx, company_id, Some(user_id))?;
    let message = resolve_message(tx, company_id, id)?;
    react(tx, company_id, now, message, Reactor::User(user_id), emoji)
}

fn own_live_message(tx: &mut dyn Tx, company_id: i64, id: &str) -> IngestResult<Message> {
    let message = resolve_message(tx, company_id, id)?;
    if !message.from_me {
        return Err(IngestError::Conflict(format!(
            "message {} was received; only messages we sent can be changed",
            message.id
        )));
    }
    if message.is_deleted {
        return Err(IngestError::Conflict(format!(
            "message {} was deleted",
            message.id
        )));
    }
    Ok(message)
}

/// An agent edits the text of a message we sent.
pub fn edit_message(
    tx: &mut dyn Tx,
    company_id: i64,
    now: i64,
    id: &str,
    body: &str,
) -> IngestResult<Message> {
    let mut message = own_live_message(tx, company_id, id)?;
    message.body = body.to_string();
    message.edited = true;
    tx.update_message(&message)?;
    let ticket = ticket_of(tx, company_id, &message)?;
    emit_message(
        tx,
        company_id,
        now,
        EventType::MessageUpdated,
        &message,
        &ticket,
    )?;
    Ok(message)
}

/// An agent deletes a message we sent, for everyone.
pub fn delete_message(
    tx: &mut dyn Tx,
    company_id: i64,
    now: i64,
    id: &str,
) -> IngestResult<Message> {
    let mut message = own_live_message(tx, company_id, id)?;
    message.is_deleted = true;
    tx.update_message(&message)?;
    let ticket = ticket_of(tx, company_id, &message)?;
    emit_message(
        tx,
        company_id,
        now,
        EventType::MessageUpdated,
        &message,
        &ticket,
    )?;
    Ok(message)
}

/// Opens a ticket through the API, or answers the contact's open or pending one on that
/// connection (with its key updated). Answers whether a ticket was created.
pub fn create_ticket(
    tx: &mut dyn Tx,
    company_id: i64,
    now: i64,
    cmd: &CreateTicket,
) -> IngestResult<(Ticket, bool)> {
    if tx.connection(company_id, cmd.connection_id)?.is_none() {
        return Err(invalid(
            "connectionId",
            format!("connection {} does not exist", cmd.connection_id),
        ));
    }
    require_queue(tx, company_id, cmd.queue_id)?;
    require_user(tx, company_id, cmd.user_id)?;
    let contact = match &cmd.contact {
        ContactRef::Id(id) => tx
            .contact(company_id, *id)?
            .ok_or_else(|| invalid("contactId", format!("contact {id} does not exist")))?,
        ContactRef::Number { number, is_group } => {
            find_or_create_contact(tx, company_id, now, number, *is_group, None)?
        }
    };
    if let Some(mut ticket) = tx.active_ticket(cmd.connection_id, contact.id)? {
        if cmd.external_key.is_some() && cmd.external_key != ticket.external_key {
            ticket.external_key = cmd.external_key.clone();
            ticket.updated_at = now;
            tx.update_ticket(&ticket)?;
        }
        return Ok((ticket, false));
    }
    let ticket = tx.insert_ticket(
        company_id,
        &NewTicket {
            connection_id: cmd.connection_id,
            contact_id: contact.id,
            status: cmd.status,
            queue_id: cmd.queue_id,
            user_id: cmd.user_id,
            is_group: contact.is_group,
            external_key: cmd.external_key.clone(),
        },
        now,
    )?;
    emit_ticket(
        tx,
        company_id,
        now,
        TicketEventKind::NewTicketUserCreate,
        &ticket,
        None,
    )?;
    Ok((ticket, true))
}

/// Changes status, queue or agent of a ticket: `ticket.transferred` when queue or agent
/// changed, `ticket.closed` when it became closed.
pub fn update_ticket(
    tx: &mut dyn Tx,
    company_id: i64,
    now: i64,
    id: i64,
    patch: &PatchTicket,
) -> IngestResult<Ticket> {
    let mut ticket = tx
        .ticket(company_id, id)?
        .ok_or_else(|| not_found(format!("ticket {id}")))?;
    if let Some(queue_id) = patch.queue_id {
        require_queue(tx, company_id, queue_id)?;
    }
    if let Some(user_id) = patch.user_id {
        require_user(tx, company_id, user_id)?;
    }
    let previous = Previous {
        queue_id: ticket.queue_id,
        user_id: ticket.user_id,
    };
    let was = ticket.status;
    if let Some(status) = patch.status {
        if was == TicketStatus::Closed
            && status != TicketStatus::Closed
            && let Some(active) = tx.active_ticket(ticket.connection_id, ticket.contact_id)?
        {
            return Err(IngestError::Conflict(format!(
                "the contact already has ticket {} open on this connection",
                active.id
            )));
        }
        ticket.status = status;
    }
    if let Some(queue_id) = patch.queue_id {
        ticket.queue_id = queue_id;
    }
    if let Some(user_id) = patch.user_id {
        ticket.user_id = user_id;
    }
    ticket.updated_at = now;
    tx.update_ticket(&ticket)?;
    if previous.queue_id != ticket.queue_id || previous.user_id != ticket.user_id {
        emit_ticket(
            tx,
            company_id,
            now,
            TicketEventKind::TransferTicket,
            &ticket,
            Some(previous),
        )?;
    }
    if was != TicketStatus::Closed && ticket.status == TicketStatus::Closed {
        emit_ticket(
            tx,
            company_id,
            now,
            TicketEventKind::ClosedTicket,
            &ticket,
            None,
        )?;
    }
    Ok(ticket)
}
