//! Commands → domain rules → one transaction of the store. Each command finds or creates what
//! it needs (contact, ticket), applies the rules (status moves forward, one reaction per
//! reactor), and appends in the same transaction the events it caused: the payload rendered
//! as the state is now, and one delivery per subscribed endpoint (the outbox). The caller gets
//! its answer after the commit; delivery workers are woken then.

use std::sync::Arc;

use tokio::sync::{Notify, mpsc};

use crate::clock::Clock;
use crate::domain::{
    self, Channel, Contact, ContactCard, EventType, Location, MediaType, Message, MessageError,
    MessageStatus, Reaction, SendType, Ticket, TicketEventKind, TicketStatus,
};
use crate::jitter::Jitter;
use crate::payload::{self, Previous, Snapshot};
use crate::store::{
    self, Claimed, EventScope, HandedOff, Handoffs, MessageScope, NewContact, NewDelivery,
    NewTicket, Reactor, SendJob, SendKind, Store, StoreError, Tx,
};

mod messages;
mod outbox;
mod tickets;

pub use messages::{
    SendRequest, accept_outbound, agent_reaction, change_user_id, contact_edit, contact_reaction,
    contact_revoke, delete_message, edit_message, fail_outbound, inbound, react, resolve_message,
    send, set_media, status_update,
};
pub use outbox::{
    Known, emit_ack, emit_message, emit_session_status, emit_ticket, emit_transfer_start,
};
pub use tickets::{create_ticket, update_ticket};

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

/// Who a WhatsApp user is, as far as the channel says: a phone number (or group id), a
/// business-scoped user id (Cloud API), or both; a username when known.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// Normalised number (or group id).
    pub number: Option<String>,
    pub bsuid: Option<String>,
    pub username: Option<String>,
}

impl Identity {
    pub fn number(number: impl Into<String>) -> Self {
        Identity {
            number: Some(number.into()),
            ..Identity::default()
        }
    }

    fn describe(&self) -> String {
        self.bsuid
            .as_deref()
            .or(self.number.as_deref())
            .unwrap_or("(nobody)")
            .to_string()
    }
}

/// A message of a conversation, as a channel received it: from a contact, or an echo of one
/// the business sent from its own phone (`echo`, then the contact is the recipient).
#[derive(Debug, Clone)]
pub struct InboundMessage {
    pub connection_id: i64,
    /// The channel the message must have come through.
    pub channel: Channel,
    /// The contact: the sender, or for an echo the recipient.
    pub contact: Identity,
    /// Sent by the business on the WhatsApp Business app (`fromMe`, `sendType: phone`).
    pub echo: bool,
    pub is_group: bool,
    pub name: Option<String>,
    pub body: String,
    pub media_type: MediaType,
    pub media_url: Option<String>,
    pub message_id: String,
    pub timestamp: i64,
    pub quoted_message_id: Option<String>,
    /// The channel's original object of the message.
    pub original: Option<serde_json::Value>,
    /// In a group (`is_group`): who wrote the message.
    pub participant: Option<Participant>,
}

impl InboundMessage {
    /// What [`inbound`] looks up by key: the message's channel id, and the contact (and the
    /// group participant) known by number alone, with the ticket.
    pub fn lookups(&self, company_id: i64) -> store::Lookups {
        let participant = self.participant.as_ref().filter(|_| self.is_group);
        let numbers = std::iter::once(&self.contact)
            .chain(participant.map(|p| &p.who))
            .filter(|who| who.bsuid.is_none())
            .filter_map(|who| who.number.clone())
            .collect();
        store::Lookups {
            company_id,
            connection_id: self.connection_id,
            channel_ids: vec![self.message_id.clone()],
            numbers,
        }
    }
}

/// A member of a group who wrote in it, with the profile name the channel gave.
#[derive(Debug, Clone)]
pub struct Participant {
    pub who: Identity,
    pub name: Option<String>,
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
    /// The external API config (`apiId`) the send came through: the ticket's acks go to its
    /// `urlMessageStatus` from now on.
    pub api_config_id: Option<String>,
    pub user_id: Option<i64>,
    pub send_type: SendType,
    /// A document's file name, for the channel.
    pub file_name: Option<String>,
    /// A template message (Cloud API only): `{name, language, components?}`.
    pub template: Option<Template>,
    /// A location pin; `body` is its text.
    pub location: Option<Location>,
    /// Contact cards; `body` is their text.
    pub contacts: Option<Vec<ContactCard>>,
    /// A Cloud API message object (Cloud API only), sent as it is inside zaphook's envelope
    /// (`messaging_product`, `recipient_type`, `to`); `body` and `media_type` are what zaphook
    /// read of it.
    pub cloud_message: Option<serde_json::Map<String, serde_json::Value>>,
}

impl SendMessage {
    /// An empty text of the API to `to`, for the fields of a send to be filled in.
    pub fn to(to: Recipient) -> Self {
        SendMessage {
            to,
            body: String::new(),
            media_type: MediaType::Chat,
            media_url: None,
            quoted_message_id: None,
            external_key: None,
            api_config_id: None,
            user_id: None,
            send_type: SendType::Api,
            file_name: None,
            template: None,
            location: None,
            contacts: None,
            cloud_message: None,
        }
    }
}

/// A message template as the Cloud API takes it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Template {
    pub name: String,
    pub language: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub components: Option<serde_json::Value>,
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
    /// The external API config (`apiId`) that opens it, if one does.
    pub api_config_id: Option<String>,
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
    /// Spreads the retries of channel sends and media fetches.
    pub jitter: Jitter,
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
        F: FnMut(&mut dyn Tx, i64, i64) -> IngestResult<R> + Send + 'static,
    {
        self.run_looking_up(company_id, None, f).await
    }

    /// [`run`](Self::run), saying ahead what `f` will look up (see [`store::Lookups`]).
    pub async fn run_looking_up<R, F>(
        &self,
        company_id: i64,
        lookups: Option<store::Lookups>,
        mut f: F,
    ) -> IngestResult<R>
    where
        R: Send + 'static,
        F: FnMut(&mut dyn Tx, i64, i64) -> IngestResult<R> + Send + 'static,
    {
        let now = self.clock.now_ms();
        let started = std::time::Instant::now();
        let lease = self.handoff.as_ref().map(|h| Handoffs {
            lease: rand::random::<u32>() as i64,
            lease_until: now + h.lease.as_millis() as i64,
            claimed: HandedOff::default(),
            busy: h.busy.lock().map(|b| b.clone()).unwrap_or_default(),
        });
        let result = store::write_looking_up(&self.store, lookups, move |tx| {
            // Each run hands off into a list of its own: what a run that was rolled back
            // handed off is not sent.
            *tx.handoffs() = lease.as_ref().map(|l| Handoffs {
                claimed: HandedOff::default(),
                ..l.clone()
            });
            let answer = f(tx, company_id, now)?;
            let handed = tx.handoffs().take().map(|h| h.claimed);
            Ok::<_, IngestError>((answer, handed))
        })
        .await;
        metrics::histogram!("zaphook_ingest_commit_seconds")
            .record(started.elapsed().as_secs_f64());
        let (answer, handed) = result?;
        // Complete now that the transaction has committed.
        let claimed = handed
            .and_then(|h| h.lock().ok().map(|mut c| std::mem::take(&mut *c)))
            .unwrap_or_default();
        match &self.handoff {
            // Deliveries not handed off wait in the database, and the dispatcher knows when
            // to claim them: when the older delivery they wait behind finishes, or when their
            // busy endpoint has room again.
            Some(handoff) if !claimed.is_empty() => {
                // If the dispatcher is gone the leases expire and the deliveries are claimed
                // like any other.
                let _ = handoff.sender.send(claimed);
            }
            _ => {}
        }
        Ok(answer)
    }

    pub async fn inbound(&self, company_id: i64, cmd: InboundMessage) -> IngestResult<Message> {
        let lookups = cmd.lookups(company_id);
        self.run_looking_up(company_id, Some(lookups), move |tx, company, now| {
            inbound(tx, company, now, &cmd)
        })
        .await
    }

    pub async fn send(&self, company_id: i64, cmd: SendMessage) -> IngestResult<Message> {
        self.run(company_id, move |tx, company, now| {
            send(tx, company, now, &cmd)
        })
        .await
    }
}

/// The contact with this identity (by BSUID first: a number can change hands, a BSUID cannot),
/// learning what the channel now tells of it, or a new one.
fn find_or_create_contact(
    tx: &mut dyn Tx,
    company_id: i64,
    now: i64,
    who: &Identity,
    is_group: bool,
    name: Option<&str>,
) -> IngestResult<Contact> {
    let mut found = match &who.bsuid {
        Some(bsuid) => tx.contact_by_bsuid(company_id, bsuid)?,
        None => None,
    };
    if found.is_none()
        && let Some(number) = &who.number
    {
        found = tx.contact_by_number(company_id, number)?;
    }
    let Some(mut contact) = found else {
        if who.number.is_none() && who.bsuid.is_none() {
            return Err(invalid("from", "a contact needs a number or a user id"));
        }
        let fallback = who.username.as_deref().or(who.number.as_deref());
        return Ok(tx.insert_contact(
            company_id,
            &NewContact {
                number: who.number.as_deref(),
                bsuid: who.bsuid.as_deref(),
                username: who.username.as_deref(),
                name: name
                    .or(fallback)
                    .unwrap_or_else(|| who.bsuid.as_deref().unwrap_or("")),
                pushname: name,
                email: None,
                is_group,
            },
            now,
        )?);
    };
    let mut changed = false;
    if contact.bsuid.is_none() && who.bsuid.is_some() {
        contact.bsuid = who.bsuid.clone();
        changed = true;
    }
    if let Some(number) = &who.number
        && contact.number.is_none()
        && tx.contact_by_number(company_id, number)?.is_none()
    {
        contact.number = Some(number.clone());
        changed = true;
    }
    if who.username.is_some() && contact.username != who.username {
        contact.username = who.username.clone();
        changed = true;
    }
    if let Some(name) = name
        && contact.pushname.as_deref() != Some(name)
    {
        contact.pushname = Some(name.to_string());
        changed = true;
    }
    if changed {
        tx.update_contact(&contact)?;
    }
    Ok(contact)
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
            api_config_id: None,
        },
        now,
    )?;
    Ok((ticket, true))
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

/// The state of connection `connection_id` changed (the writer that changed it was told so by
/// the store): izing's `hookSessionStatus` for its API configs' `urlServiceStatus`.
pub fn connection_state_changed(
    tx: &mut dyn Tx,
    company_id: i64,
    now: i64,
    connection_id: i64,
) -> IngestResult<()> {
    let connection = tx
        .connection(company_id, connection_id)?
        .ok_or_else(|| not_found(format!("connection {connection_id}")))?;
    emit_session_status(tx, company_id, now, &connection)
}
