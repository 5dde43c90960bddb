//! Conversations: contacts, tickets, messages and reactions, in PostgreSQL.

use std::collections::HashMap;

use super::rows::*;
use super::tx::{Params, PgTx};
use crate::domain::{Contact, ExtraInfo, Message, Reaction, Ticket};
use crate::store::{
    ConversationTx, NewContact, NewTicket, Reactor, StoreError, StoreResult, TicketFilter,
};

impl PgTx<'_> {
    /// The reactions of each of `message_ids` that has any, oldest first, in one statement.
    fn reactions(&mut self, message_ids: &[&str]) -> StoreResult<HashMap<String, Vec<Reaction>>> {
        let rows = self.query(
            "SELECT message_id, emoji, from_me, user_id, contact_id, timestamp FROM reactions
             WHERE message_id = ANY($1) ORDER BY timestamp, reactor",
            &[&message_ids],
        )?;
        let mut reactions: HashMap<String, Vec<Reaction>> = HashMap::new();
        for row in &rows {
            reactions.entry(col(row, 0)?).or_default().push(Reaction {
                emoji: col(row, 1)?,
                from_me: col(row, 2)?,
                user_id: col(row, 3)?,
                contact_id: col(row, 4)?,
                timestamp: col(row, 5)?,
            });
        }
        Ok(reactions)
    }

    fn with_reactions(&mut self, mut messages: Vec<Message>) -> StoreResult<Vec<Message>> {
        if messages.is_empty() {
            return Ok(messages);
        }
        let ids: Vec<&str> = messages.iter().map(|m| m.id.as_str()).collect();
        let mut reactions = self.reactions(&ids)?;
        for m in &mut messages {
            m.reactions = reactions.remove(&m.id).unwrap_or_default();
        }
        Ok(messages)
    }

    fn messages_where(&mut self, sql_where: &str, p: Params<'_>) -> StoreResult<Vec<Message>> {
        let sql = format!("SELECT {MESSAGE_COLS} FROM messages WHERE {sql_where}");
        let messages = self
            .query(&sql, p)?
            .iter()
            .map(message_row)
            .collect::<StoreResult<Vec<_>>>()?;
        self.with_reactions(messages)
    }

    /// The contact holding the number, else the BSUID, of `c`, and whether this transaction
    /// wrote it (its row version's `xmin` is this transaction's id).
    fn taken_contact(
        &mut self,
        company_id: i64,
        c: &NewContact<'_>,
    ) -> StoreResult<Option<(Contact, bool)>> {
        for (column, value) in [("number", c.number), ("bsuid", c.bsuid)] {
            let Some(value) = value else { continue };
            let row = self.query_opt(
                &format!(
                    "SELECT {CONTACT_COLS},
                        COALESCE(xmin = pg_current_xact_id_if_assigned()::xid, false)
                     FROM contacts WHERE company_id = $1 AND {column} = $2"
                ),
                &[&company_id, &value],
            )?;
            if let Some(row) = row {
                // The column after the contact's own.
                let ours = CONTACT_COLS.split(',').count();
                return Ok(Some((contact_row(&row)?, col(&row, ours)?)));
            }
        }
        Ok(None)
    }
}

impl ConversationTx for PgTx<'_> {
    /// A number or BSUID already taken in this transaction is a conflict, as on SQLite. One
    /// taken by another transaction (another node creating the same contact at once, or
    /// having just done so) is a race this one lost: it answers the winner's contact.
    fn insert_contact(
        &mut self,
        company_id: i64,
        c: &NewContact<'_>,
        now: i64,
    ) -> StoreResult<Contact> {
        if c.number.is_none() && c.bsuid.is_none() {
            // The table's check would refuse it, aborting the transaction.
            return Err(StoreError::Database(
                "a contact needs a number or a BSUID".into(),
            ));
        }
        let inserted = self.write_opt(
            &format!(
                "INSERT INTO contacts (company_id, number, bsuid, username, name, pushname, email,
                    is_group, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                 ON CONFLICT DO NOTHING
                 RETURNING {CONTACT_COLS}"
            ),
            &[
                &company_id,
                &c.number,
                &c.bsuid,
                &c.username,
                &c.name,
                &c.pushname,
                &c.email,
                &c.is_group,
                &now,
            ],
        )?;
        if let Some(row) = inserted {
            return contact_row(&row);
        }
        match self.taken_contact(company_id, c)? {
            Some((contact, false)) => Ok(contact),
            Some((contact, true)) => Err(StoreError::Conflict(format!(
                "contact {} already has this number or BSUID",
                contact.id
            ))),
            // The contact that held the key is gone again.
            None => Err(StoreError::Retry(
                "a contact with this number or BSUID was written at the same time".into(),
            )),
        }
    }

    fn contact(&mut self, company_id: i64, id: i64) -> StoreResult<Option<Contact>> {
        self.query_opt(
            &format!("SELECT {CONTACT_COLS} FROM contacts WHERE company_id = $1 AND id = $2"),
            &[&company_id, &id],
        )?
        .map(|row| contact_row(&row))
        .transpose()
    }

    fn contact_by_number(&mut self, company_id: i64, number: &str) -> StoreResult<Option<Contact>> {
        if let Some(known) = self.contact_ahead(company_id, number) {
            return Ok(known);
        }
        self.query_opt(
            &format!("SELECT {CONTACT_COLS} FROM contacts WHERE company_id = $1 AND number = $2"),
            &[&company_id, &number],
        )?
        .map(|row| contact_row(&row))
        .transpose()
    }

    fn contact_by_bsuid(&mut self, company_id: i64, bsuid: &str) -> StoreResult<Option<Contact>> {
        self.query_opt(
            &format!("SELECT {CONTACT_COLS} FROM contacts WHERE company_id = $1 AND bsuid = $2"),
            &[&company_id, &bsuid],
        )?
        .map(|row| contact_row(&row))
        .transpose()
    }

    fn contacts(&mut self, company_id: i64, number: Option<&str>) -> StoreResult<Vec<Contact>> {
        self.query(
            &format!(
                "SELECT {CONTACT_COLS} FROM contacts
                 WHERE company_id = $1 AND ($2::text IS NULL OR number = $2)
                 ORDER BY id LIMIT 1000"
            ),
            &[&company_id, &number],
        )?
        .iter()
        .map(contact_row)
        .collect()
    }

    fn update_contact(&mut self, c: &Contact) -> StoreResult<()> {
        self.execute(
            "UPDATE contacts SET number = $2, bsuid = $3, username = $4, name = $5,
                pushname = $6, email = $7, extra_info = $8 WHERE id = $1",
            &[
                &c.id,
                &c.number,
                &c.bsuid,
                &c.username,
                &c.name,
                &c.pushname,
                &c.email,
                &ExtraInfo::to_stored(&c.extra_info),
            ],
        )?;
        Ok(())
    }

    /// A second open or pending ticket of a contact on a connection is a conflict (the
    /// unique index `tickets_active`), answered without failing the transaction.
    fn insert_ticket(&mut self, company_id: i64, t: &NewTicket, now: i64) -> StoreResult<Ticket> {
        let inserted = self.write_opt(
            "INSERT INTO tickets (company_id, connection_id, contact_id, status, protocol,
                queue_id, user_id, is_group, external_key, created_at, updated_at, api_config_id)
             VALUES ($1, $2, $3, $4, '', $5, $6, $7, $8, $9, $9, $10)
             ON CONFLICT (connection_id, contact_id) WHERE status IN ('pending', 'open')
                DO NOTHING
             RETURNING id",
            &[
                &company_id,
                &t.connection_id,
                &t.contact_id,
                &t.status.as_str(),
                &t.queue_id,
                &t.user_id,
                &t.is_group,
                &t.external_key,
                &now,
                &t.api_config_id,
            ],
        )?;
        let Some(row) = inserted else {
            // Callers look for the active ticket first: another transaction made one since.
            return Err(self.lost_race(StoreError::Conflict(format!(
                "contact {} already has an open or pending ticket on connection {}",
                t.contact_id, t.connection_id
            ))));
        };
        let id: i64 = col(&row, 0)?;
        let protocol = crate::domain::protocol_for(now, id);
        self.execute(
            "UPDATE tickets SET protocol = $2 WHERE id = $1",
            &[&id, &protocol],
        )?;
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
            api_config_id: t.api_config_id.clone(),
            last_message: String::new(),
            created_at: now,
            updated_at: now,
        })
    }

    fn ticket(&mut self, company_id: i64, id: i64) -> StoreResult<Option<Ticket>> {
        self.query_opt(
            &format!("SELECT {TICKET_COLS} FROM tickets WHERE company_id = $1 AND id = $2"),
            &[&company_id, &id],
        )?
        .map(|row| ticket_row(&row))
        .transpose()
    }

    fn active_ticket(
        &mut self,
        connection_id: i64,
        contact_id: i64,
    ) -> StoreResult<Option<Ticket>> {
        if let Some(known) = self.ticket_ahead(connection_id, contact_id) {
            return Ok(known);
        }
        self.query_opt(
            &format!(
                "SELECT {TICKET_COLS} FROM tickets
                 WHERE connection_id = $1 AND contact_id = $2 AND status IN ('pending', 'open')
                 ORDER BY id DESC LIMIT 1"
            ),
            &[&connection_id, &contact_id],
        )?
        .map(|row| ticket_row(&row))
        .transpose()
    }

    fn update_ticket(&mut self, t: &Ticket) -> StoreResult<()> {
        if self.hold_ticket(t) {
            return Ok(());
        }
        self.execute(
            "UPDATE tickets SET status = $2, queue_id = $3, user_id = $4, external_key = $5,
                last_message = $6, updated_at = $7, api_config_id = $8 WHERE id = $1",
            &[
                &t.id,
                &t.status.as_str(),
                &t.queue_id,
                &t.user_id,
                &t.external_key,
                &t.last_message,
                &t.updated_at,
                &t.api_config_id,
            ],
        )?;
        Ok(())
    }

    fn tickets(&mut self, company_id: i64, f: &TicketFilter) -> StoreResult<Vec<Ticket>> {
        self.query(
            &format!(
                "SELECT {TICKET_COLS} FROM tickets
                 WHERE company_id = $1 AND ($2::text IS NULL OR status = $2)
                   AND ($3::bigint IS NULL OR connection_id = $3)
                   AND ($4::bigint IS NULL OR queue_id = $4)
                   AND ($5::bigint IS NULL OR id < $5)
                   AND ($7::bigint IS NULL OR contact_id = $7)
                 ORDER BY id DESC LIMIT $6"
            ),
            &[
                &company_id,
                &f.status.map(|s| s.as_str()),
                &f.connection_id,
                &f.queue_id,
                &f.before_id,
                &f.limit,
                &f.contact_id,
            ],
        )?
        .iter()
        .map(ticket_row)
        .collect()
    }

    /// A message stored already (its id, or its channel id on the connection) is a unique
    /// violation, as on SQLite: a `Conflict`, which the store takes for a lost race and runs
    /// the job again (a redelivery then finds the message).
    fn insert_message(&mut self, company_id: i64, m: &Message) -> StoreResult<()> {
        if self.hold_message(company_id, m) {
            return Ok(());
        }
        self.execute(
            &format!(
                "INSERT INTO messages (company_id, {MESSAGE_COLS})
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
                    $17, $18, $19, $20, $21, $22)"
            ),
            &[
                &company_id,
                &m.id,
                &m.message_id,
                &m.connection_id,
                &m.ticket_id,
                &m.contact_id,
                &m.body,
                &m.timestamp,
                &m.status.as_str(),
                &m.from_me,
                &m.media_type.as_str(),
                &m.media_url,
                &m.is_deleted,
                &m.send_type.map(|s| s.as_str()),
                &m.edited,
                &m.quoted_message_id,
                &m.user_id,
                &m.created_at,
                &m.error.as_ref().map(|e| e.code),
                &m.error.as_ref().map(|e| &e.title),
                &m.original.as_ref().map(|v| v.to_string()),
                &m.participant_id,
            ],
        )?;
        Ok(())
    }

    fn update_message(&mut self, m: &Message) -> StoreResult<()> {
        self.execute(
            "UPDATE messages SET message_id = $2, body = $3, status = $4, is_deleted = $5,
                edited = $6, media_url = $7, error_code = $8, error_title = $9 WHERE id = $1",
            &[
                &m.id,
                &m.message_id,
                &m.body,
                &m.status.as_str(),
                &m.is_deleted,
                &m.edited,
                &m.media_url,
                &m.error.as_ref().map(|e| e.code),
                &m.error.as_ref().map(|e| &e.title),
            ],
        )?;
        Ok(())
    }

    fn message(&mut self, company_id: i64, id: &str) -> StoreResult<Option<Message>> {
        Ok(self
            .messages_where("company_id = $1 AND id = $2", &[&company_id, &id])?
            .pop())
    }

    fn message_by_channel_id(
        &mut self,
        connection_id: i64,
        message_id: &str,
    ) -> StoreResult<Option<Message>> {
        if self.message_absent(connection_id, message_id) {
            return Ok(None);
        }
        Ok(self
            .messages_where(
                "connection_id = $1 AND message_id = $2",
                &[&connection_id, &message_id],
            )?
            .pop())
    }

    fn messages_by_channel_id(
        &mut self,
        company_id: i64,
        message_id: &str,
    ) -> StoreResult<Vec<Message>> {
        self.messages_where(
            "company_id = $1 AND message_id = $2",
            &[&company_id, &message_id],
        )
    }

    fn ticket_messages(
        &mut self,
        ticket_id: i64,
        after: Option<&str>,
        limit: i64,
    ) -> StoreResult<Vec<Message>> {
        self.messages_where(
            "ticket_id = $1 AND ($2::text IS NULL OR id > $2) ORDER BY id LIMIT $3",
            &[&ticket_id, &after, &limit],
        )
    }

    fn last_ticket_message(&mut self, ticket_id: i64) -> StoreResult<Option<Message>> {
        Ok(self
            .messages_where("ticket_id = $1 ORDER BY id DESC LIMIT 1", &[&ticket_id])?
            .pop())
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
                self.execute(
                    "DELETE FROM reactions WHERE message_id = $1 AND reactor = $2",
                    &[&message_id, &key],
                )?;
            }
            Some(r) => {
                self.execute(
                    "INSERT INTO reactions (message_id, reactor, emoji, from_me, user_id,
                        contact_id, timestamp)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)
                     ON CONFLICT (message_id, reactor) DO UPDATE SET emoji = excluded.emoji,
                        timestamp = excluded.timestamp",
                    &[
                        &message_id,
                        &key,
                        &r.emoji,
                        &r.from_me,
                        &r.user_id,
                        &r.contact_id,
                        &r.timestamp,
                    ],
                )?;
            }
        }
        Ok(())
    }
}
