//! A group commit's inbound work done in sets. What the batch's jobs said they will look up
//! ([`Lookups`]) is read for all of them in three statements, and the writes no statement
//! of the batch reads back at once (messages, events and deliveries inserted, tickets
//! updated) are held and written in one statement per table: before the next statement that
//! names one of those tables, and before the commit. Each of these lookups and writes would
//! otherwise be a round trip of its own, and the CPU of a round trip on both sides is most of
//! what a message costs on PostgreSQL. A held delivery's seq, and whether it waits behind its
//! ticket, are known once it is written: only then is it handed off.
//!
//! The jobs see what they would see one statement at a time. A lookup read ahead answers
//! what it would answer at that point of the transaction: the transaction's writes to those
//! tables either keep what was read ahead up to date (the writes held here) or make it
//! forgotten (any other statement that writes the table). Another node's commit in between
//! is seen as if the job had run a moment earlier; the unique keys settle such races as
//! before. A held write that fails (a channel id another node has just stored) cannot be
//! told apart from its job's neighbours: the writer then rolls the batch back and runs it
//! again with every write at once ([`PgConn::held_failed`]).

use std::collections::{HashMap, HashSet};

use postgres::types::Type;

use super::rows::*;
use super::tx::{PgConn, PgTx, TypedParams};
use crate::domain::{Contact, Message, Ticket, TicketStatus};
use crate::store::{Claimed, HandedOff, Lookups, StoreError, StoreResult, Topic};

/// Lookups read ahead, for the rest of the transaction.
#[derive(Default)]
pub(super) struct Ahead {
    /// Channel ids (with their connection) no message has.
    absent_messages: HashSet<(i64, String)>,
    contacts: ContactsAhead,
    tickets: TicketsAhead,
}

/// By company and number: the contact, or `None` when no contact has the number.
type ContactsAhead = HashMap<(i64, String), Option<Contact>>;
/// By connection and contact: the open or pending ticket, or `None`.
type TicketsAhead = HashMap<(i64, i64), Option<Ticket>>;

impl Ahead {
    /// A statement that may change rows ran: what it may have changed is forgotten.
    pub(super) fn forget_changed_by(&mut self, sql: &str) {
        if sql.contains("messages") {
            self.absent_messages.clear();
        }
        if sql.contains("contacts") {
            self.contacts.clear();
        }
        if sql.contains("tickets") {
            self.tickets.clear();
        }
    }
}

/// Writes held until a statement needs them or the transaction commits.
#[derive(Default)]
pub(super) struct Held {
    /// With the company of each.
    messages: Vec<(i64, Message)>,
    events: Vec<HeldEvent>,
    /// In the order they were updated: a ticket updated twice ends as the last update left it.
    tickets: Vec<Ticket>,
    /// In the order they were inserted, which is the order their pairs' rule follows.
    deliveries: Vec<HeldDelivery>,
}

/// A delivery to insert (see the `insert_delivery` function).
pub(super) struct HeldDelivery {
    pub(super) id: String,
    pub(super) webhook_id: i64,
    pub(super) event_id: String,
    pub(super) event_type: &'static str,
    pub(super) ordering_key: Option<i64>,
    pub(super) company_id: i64,
    pub(super) ticket_id: Option<i64>,
    /// The lock key of its (endpoint, ticket) pair, if it keeps an order.
    pub(super) pair: Option<i64>,
    pub(super) now: i64,
    /// To lease for a hand-off, unless it is blocked, and the list it then joins.
    pub(super) handoff: Option<(Claimed, HandedOff)>,
}

impl HeldDelivery {
    /// Hands it off, now that it is written as `seq`, if it was leased. Answers whether a
    /// worker must claim it instead (neither handed off nor waiting).
    pub(super) fn written(self, seq: i64, blocked: bool) -> bool {
        match self.handoff {
            Some((mut claimed, to)) if !blocked => {
                claimed.seq = seq;
                if let Ok(mut handed) = to.lock() {
                    handed.push(claimed);
                }
                false
            }
            _ => self.handoff.is_none() && !blocked,
        }
    }
}

pub(super) struct HeldEvent {
    pub(super) id: String,
    pub(super) company_id: i64,
    pub(super) event_type: &'static str,
    pub(super) ticket_id: Option<i64>,
    pub(super) payload: String,
    pub(super) media: Option<String>,
    pub(super) created_at: i64,
}

impl Held {
    fn is_empty(&self) -> bool {
        self.messages.is_empty()
            && self.events.is_empty()
            && self.tickets.is_empty()
            && self.deliveries.is_empty()
    }

    /// Whether `sql` reads or writes a table with writes held.
    fn needed_by(&self, sql: &str) -> bool {
        (!self.messages.is_empty() && sql.contains("messages"))
            || (!self.events.is_empty() && sql.contains("events"))
            || (!self.tickets.is_empty() && sql.contains("tickets"))
            || (!self.deliveries.is_empty() && sql.contains("deliveries"))
    }
}

fn is_active(status: TicketStatus) -> bool {
    matches!(status, TicketStatus::Pending | TicketStatus::Open)
}

impl PgConn {
    /// Reads ahead what `lookups` name, in three statements.
    pub(super) fn read_ahead<'l>(
        &mut self,
        lookups: impl Iterator<Item = &'l Lookups>,
    ) -> StoreResult<()> {
        let (mut message_keys, mut contact_keys) = (HashSet::new(), HashSet::new());
        for l in lookups {
            for id in &l.channel_ids {
                message_keys.insert((l.connection_id, id.as_str()));
            }
            for number in &l.numbers {
                contact_keys.insert((l.company_id, l.connection_id, number.as_str()));
            }
        }
        let ahead = self.read_messages(&message_keys)?;
        self.ahead.absent_messages = ahead;
        let (contacts, tickets) = self.read_contacts_and_tickets(&contact_keys)?;
        self.ahead.contacts = contacts;
        self.ahead.tickets = tickets;
        Ok(())
    }

    fn read_messages(
        &mut self,
        keys: &HashSet<(i64, &str)>,
    ) -> StoreResult<HashSet<(i64, String)>> {
        if keys.is_empty() {
            return Ok(HashSet::new());
        }
        let (connections, ids): (Vec<i64>, Vec<&str>) = keys.iter().copied().unzip();
        let rows = self.query_planned(
            "SELECT u.connection, u.channel_id
             FROM unnest($1::bigint[], $2::text[]) AS u(connection, channel_id)
             WHERE NOT EXISTS (SELECT 1 FROM messages m
                               WHERE m.connection_id = u.connection
                                 AND m.message_id = u.channel_id)",
            &[(&connections, Type::INT8_ARRAY), (&ids, Type::TEXT_ARRAY)],
        )?;
        rows.iter().map(|r| Ok((col(r, 0)?, col(r, 1)?))).collect()
    }

    /// The contacts with the numbers of `keys` (company, connection, number), and the
    /// open or pending ticket of each one found on the connection.
    fn read_contacts_and_tickets(
        &mut self,
        keys: &HashSet<(i64, i64, &str)>,
    ) -> StoreResult<(ContactsAhead, TicketsAhead)> {
        let mut contacts = HashMap::new();
        let mut tickets = HashMap::new();
        if keys.is_empty() {
            return Ok((contacts, tickets));
        }
        let wanted: HashSet<(i64, &str)> = keys.iter().map(|&(co, _, n)| (co, n)).collect();
        let (companies, numbers): (Vec<i64>, Vec<&str>) = wanted.iter().copied().unzip();
        let sql = format!(
            "SELECT {CONTACT_COLS}, company_id FROM contacts
             WHERE (company_id, number) IN (SELECT * FROM unnest($1::bigint[], $2::text[]))"
        );
        let params: TypedParams<'_> =
            &[(&companies, Type::INT8_ARRAY), (&numbers, Type::TEXT_ARRAY)];
        let ours = CONTACT_COLS.split(',').count();
        for row in self.query_planned(&sql, params)? {
            let contact = contact_row(&row)?;
            let company: i64 = col(&row, ours)?;
            if let Some(number) = contact.number.clone() {
                contacts.insert((company, number), Some(contact));
            }
        }
        for (company, number) in wanted {
            contacts
                .entry((company, number.to_string()))
                .or_insert(None);
        }
        // The tickets of the contacts found, on the connections the jobs named.
        let mut pairs = HashSet::new();
        for &(company, connection, number) in keys {
            if let Some(Some(contact)) = contacts.get(&(company, number.to_string())) {
                pairs.insert((connection, contact.id));
            }
        }
        if pairs.is_empty() {
            return Ok((contacts, tickets));
        }
        let (connections, contact_ids): (Vec<i64>, Vec<i64>) = pairs.iter().copied().unzip();
        let sql = format!(
            "SELECT {TICKET_COLS} FROM tickets
             WHERE (connection_id, contact_id) IN (SELECT * FROM unnest($1::bigint[], $2::bigint[]))
               AND status IN ('pending', 'open')"
        );
        let params: TypedParams<'_> = &[
            (&connections, Type::INT8_ARRAY),
            (&contact_ids, Type::INT8_ARRAY),
        ];
        for row in self.query_planned(&sql, params)? {
            let ticket = ticket_row(&row)?;
            pairs.remove(&(ticket.connection_id, ticket.contact_id));
            tickets.insert((ticket.connection_id, ticket.contact_id), Some(ticket));
        }
        for pair in pairs {
            tickets.insert(pair, None);
        }
        Ok((contacts, tickets))
    }

    /// Writes what is held, one statement per table. A failure is kept in
    /// [`held_failed`](Self::held_failed) for the writer, besides being answered; what the
    /// writes made ready is added to [`held_topics`](Self::held_topics).
    pub(super) fn write_held(&mut self) -> StoreResult<()> {
        if self.held.is_empty() {
            return Ok(());
        }
        let held = std::mem::take(&mut self.held);
        let written = self
            .write_messages(&held.messages)
            .and_then(|()| self.write_events(&held.events))
            .and_then(|()| self.write_tickets(&held.tickets))
            .and_then(|()| self.insert_deliveries(held.deliveries))
            .map_err(StoreError::from);
        if let Err(e) = &written {
            self.held_failed.get_or_insert_with(|| e.clone());
        }
        written
    }

    /// Inserts deliveries in one statement, in their order, and hands off those leased. A
    /// delivery a worker must claim is announced with the commit.
    pub(super) fn insert_deliveries(
        &mut self,
        deliveries: Vec<HeldDelivery>,
    ) -> Result<(), postgres::Error> {
        if deliveries.is_empty() {
            return Ok(());
        }
        let d = || deliveries.iter();
        let ids: Vec<&str> = d().map(|d| d.id.as_str()).collect();
        let webhooks: Vec<i64> = d().map(|d| d.webhook_id).collect();
        let events: Vec<&str> = d().map(|d| d.event_id.as_str()).collect();
        let types: Vec<&str> = d().map(|d| d.event_type).collect();
        let keys: Vec<Option<i64>> = d().map(|d| d.ordering_key).collect();
        let leased: Vec<bool> = d().map(|d| d.handoff.is_some()).collect();
        let leases: Vec<i64> = d()
            .map(|d| d.handoff.as_ref().map_or(0, |(c, _)| c.lease))
            .collect();
        let untils: Vec<i64> = d()
            .map(|d| d.handoff.as_ref().map_or(d.now, |(c, _)| c.lease_until))
            .collect();
        let nows: Vec<i64> = d().map(|d| d.now).collect();
        let companies: Vec<i64> = d().map(|d| d.company_id).collect();
        let tickets: Vec<Option<i64>> = d().map(|d| d.ticket_id).collect();
        let pairs: Vec<Option<i64>> = d().map(|d| d.pair).collect();
        let statement = self.statement(
            "SELECT inserted_seq, inserted_blocked FROM insert_deliveries($1, $2, $3, $4, $5,
                $6, $7, $8, $9, $10, $11, $12)",
        )?;
        let rows = self.client.query(
            &statement,
            &[
                &ids, &webhooks, &events, &types, &keys, &leased, &leases, &untils, &nows,
                &companies, &tickets, &pairs,
            ],
        )?;
        for (held, row) in deliveries.into_iter().zip(&rows) {
            if held.written(row.try_get(0)?, row.try_get(1)?) {
                self.held_topics.add(Topic::Deliveries);
            }
        }
        Ok(())
    }

    fn write_messages(&mut self, messages: &[(i64, Message)]) -> Result<(), postgres::Error> {
        if messages.is_empty() {
            return Ok(());
        }
        let m = || messages.iter().map(|(_, m)| m);
        let companies: Vec<i64> = messages.iter().map(|(c, _)| *c).collect();
        let ids: Vec<&str> = m().map(|m| m.id.as_str()).collect();
        let channel_ids: Vec<Option<&str>> = m().map(|m| m.message_id.as_deref()).collect();
        let connections: Vec<i64> = m().map(|m| m.connection_id).collect();
        let tickets: Vec<i64> = m().map(|m| m.ticket_id).collect();
        let contacts: Vec<i64> = m().map(|m| m.contact_id).collect();
        let bodies: Vec<&str> = m().map(|m| m.body.as_str()).collect();
        let timestamps: Vec<i64> = m().map(|m| m.timestamp).collect();
        let statuses: Vec<&str> = m().map(|m| m.status.as_str()).collect();
        let from_me: Vec<bool> = m().map(|m| m.from_me).collect();
        let media_types: Vec<&str> = m().map(|m| m.media_type.as_str()).collect();
        let media_urls: Vec<Option<&str>> = m().map(|m| m.media_url.as_deref()).collect();
        let deleted: Vec<bool> = m().map(|m| m.is_deleted).collect();
        let send_types: Vec<Option<&str>> = m().map(|m| m.send_type.map(|s| s.as_str())).collect();
        let edited: Vec<bool> = m().map(|m| m.edited).collect();
        let quoted: Vec<Option<&str>> = m().map(|m| m.quoted_message_id.as_deref()).collect();
        let users: Vec<Option<i64>> = m().map(|m| m.user_id).collect();
        let created: Vec<i64> = m().map(|m| m.created_at).collect();
        let error_codes: Vec<Option<i64>> = m().map(|m| m.error.as_ref().map(|e| e.code)).collect();
        let error_titles: Vec<Option<&str>> = m()
            .map(|m| m.error.as_ref().map(|e| e.title.as_str()))
            .collect();
        let originals: Vec<Option<String>> = m()
            .map(|m| m.original.as_ref().map(|v| v.to_string()))
            .collect();
        let participants: Vec<Option<i64>> = m().map(|m| m.participant_id).collect();
        let statement = self.statement(&format!(
            "INSERT INTO messages (company_id, {MESSAGE_COLS})
             SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[],
                $5::bigint[], $6::bigint[], $7::text[], $8::bigint[], $9::text[], $10::boolean[],
                $11::text[], $12::text[], $13::boolean[], $14::text[], $15::boolean[],
                $16::text[], $17::bigint[], $18::bigint[], $19::bigint[], $20::text[],
                $21::text[], $22::bigint[])"
        ))?;
        self.client.execute(
            &statement,
            &[
                &companies,
                &ids,
                &channel_ids,
                &connections,
                &tickets,
                &contacts,
                &bodies,
                &timestamps,
                &statuses,
                &from_me,
                &media_types,
                &media_urls,
                &deleted,
                &send_types,
                &edited,
                &quoted,
                &users,
                &created,
                &error_codes,
                &error_titles,
                &originals,
                &participants,
            ],
        )?;
        Ok(())
    }

    fn write_events(&mut self, events: &[HeldEvent]) -> Result<(), postgres::Error> {
        if events.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
        let companies: Vec<i64> = events.iter().map(|e| e.company_id).collect();
        let types: Vec<&str> = events.iter().map(|e| e.event_type).collect();
        let tickets: Vec<Option<i64>> = events.iter().map(|e| e.ticket_id).collect();
        let payloads: Vec<&str> = events.iter().map(|e| e.payload.as_str()).collect();
        let media: Vec<Option<&str>> = events.iter().map(|e| e.media.as_deref()).collect();
        let created: Vec<i64> = events.iter().map(|e| e.created_at).collect();
        let statement = self.statement(
            "INSERT INTO events (id, company_id, event_type, ticket_id, payload, media_sha256,
                created_at)
             SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bigint[],
                $5::text[], $6::text[], $7::bigint[])",
        )?;
        self.client.execute(
            &statement,
            &[
                &ids, &companies, &types, &tickets, &payloads, &media, &created,
            ],
        )?;
        Ok(())
    }

    fn write_tickets(&mut self, updates: &[Ticket]) -> Result<(), postgres::Error> {
        // The last update of each ticket.
        let mut seen = HashSet::new();
        let last: Vec<&Ticket> = updates.iter().rev().filter(|t| seen.insert(t.id)).collect();
        if last.is_empty() {
            return Ok(());
        }
        let ids: Vec<i64> = last.iter().map(|t| t.id).collect();
        let statuses: Vec<&str> = last.iter().map(|t| t.status.as_str()).collect();
        let queues: Vec<Option<i64>> = last.iter().map(|t| t.queue_id).collect();
        let users: Vec<Option<i64>> = last.iter().map(|t| t.user_id).collect();
        let keys: Vec<Option<&str>> = last.iter().map(|t| t.external_key.as_deref()).collect();
        let summaries: Vec<&str> = last.iter().map(|t| t.last_message.as_str()).collect();
        let updated: Vec<i64> = last.iter().map(|t| t.updated_at).collect();
        let configs: Vec<Option<&str>> = last.iter().map(|t| t.api_config_id.as_deref()).collect();
        // `t.id = ANY($1)` besides the join, so that the plan reads tickets by key.
        let statement = self.statement(
            "UPDATE tickets t SET status = u.status, queue_id = u.queue_id, user_id = u.user_id,
                external_key = u.external_key, last_message = u.last_message,
                updated_at = u.updated_at, api_config_id = u.api_config_id
             FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::bigint[], $5::text[],
                $6::text[], $7::bigint[], $8::text[])
                AS u(id, status, queue_id, user_id, external_key, last_message, updated_at,
                     api_config_id)
             WHERE t.id = u.id AND t.id = ANY($1)",
        )?;
        self.client.execute(
            &statement,
            &[
                &ids, &statuses, &queues, &users, &keys, &summaries, &updated, &configs,
            ],
        )?;
        Ok(())
    }
}

impl PgTx<'_> {
    /// Writes what is held when `sql` needs it (see [`Held::needed_by`]).
    pub(super) fn write_held_for(&mut self, sql: &str) -> StoreResult<()> {
        if !self.conn().held.needed_by(sql) {
            return Ok(());
        }
        self.conn().write_held().map_err(|e| self.failed_with(e))
    }

    /// Whether this transaction holds writes (see the module's notes).
    fn holds(&mut self) -> bool {
        self.conn().hold
    }

    /// Whether reading ahead found no message with this channel id on the connection.
    pub(super) fn message_absent(&mut self, connection_id: i64, channel_id: &str) -> bool {
        let key = (connection_id, channel_id.to_string());
        self.conn().ahead.absent_messages.contains(&key)
    }

    /// The contact with the number, as read ahead: `Some(None)` when none has it.
    pub(super) fn contact_ahead(
        &mut self,
        company_id: i64,
        number: &str,
    ) -> Option<Option<Contact>> {
        let key = (company_id, number.to_string());
        self.conn().ahead.contacts.get(&key).cloned()
    }

    /// The contact's open or pending ticket on the connection, as read ahead.
    pub(super) fn ticket_ahead(
        &mut self,
        connection_id: i64,
        contact_id: i64,
    ) -> Option<Option<Ticket>> {
        self.conn()
            .ahead
            .tickets
            .get(&(connection_id, contact_id))
            .cloned()
    }

    /// Holds the insert of a message, if this transaction holds writes; answers whether it did.
    pub(super) fn hold_message(&mut self, company_id: i64, m: &Message) -> bool {
        if !self.holds() {
            return false;
        }
        self.wrote = true;
        let conn = self.conn();
        if let Some(channel_id) = &m.message_id {
            conn.ahead
                .absent_messages
                .remove(&(m.connection_id, channel_id.clone()));
        }
        conn.held.messages.push((company_id, m.clone()));
        true
    }

    /// Holds the insert of an event, if this transaction holds writes; answers whether it did.
    pub(super) fn hold_event(&mut self, event: impl FnOnce() -> HeldEvent) -> bool {
        if !self.holds() {
            return false;
        }
        self.wrote = true;
        self.conn().held.events.push(event());
        true
    }

    /// Holds the insert of a delivery, if this transaction holds writes; else answers it back.
    pub(super) fn hold_delivery(&mut self, d: HeldDelivery) -> Option<HeldDelivery> {
        if !self.holds() {
            return Some(d);
        }
        self.wrote = true;
        self.conn().held.deliveries.push(d);
        None
    }

    /// Holds the update of a ticket, if this transaction holds writes; answers whether it did.
    /// The ticket read ahead for its contact follows it: updated while it stays open or
    /// pending, gone when it does not; any other case is left to the database.
    pub(super) fn hold_ticket(&mut self, t: &Ticket) -> bool {
        if !self.holds() {
            return false;
        }
        self.wrote = true;
        let conn = self.conn();
        let key = (t.connection_id, t.contact_id);
        match conn.ahead.tickets.get_mut(&key) {
            Some(Some(known)) if known.id == t.id => {
                if is_active(t.status) {
                    known.status = t.status;
                    known.queue_id = t.queue_id;
                    known.user_id = t.user_id;
                    known.external_key = t.external_key.clone();
                    known.last_message = t.last_message.clone();
                    known.updated_at = t.updated_at;
                    known.api_config_id = t.api_config_id.clone();
                } else {
                    conn.ahead.tickets.insert(key, None);
                }
            }
            _ => {
                conn.ahead.tickets.remove(&key);
            }
        }
        conn.held.tickets.push(t.clone());
        true
    }
}
