//! Conversations: contacts, tickets, messages and reactions, in SQLite.

use rusqlite::{OptionalExtension, params};

use super::rows::*;
use super::tx::SqliteTx;
use crate::domain::{Contact, ExtraInfo, Message, Reaction, Ticket};
use crate::store::{ConversationTx, NewContact, NewTicket, Reactor, StoreResult, TicketFilter};

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

impl ConversationTx for SqliteTx<'_> {
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
            extra_info: Vec::new(),
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
                    pushname = ?6, email = ?7, extra_info = ?8 WHERE id = ?1",
            )?
            .execute(params![
                c.id,
                c.number,
                c.bsuid,
                c.username,
                c.name,
                c.pushname,
                c.email,
                ExtraInfo::to_stored(&c.extra_info)
            ])?;
        Ok(())
    }

    fn insert_ticket(&mut self, company_id: i64, t: &NewTicket, now: i64) -> StoreResult<Ticket> {
        self.conn
            .prepare_cached(
                "INSERT INTO tickets (company_id, connection_id, contact_id, status, protocol,
                    queue_id, user_id, is_group, external_key, created_at, updated_at,
                    api_config_id)
                 VALUES (?1, ?2, ?3, ?4, '', ?5, ?6, ?7, ?8, ?9, ?9, ?10)",
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
                now,
                t.api_config_id
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
            api_config_id: t.api_config_id.clone(),
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
                    last_message = ?6, updated_at = ?7, api_config_id = ?8 WHERE id = ?1",
            )?
            .execute(params![
                t.id,
                t.status.as_str(),
                t.queue_id,
                t.user_id,
                t.external_key,
                t.last_message,
                t.updated_at,
                t.api_config_id
            ])?;
        Ok(())
    }

    fn tickets(&mut self, company_id: i64, f: &TicketFilter) -> StoreResult<Vec<Ticket>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {TICKET_COLS} FROM tickets
             WHERE company_id = ?1 AND (?2 IS NULL OR status = ?2)
               AND (?3 IS NULL OR connection_id = ?3) AND (?4 IS NULL OR queue_id = ?4)
               AND (?5 IS NULL OR id < ?5) AND (?7 IS NULL OR contact_id = ?7)
             ORDER BY id DESC LIMIT ?6"
        ))?;
        let rows = stmt.query_map(
            params![
                company_id,
                f.status.map(|s| s.as_str()),
                f.connection_id,
                f.queue_id,
                f.before_id,
                f.limit,
                f.contact_id
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
                    ?18, ?19, ?20, ?21, ?22)"
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
                m.original.as_ref().map(|v| v.to_string()),
                m.participant_id
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

    fn last_ticket_message(&mut self, ticket_id: i64) -> StoreResult<Option<Message>> {
        Ok(self
            .messages_where(
                "ticket_id = ?1 ORDER BY id DESC LIMIT 1",
                params![ticket_id],
            )?
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
}
