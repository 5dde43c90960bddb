//! The SQL of every repository operation, for SQLite. Statements are cached per connection.

use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension, params};

use crate::domain::{
    Attempt, Channel, CloudConfig, Connection as Conn, Contact, Delivery, DeliveryDetail,
    DeliveryStatus, EventType, Message, Ordering, Queue, Reaction, Ticket, User, Webhook,
    WebhookSpec,
};
use crate::store::{
    AttemptRecord, Claimed, DueWebhook, EndpointBacklog, EventScope, Handoffs, NewContact,
    NewDelivery, NewTicket, NextStep, Reactor, Recorded, RecoveryProgress, StoreError, StoreResult,
    Subscriber, Target, TicketFilter, Tx,
};

use super::rows::*;
use crate::secrets::SecretBox;

pub struct SqliteTx<'c> {
    pub(super) conn: &'c Connection,
    pub(super) secrets: &'c SecretBox,
    handoffs: Option<Handoffs>,
}

impl<'c> SqliteTx<'c> {
    pub fn new(conn: &'c Connection, secrets: &'c SecretBox) -> Self {
        SqliteTx {
            conn,
            secrets,
            handoffs: None,
        }
    }
}

impl SqliteTx<'_> {
    fn reactions(&self, message_id: &str) -> StoreResult<Vec<Reaction>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT emoji, from_me, user_id, contact_id, timestamp FROM reactions
             WHERE message_id = ?1 ORDER BY timestamp, reactor",
        )?;
        let rows = stmt.query_map([message_id], |r| {
            Ok(Reaction {
                emoji: r.get(0)?,
                from_me: r.get(1)?,
                user_id: r.get(2)?,
                contact_id: r.get(3)?,
                timestamp: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn with_reactions(&self, mut messages: Vec<Message>) -> StoreResult<Vec<Message>> {
        for m in &mut messages {
            m.reactions = self.reactions(&m.id)?;
        }
        Ok(messages)
    }

    fn messages_where(
        &self,
        sql_where: &str,
        p: impl rusqlite::Params,
    ) -> StoreResult<Vec<Message>> {
        let sql = format!("SELECT {MESSAGE_COLS} FROM messages WHERE {sql_where}");
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt
            .query_map(p, message_row)?
            .collect::<Result<Vec<_>, _>>()?;
        self.with_reactions(rows)
    }
}

impl Tx for SqliteTx<'_> {
    fn insert_company(&mut self, name: &str, now: i64) -> StoreResult<i64> {
        self.conn.execute(
            "INSERT INTO companies (name, created_at) VALUES (?1, ?2)",
            params![name, now],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    fn company_exists(&mut self, id: i64) -> StoreResult<bool> {
        Ok(self.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM companies WHERE id = ?1)",
            [id],
            |r| r.get(0),
        )?)
    }

    fn company_count(&mut self) -> StoreResult<i64> {
        Ok(self
            .conn
            .query_row("SELECT count(*) FROM companies", [], |r| r.get(0))?)
    }

    fn insert_token(
        &mut self,
        company_id: i64,
        prefix: &str,
        hash: &str,
        now: i64,
    ) -> StoreResult<()> {
        self.conn.execute(
            "INSERT INTO api_tokens (company_id, prefix, hash, created_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (hash) DO NOTHING",
            params![company_id, prefix, hash, now],
        )?;
        Ok(())
    }

    fn token_company(&mut self, hash: &str) -> StoreResult<Option<i64>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT company_id FROM api_tokens WHERE hash = ?1 AND revoked_at IS NULL",
        )?;
        Ok(stmt.query_row([hash], |r| r.get(0)).optional()?)
    }

    fn revoke_tokens(&mut self, prefix: &str, now: i64) -> StoreResult<usize> {
        Ok(self.conn.execute(
            "UPDATE api_tokens SET revoked_at = ?2
             WHERE revoked_at IS NULL AND substr(prefix, 1, length(?1)) = ?1",
            params![prefix, now],
        )?)
    }

    fn insert_connection(
        &mut self,
        company_id: i64,
        name: &str,
        channel: Channel,
        cloud: Option<&CloudConfig>,
        now: i64,
    ) -> StoreResult<Conn> {
        let sealed = cloud.map(|c| super::channels::seal_secrets(self.secrets, c));
        self.conn.execute(
            "INSERT INTO connections (company_id, name, channel, phone_number_id, graph_base_url,
                graph_version, sealed_secrets, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                company_id,
                name,
                channel.as_str(),
                cloud.map(|c| &c.phone_number_id),
                cloud.and_then(|c| c.graph_base_url.as_ref()),
                cloud.and_then(|c| c.graph_version.as_ref()),
                sealed,
                now
            ],
        )?;
        let id = self.conn.last_insert_rowid();
        self.connection(company_id, id)?
            .ok_or_else(|| StoreError::Database(format!("connection {id} vanished")))
    }

    fn connection(&mut self, company_id: i64, id: i64) -> StoreResult<Option<Conn>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {CONNECTION_COLS} FROM connections WHERE company_id = ?1 AND id = ?2"
        ))?;
        Ok(stmt
            .query_row([company_id, id], connection_row)
            .optional()?)
    }

    fn connections(&mut self, company_id: i64) -> StoreResult<Vec<Conn>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {CONNECTION_COLS} FROM connections WHERE company_id = ?1 ORDER BY id"
        ))?;
        let rows = stmt.query_map([company_id], connection_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn insert_queue(&mut self, company_id: i64, name: &str, now: i64) -> StoreResult<Queue> {
        self.conn.execute(
            "INSERT INTO queues (company_id, name, created_at) VALUES (?1, ?2, ?3)",
            params![company_id, name, now],
        )?;
        Ok(Queue {
            id: self.conn.last_insert_rowid(),
            name: name.to_string(),
            created_at: now,
        })
    }

    fn queue(&mut self, company_id: i64, id: i64) -> StoreResult<Option<Queue>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, name, created_at FROM queues WHERE company_id = ?1 AND id = ?2",
        )?;
        Ok(stmt
            .query_row([company_id, id], |r| {
                Ok(Queue {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    created_at: r.get(2)?,
                })
            })
            .optional()?)
    }

    fn queues(&mut self, company_id: i64) -> StoreResult<Vec<Queue>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, name, created_at FROM queues WHERE company_id = ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map([company_id], |r| {
            Ok(Queue {
                id: r.get(0)?,
                name: r.get(1)?,
                created_at: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn insert_user(
        &mut self,
        company_id: i64,
        name: &str,
        email: &str,
        now: i64,
    ) -> StoreResult<User> {
        self.conn.execute(
            "INSERT INTO users (company_id, name, email, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![company_id, name, email, now],
        )?;
        Ok(User {
            id: self.conn.last_insert_rowid(),
            name: name.to_string(),
            email: email.to_string(),
            created_at: now,
        })
    }

    fn user(&mut self, company_id: i64, id: i64) -> StoreResult<Option<User>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, name, email, created_at FROM users WHERE company_id = ?1 AND id = ?2",
        )?;
        Ok(stmt
            .query_row([company_id, id], |r| {
                Ok(User {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    email: r.get(2)?,
                    created_at: r.get(3)?,
                })
            })
            .optional()?)
    }

    fn users(&mut self, company_id: i64) -> StoreResult<Vec<User>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, name, email, created_at FROM users WHERE company_id = ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map([company_id], |r| {
            Ok(User {
                id: r.get(0)?,
                name: r.get(1)?,
                email: r.get(2)?,
                created_at: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn insert_contact(
        &mut self,
        company_id: i64,
        c: &NewContact<'_>,
        now: i64,
    ) -> StoreResult<Contact> {
        self.conn
            .prepare_cached(
                "INSERT INTO contacts (company_id, number, bsuid, username, name, pushname, email,
                    is_group, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![
                company_id, c.number, c.bsuid, c.username, c.name, c.pushname, c.email, c.is_group,
                now
            ])?;
        Ok(Contact {
            id: self.conn.last_insert_rowid(),
            name: c.name.to_string(),
            number: c.number.map(str::to_string),
            bsuid: c.bsuid.map(str::to_string),
            username: c.username.map(str::to_string),
            profile_pic_url: None,
            email: c.email.map(str::to_string),
            is_group: c.is_group,
            pushname: c.pushname.map(str::to_string),
            lid: None,
            kanban_id: None,
            followup_id: None,
            created_at: now,
        })
    }

    fn contact(&mut self, company_id: i64, id: i64) -> StoreResult<Option<Contact>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {CONTACT_COLS} FROM contacts WHERE company_id = ?1 AND id = ?2"
        ))?;
        Ok(stmt.query_row([company_id, id], contact_row).optional()?)
    }

    fn contact_by_number(&mut self, company_id: i64, number: &str) -> StoreResult<Option<Contact>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {CONTACT_COLS} FROM contacts WHERE company_id = ?1 AND number = ?2"
        ))?;
        Ok(stmt
            .query_row(params![company_id, number], contact_row)
            .optional()?)
    }

    fn contact_by_bsuid(&mut self, company_id: i64, bsuid: &str) -> StoreResult<Option<Contact>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {CONTACT_COLS} FROM contacts WHERE company_id = ?1 AND bsuid = ?2"
        ))?;
        Ok(stmt
            .query_row(params![company_id, bsuid], contact_row)
            .optional()?)
    }

    fn contacts(&mut self, company_id: i64, number: Option<&str>) -> StoreResult<Vec<Contact>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {CONTACT_COLS} FROM contacts
             WHERE company_id = ?1 AND (?2 IS NULL OR number = ?2) ORDER BY id LIMIT 1000"
        ))?;
        let rows = stmt.query_map(params![company_id, number], contact_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn update_contact(&mut self, c: &Contact) -> StoreResult<()> {
        self.conn
            .prepare_cached(
                "UPDATE contacts SET number = ?2, bsuid = ?3, username = ?4, name = ?5,
                    pushname = ?6 WHERE id = ?1",
            )?
            .execute(params![
                c.id, c.number, c.bsuid, c.username, c.name, c.pushname
            ])?;
        Ok(())
    }

    fn insert_ticket(&mut self, company_id: i64, t: &NewTicket, now: i64) -> StoreResult<Ticket> {
        self.conn
            .prepare_cached(
                "INSERT INTO tickets (company_id, connection_id, contact_id, status, protocol,
                    queue_id, user_id, is_group, external_key, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, '', ?5, ?6, ?7, ?8, ?9, ?9)",
            )?
            .execute(params![
                company_id,
                t.connection_id,
                t.contact_id,
                t.status.as_str(),
                t.queue_id,
                t.user_id,
                t.is_group,
                t.external_key,
                now
            ])?;
        let id = self.conn.last_insert_rowid();
        let protocol = crate::domain::protocol_for(now, id);
        self.conn
            .prepare_cached("UPDATE tickets SET protocol = ?2 WHERE id = ?1")?
            .execute(params![id, protocol])?;
        Ok(Ticket {
            id,
            connection_id: t.connection_id,
            contact_id: t.contact_id,
            status: t.status,
            protocol,
            queue_id: t.queue_id,
            user_id: t.user_id,
            is_group: t.is_group,
            external_key: t.external_key.clone(),
            last_message: String::new(),
            created_at: now,
            updated_at: now,
        })
    }

    fn ticket(&mut self, company_id: i64, id: i64) -> StoreResult<Option<Ticket>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {TICKET_COLS} FROM tickets WHERE company_id = ?1 AND id = ?2"
        ))?;
        Ok(stmt.query_row([company_id, id], ticket_row).optional()?)
    }

    fn active_ticket(
        &mut self,
        connection_id: i64,
        contact_id: i64,
    ) -> StoreResult<Option<Ticket>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {TICKET_COLS} FROM tickets
             WHERE connection_id = ?1 AND contact_id = ?2 AND status IN ('pending', 'open')
             ORDER BY id DESC LIMIT 1"
        ))?;
        Ok(stmt
            .query_row([connection_id, contact_id], ticket_row)
            .optional()?)
    }

    fn update_ticket(&mut self, t: &Ticket) -> StoreResult<()> {
        self.conn
            .prepare_cached(
                "UPDATE tickets SET status = ?2, queue_id = ?3, user_id = ?4, external_key = ?5,
                    last_message = ?6, updated_at = ?7 WHERE id = ?1",
            )?
            .execute(params![
                t.id,
                t.status.as_str(),
                t.queue_id,
                t.user_id,
                t.external_key,
                t.last_message,
                t.updated_at
            ])?;
        Ok(())
    }

    fn tickets(&mut self, company_id: i64, f: &TicketFilter) -> StoreResult<Vec<Ticket>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {TICKET_COLS} FROM tickets
             WHERE company_id = ?1 AND (?2 IS NULL OR status = ?2)
               AND (?3 IS NULL OR connection_id = ?3) AND (?4 IS NULL OR queue_id = ?4)
               AND (?5 IS NULL OR id < ?5)
             ORDER BY id DESC LIMIT ?6"
        ))?;
        let rows = stmt.query_map(
            params![
                company_id,
                f.status.map(|s| s.as_str()),
                f.connection_id,
                f.queue_id,
                f.before_id,
                f.limit
            ],
            ticket_row,
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn insert_message(&mut self, company_id: i64, m: &Message) -> StoreResult<()> {
        self.conn
            .prepare_cached(&format!(
                "INSERT INTO messages (company_id, {MESSAGE_COLS})
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17,
                    ?18, ?19, ?20, ?21)"
            ))?
            .execute(params![
                company_id,
                m.id,
                m.message_id,
                m.connection_id,
                m.ticket_id,
                m.contact_id,
                m.body,
                m.timestamp,
                m.status.as_str(),
                m.from_me,
                m.media_type.as_str(),
                m.media_url,
                m.is_deleted,
                m.send_type.map(|s| s.as_str()),
                m.edited,
                m.quoted_message_id,
                m.user_id,
                m.created_at,
                m.error.as_ref().map(|e| e.code),
                m.error.as_ref().map(|e| &e.title),
                m.original.as_ref().map(|v| v.to_string())
            ])?;
        Ok(())
    }

    fn update_message(&mut self, m: &Message) -> StoreResult<()> {
        self.conn
            .prepare_cached(
                "UPDATE messages SET message_id = ?2, body = ?3, status = ?4, is_deleted = ?5,
                    edited = ?6, media_url = ?7, error_code = ?8, error_title = ?9 WHERE id = ?1",
            )?
            .execute(params![
                m.id,
                m.message_id,
                m.body,
                m.status.as_str(),
                m.is_deleted,
                m.edited,
                m.media_url,
                m.error.as_ref().map(|e| e.code),
                m.error.as_ref().map(|e| &e.title)
            ])?;
        Ok(())
    }

    fn message(&mut self, company_id: i64, id: &str) -> StoreResult<Option<Message>> {
        Ok(self
            .messages_where("company_id = ?1 AND id = ?2", params![company_id, id])?
            .pop())
    }

    fn message_by_channel_id(
        &mut self,
        connection_id: i64,
        message_id: &str,
    ) -> StoreResult<Option<Message>> {
        Ok(self
            .messages_where(
                "connection_id = ?1 AND message_id = ?2",
                params![connection_id, message_id],
            )?
            .pop())
    }

    fn messages_by_channel_id(
        &mut self,
        company_id: i64,
        message_id: &str,
    ) -> StoreResult<Vec<Message>> {
        self.messages_where(
            "company_id = ?1 AND message_id = ?2",
            params![company_id, message_id],
        )
    }

    fn ticket_messages(
        &mut self,
        ticket_id: i64,
        after: Option<&str>,
        limit: i64,
    ) -> StoreResult<Vec<Message>> {
        self.messages_where(
            "ticket_id = ?1 AND (?2 IS NULL OR id > ?2) ORDER BY id LIMIT ?3",
            params![ticket_id, after, limit],
        )
    }

    fn set_reaction(
        &mut self,
        message_id: &str,
        reactor: Reactor,
        reaction: Option<&Reaction>,
    ) -> StoreResult<()> {
        let key = match reactor {
            Reactor::Contact(id) => format!("contact:{id}"),
            Reactor::User(id) => format!("user:{id}"),
        };
        match reaction {
            None => {
                self.conn
                    .prepare_cached("DELETE FROM reactions WHERE message_id = ?1 AND reactor = ?2")?
                    .execute(params![message_id, key])?;
            }
            Some(r) => {
                self.conn
                    .prepare_cached(
                        "INSERT INTO reactions (message_id, reactor, emoji, from_me, user_id, contact_id, timestamp)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                         ON CONFLICT (message_id, reactor) DO UPDATE SET emoji = excluded.emoji,
                            timestamp = excluded.timestamp",
                    )?
                    .execute(params![
                        message_id,
                        key,
                        r.emoji,
                        r.from_me,
                        r.user_id,
                        r.contact_id,
                        r.timestamp
                    ])?;
            }
        }
        Ok(())
    }

    fn subscribers(&mut self, s: &EventScope, now: i64) -> StoreResult<Vec<Subscriber>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, ordering, url, secret,
                    CASE WHEN previous_secret_until > ?6 THEN previous_secret END, token, rate_limit
             FROM webhooks
             WHERE company_id = ?1 AND enabled = 1
               AND instr(',' || events || ',', ',' || ?2 || ',') > 0
               AND (connection_id IS NULL OR connection_id = ?3)
               AND (queue_id IS NULL OR queue_id = ?4)
               AND (include_groups = 1 OR ?5 = 0)
             ORDER BY id",
        )?;
        let rows = stmt.query_map(
            params![
                s.company_id,
                s.event_type.as_str(),
                s.connection_id,
                s.queue_id,
                s.is_group,
                now
            ],
            |r| {
                Ok(Subscriber {
                    ordering: wire(r, 1, Ordering::parse)?,
                    target: Target {
                        webhook_id: r.get(0)?,
                        url: r.get(2)?,
                        secret: r.get(3)?,
                        previous_secret: r.get(4)?,
                        token: r.get(5)?,
                        rate_limit: r.get(6)?,
                    },
                })
            },
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn insert_event(
        &mut self,
        id: &str,
        s: &EventScope,
        payload: &str,
        now: i64,
    ) -> StoreResult<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO events (id, company_id, event_type, ticket_id, payload, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                id,
                s.company_id,
                s.event_type.as_str(),
                s.ticket_id,
                payload,
                now
            ])?;
        Ok(())
    }

    fn insert_delivery(
        &mut self,
        d: &NewDelivery<'_>,
        now: i64,
        lease: Option<(i64, i64)>,
    ) -> StoreResult<Option<i64>> {
        let (webhook_id, ordering_key) = (d.webhook_id, d.ordering_key);
        let blocked = match ordering_key {
            None => false,
            Some(key) => self
                .conn
                .prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM deliveries
                     WHERE webhook_id = ?1 AND ordering_key = ?2
                       AND state NOT IN ('delivered', 'dead'))",
                )?
                .query_row([webhook_id, key], |r| r.get(0))?,
        };
        // A delivery nothing holds back may be leased at once, for a hand-off.
        let leased = lease.filter(|_| !blocked);
        let (state, next_attempt_at, lease_id) = match leased {
            Some((lease_id, until)) => ("delivering", until, lease_id),
            None => ("pending", now, 0),
        };
        self.conn
            .prepare_cached(
                "INSERT INTO deliveries (id, webhook_id, event_id, event_type, ordering_key, state,
                    blocked, lease, next_attempt_at, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?
            .execute(params![
                d.id,
                webhook_id,
                d.event_id,
                d.event_type.as_str(),
                ordering_key,
                state,
                blocked,
                lease_id,
                next_attempt_at,
                now
            ])?;
        Ok(leased.map(|_| self.conn.last_insert_rowid()))
    }

    fn handoffs(&mut self) -> &mut Option<Handoffs> {
        &mut self.handoffs
    }

    fn insert_webhook(
        &mut self,
        company_id: i64,
        w: &WebhookSpec,
        now: i64,
    ) -> StoreResult<Webhook> {
        self.conn.execute(
            "INSERT INTO webhooks (company_id, url, events, connection_id, queue_id, include_groups,
                ordering, token, secret, description, enabled, rate_limit, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?13)",
            params![
                company_id,
                w.url,
                join_events(&w.events),
                w.connection_id,
                w.queue_id,
                w.include_groups,
                w.ordering.as_str(),
                w.token,
                w.secret,
                w.description,
                w.enabled,
                w.rate_limit,
                now
            ],
        )?;
        let id = self.conn.last_insert_rowid();
        self.webhook_view(company_id, id)?
            .ok_or_else(|| StoreError::Corrupt("inserted webhook vanished".into()))
    }

    fn webhook(&mut self, company_id: i64, id: i64) -> StoreResult<Option<WebhookSpec>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {WEBHOOK_COLS} FROM webhooks WHERE company_id = ?1 AND id = ?2"
        ))?;
        Ok(stmt
            .query_row([company_id, id], webhook_spec_row)
            .optional()?)
    }

    fn webhook_view(&mut self, company_id: i64, id: i64) -> StoreResult<Option<Webhook>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {WEBHOOK_COLS} FROM webhooks WHERE company_id = ?1 AND id = ?2"
        ))?;
        Ok(stmt.query_row([company_id, id], webhook_row).optional()?)
    }

    fn webhooks(&mut self, company_id: i64) -> StoreResult<Vec<Webhook>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {WEBHOOK_COLS} FROM webhooks WHERE company_id = ?1 ORDER BY id"
        ))?;
        let rows = stmt.query_map([company_id], webhook_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn update_webhook(
        &mut self,
        company_id: i64,
        id: i64,
        w: &WebhookSpec,
        now: i64,
    ) -> StoreResult<()> {
        self.conn.execute(
            "UPDATE webhooks SET url = ?3, events = ?4, connection_id = ?5, queue_id = ?6,
                include_groups = ?7, ordering = ?8, token = ?9, description = ?10,
                disabled_reason = CASE WHEN ?11 THEN NULL ELSE disabled_reason END,
                failing_since = CASE WHEN ?11 AND enabled = 0 THEN NULL ELSE failing_since END,
                enabled = ?11, rate_limit = ?12, updated_at = ?13
             WHERE company_id = ?1 AND id = ?2",
            params![
                company_id,
                id,
                w.url,
                join_events(&w.events),
                w.connection_id,
                w.queue_id,
                w.include_groups,
                w.ordering.as_str(),
                w.token,
                w.description,
                w.enabled,
                w.rate_limit,
                now
            ],
        )?;
        Ok(())
    }

    fn delete_webhook(&mut self, company_id: i64, id: i64) -> StoreResult<bool> {
        let deleted = self.conn.execute(
            "DELETE FROM webhooks WHERE company_id = ?1 AND id = ?2",
            [company_id, id],
        )? > 0;
        if deleted {
            self.conn.execute(
                "DELETE FROM attempts WHERE delivery_seq IN (
                    SELECT seq FROM deliveries WHERE webhook_id = ?1)",
                [id],
            )?;
            self.conn
                .execute("DELETE FROM deliveries WHERE webhook_id = ?1", [id])?;
        }
        Ok(deleted)
    }

    fn rotate_secret(
        &mut self,
        company_id: i64,
        id: i64,
        secret: &str,
        previous_until: i64,
    ) -> StoreResult<bool> {
        Ok(self.conn.execute(
            "UPDATE webhooks SET previous_secret = secret, previous_secret_until = ?4, secret = ?3
             WHERE company_id = ?1 AND id = ?2",
            params![company_id, id, secret, previous_until],
        )? > 0)
    }

    fn target(&mut self, company_id: i64, id: i64, now: i64) -> StoreResult<Option<Target>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, url, secret, CASE WHEN previous_secret_until > ?3 THEN previous_secret END,
                    token, rate_limit
             FROM webhooks WHERE company_id = ?1 AND id = ?2",
        )?;
        Ok(stmt
            .query_row(params![company_id, id, now], |r| {
                Ok(Target {
                    webhook_id: r.get(0)?,
                    url: r.get(1)?,
                    secret: r.get(2)?,
                    previous_secret: r.get(3)?,
                    token: r.get(4)?,
                    rate_limit: r.get(5)?,
                })
            })
            .optional()?)
    }

    fn due_webhooks(&mut self, now: i64) -> StoreResult<Vec<DueWebhook>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT w.id, w.rate_limit FROM webhooks w WHERE w.enabled = 1 AND EXISTS (
                SELECT 1 FROM deliveries d
                WHERE d.webhook_id = w.id AND d.state NOT IN ('delivered', 'dead')
                  AND d.blocked = 0 AND d.next_attempt_at <= ?1)
             ORDER BY w.id",
        )?;
        let rows = stmt.query_map([now], |r| {
            Ok(DueWebhook {
                id: r.get(0)?,
                rate_limit: r.get(1)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn claim_deliveries(
        &mut self,
        now: i64,
        lease_until: i64,
        webhook_id: i64,
        limit: i64,
    ) -> StoreResult<Vec<Claimed>> {
        let sql = "SELECT d.seq, d.id, d.event_id, d.event_type, d.attempts, e.payload,
                    w.id, w.url, w.secret,
                    CASE WHEN w.previous_secret_until > ?1 THEN w.previous_secret END, w.token,
                    d.ordering_key, w.rate_limit
             FROM deliveries d
             JOIN webhooks w ON w.id = d.webhook_id
             JOIN events e ON e.id = d.event_id
             WHERE d.webhook_id = ?3 AND d.state NOT IN ('delivered', 'dead')
               AND d.blocked = 0 AND d.next_attempt_at <= ?1
             ORDER BY d.next_attempt_at, d.seq
             LIMIT ?2";
        let lease: i64 = rand::random::<u32>() as i64;
        let claimed = {
            let mut stmt = self.conn.prepare_cached(sql)?;
            stmt.query_map(params![now, limit, webhook_id], |r| {
                Ok(Claimed {
                    seq: r.get(0)?,
                    ordering_key: r.get(11)?,
                    id: r.get(1)?,
                    event_id: r.get(2)?,
                    event_type: wire(r, 3, EventType::parse)?,
                    attempts: r.get(4)?,
                    lease,
                    lease_until,
                    payload: Arc::from(r.get::<_, String>(5)?),
                    target: Target {
                        webhook_id: r.get(6)?,
                        url: r.get(7)?,
                        secret: r.get(8)?,
                        previous_secret: r.get(9)?,
                        token: r.get(10)?,
                        rate_limit: r.get(12)?,
                    },
                })
            })?
            .collect::<Result<Vec<_>, _>>()?
        };
        let mut take = self.conn.prepare_cached(
            "UPDATE deliveries SET state = 'delivering', next_attempt_at = ?2, lease = ?3 WHERE seq = ?1",
        )?;
        for c in &claimed {
            take.execute(params![c.seq, lease_until, lease])?;
        }
        Ok(claimed)
    }

    fn record_attempt(&mut self, a: &AttemptRecord) -> StoreResult<Recorded> {
        self.conn
            .prepare_cached(
                "INSERT INTO attempts (delivery_seq, at, status_code, latency_ms, error, response_body)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![a.seq, a.at, a.status_code, a.latency_ms, a.error, a.response_body])?;
        let (state, next, delivered_at) = match a.next {
            NextStep::Delivered => ("delivered", a.at, Some(a.at)),
            NextStep::RetryAt(at) => ("failed", at, None),
            NextStep::Dead => ("dead", a.at, None),
        };
        let changed = self
            .conn
            .prepare_cached(
                "UPDATE deliveries SET state = ?3, attempts = attempts + 1, next_attempt_at = ?4,
                    last_status_code = ?5, delivered_at = ?6
                 WHERE seq = ?1 AND lease = ?2 AND state = 'delivering'",
            )?
            .execute(params![
                a.seq,
                a.lease,
                state,
                next,
                a.status_code,
                delivered_at
            ])?;
        let mut recorded = Recorded {
            applied: changed > 0,
            disabled: None,
            unblocked: false,
        };
        if changed > 0
            && let Some(key) = a.ordering_key
            && matches!(a.next, NextStep::Delivered | NextStep::Dead)
        {
            // Finished: the next delivery of the same endpoint and ticket may go.
            recorded.unblocked = self
                .conn
                .prepare_cached(
                    "UPDATE deliveries SET blocked = 0 WHERE seq = (
                        SELECT seq FROM deliveries
                        WHERE webhook_id = ?1 AND ordering_key = ?2
                          AND state NOT IN ('delivered', 'dead')
                        ORDER BY seq LIMIT 1)",
                )?
                .execute([a.webhook_id, key])?
                > 0;
        }
        if a.next == NextStep::Delivered {
            return Ok(recorded);
        }
        self.conn
            .prepare_cached(
                "UPDATE webhooks SET failing_since = ?2 WHERE id = ?1 AND failing_since IS NULL",
            )?
            .execute(params![a.webhook_id, a.at])?;
        let reason = if a.disable_webhook {
            "the endpoint answered 410 Gone".to_string()
        } else {
            let days = a.disable_after_ms as f64 / 86_400_000.0;
            format!("no successful delivery for {days:.0} days")
        };
        let disabled = self
            .conn
            .prepare_cached(
                "UPDATE webhooks SET enabled = 0, disabled_reason = ?2
                 WHERE id = ?1 AND enabled = 1 AND (?3 OR failing_since <= ?4)",
            )?
            .execute(params![
                a.webhook_id,
                reason,
                a.disable_webhook,
                a.at - a.disable_after_ms
            ])?;
        if disabled > 0 {
            recorded.disabled = Some(reason);
        }
        Ok(recorded)
    }

    fn mark_healthy(&mut self, webhook_ids: &[i64]) -> StoreResult<()> {
        let mut stmt = self.conn.prepare_cached(
            "UPDATE webhooks SET failing_since = NULL WHERE id = ?1 AND failing_since IS NOT NULL",
        )?;
        for id in webhook_ids {
            stmt.execute([id])?;
        }
        Ok(())
    }

    fn release_deliveries(&mut self, leases: &[(i64, i64)], now: i64) -> StoreResult<usize> {
        let mut stmt = self.conn.prepare_cached(
            "UPDATE deliveries SET state = 'pending', next_attempt_at = ?3
             WHERE seq = ?1 AND lease = ?2 AND state = 'delivering'",
        )?;
        let mut released = 0;
        for (seq, lease) in leases {
            released += stmt.execute(params![seq, lease, now])?;
        }
        Ok(released)
    }

    fn next_delivery_due(&mut self) -> StoreResult<Option<i64>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT min((SELECT min(next_attempt_at) FROM deliveries
                             WHERE webhook_id = w.id AND state NOT IN ('delivered', 'dead')
                               AND blocked = 0))
                 FROM webhooks w",
            )?
            .query_row([], |r| r.get(0))?)
    }

    fn deliveries(
        &mut self,
        webhook_id: i64,
        status: Option<DeliveryStatus>,
        after: Option<&str>,
        limit: i64,
    ) -> StoreResult<Vec<Delivery>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {DELIVERY_COLS} FROM deliveries d
             WHERE d.webhook_id = ?1 AND (?2 IS NULL OR d.state = ?2)
               AND (?3 IS NULL OR d.seq < (SELECT seq FROM deliveries WHERE id = ?3))
             ORDER BY d.seq DESC LIMIT ?4"
        ))?;
        let rows = stmt.query_map(
            params![webhook_id, status.map(|s| s.as_str()), after, limit],
            delivery_row,
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn delivery(&mut self, company_id: i64, id: &str) -> StoreResult<Option<DeliveryDetail>> {
        let found = {
            let mut stmt = self.conn.prepare_cached(&format!(
                "SELECT {DELIVERY_COLS}, d.seq, e.payload FROM deliveries d
                 JOIN events e ON e.id = d.event_id
                 WHERE d.id = ?2 AND e.company_id = ?1"
            ))?;
            stmt.query_row(params![company_id, id], |r| {
                Ok((
                    delivery_row(r)?,
                    r.get::<_, i64>(10)?,
                    r.get::<_, String>(11)?,
                ))
            })
            .optional()?
        };
        let Some((delivery, seq, payload)) = found else {
            return Ok(None);
        };
        let mut stmt = self.conn.prepare_cached(
            "SELECT at, status_code, latency_ms, error, response_body FROM attempts
             WHERE delivery_seq = ?1 ORDER BY id",
        )?;
        let attempts_log = stmt
            .query_map([seq], |r| {
                Ok(Attempt {
                    at: r.get(0)?,
                    status_code: r.get(1)?,
                    latency_ms: r.get(2)?,
                    error: r.get(3)?,
                    response_body: r.get(4)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let payload =
            serde_json::from_str(&payload).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok(Some(DeliveryDetail {
            delivery,
            payload,
            attempts_log,
        }))
    }

    fn retry_delivery(&mut self, company_id: i64, id: &str, now: i64) -> StoreResult<bool> {
        Ok(self.conn.execute(
            "UPDATE deliveries SET state = 'pending', blocked = 0, next_attempt_at = ?3
             WHERE id = ?2 AND state <> 'delivering'
               AND EXISTS (SELECT 1 FROM webhooks w WHERE w.id = webhook_id AND w.company_id = ?1)",
            params![company_id, id, now],
        )? > 0)
    }

    fn recover_deliveries(&mut self, webhook_id: i64, since: i64, now: i64) -> StoreResult<usize> {
        Ok(self.conn.execute(
            "UPDATE deliveries SET state = 'pending', blocked = 0, next_attempt_at = ?3,
                recovered_at = ?3
             WHERE webhook_id = ?1 AND created_at >= ?2 AND state IN ('failed', 'dead')",
            params![webhook_id, since, now],
        )?)
    }

    fn recovery_progress(
        &mut self,
        webhook_id: i64,
        recovered_at: i64,
    ) -> StoreResult<RecoveryProgress> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT state, count(*) FROM deliveries
             WHERE webhook_id = ?1 AND recovered_at = ?2 GROUP BY state",
        )?;
        let mut progress = RecoveryProgress::default();
        let rows = stmt.query_map([webhook_id, recovered_at], |r| {
            Ok((wire(r, 0, DeliveryStatus::parse)?, r.get::<_, i64>(1)?))
        })?;
        for row in rows {
            let (state, n) = row?;
            match state {
                DeliveryStatus::Pending | DeliveryStatus::Delivering => progress.waiting += n,
                DeliveryStatus::Delivered => progress.delivered += n,
                DeliveryStatus::Failed => progress.failed += n,
                DeliveryStatus::Dead => progress.dead += n,
            }
        }
        Ok(progress)
    }

    fn webhook_company(&mut self, id: i64) -> StoreResult<Option<i64>> {
        Ok(self
            .conn
            .query_row("SELECT company_id FROM webhooks WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .optional()?)
    }

    fn prune(&mut self, before: i64, batch: i64) -> StoreResult<usize> {
        let finished = self
            .conn
            .prepare_cached(
                "SELECT seq FROM deliveries
                 WHERE state IN ('delivered', 'dead') AND created_at < ?1 LIMIT ?2",
            )?
            .query_map(params![before, batch], |r| r.get::<_, i64>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        let mut attempts = self
            .conn
            .prepare_cached("DELETE FROM attempts WHERE delivery_seq = ?1")?;
        let mut delivery = self
            .conn
            .prepare_cached("DELETE FROM deliveries WHERE seq = ?1")?;
        let mut deliveries = 0;
        for seq in finished {
            attempts.execute([seq])?;
            deliveries += delivery.execute([seq])?;
        }
        let events = self
            .conn
            .prepare_cached(
                "DELETE FROM events WHERE id IN (
                    SELECT e.id FROM events e
                    WHERE e.created_at < ?1
                      AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id)
                    LIMIT ?2)",
            )?
            .execute(params![before, batch])?;
        Ok(deliveries + events)
    }

    fn free_orphaned(&mut self) -> StoreResult<usize> {
        // Blocked deliveries are unfinished and ordered: the order index holds them all, so
        // this reads the backlog, not every delivery ever kept.
        Ok(self
            .conn
            .prepare_cached(
                "UPDATE deliveries SET blocked = 0 WHERE seq IN (
                    SELECT d.seq FROM deliveries d INDEXED BY deliveries_order
                    WHERE d.state NOT IN ('delivered', 'dead') AND d.ordering_key IS NOT NULL
                      AND d.blocked = 1
                      AND NOT EXISTS (
                        SELECT 1 FROM deliveries o
                        WHERE o.webhook_id = d.webhook_id AND o.ordering_key = d.ordering_key
                          AND o.seq < d.seq AND o.state NOT IN ('delivered', 'dead')))",
            )?
            .execute([])?)
    }

    fn backlogs(&mut self) -> StoreResult<Vec<EndpointBacklog>> {
        // Unfinished deliveries are in one of the two partial indexes (due when not blocked,
        // ordered when blocked), so this reads the backlog only.
        let mut stmt = self.conn.prepare_cached(
            "SELECT webhook_id, count(*), min(created_at) FROM (
                SELECT webhook_id, created_at FROM deliveries INDEXED BY deliveries_webhook_due
                WHERE state NOT IN ('delivered', 'dead') AND blocked = 0
                UNION ALL
                SELECT webhook_id, created_at FROM deliveries INDEXED BY deliveries_order
                WHERE state NOT IN ('delivered', 'dead') AND ordering_key IS NOT NULL
                  AND blocked = 1)
             GROUP BY webhook_id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(EndpointBacklog {
                webhook_id: r.get(0)?,
                pending: r.get(1)?,
                oldest_created_at: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn disabled_webhooks(&mut self) -> StoreResult<i64> {
        Ok(self
            .conn
            .query_row("SELECT count(*) FROM webhooks WHERE enabled = 0", [], |r| {
                r.get(0)
            })?)
    }
}
