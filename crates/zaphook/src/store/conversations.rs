//! Conversations: contacts, their tickets, and the messages and reactions of a ticket: the
//! repository operations every backend implements for them.

use crate::domain::{Contact, Message, Reaction, Ticket, TicketStatus};

use super::StoreResult;

/// A contact to create: known by number, by BSUID, or both.
#[derive(Debug, Default)]
pub struct NewContact<'a> {
    pub number: Option<&'a str>,
    pub bsuid: Option<&'a str>,
    pub username: Option<&'a str>,
    pub name: &'a str,
    pub pushname: Option<&'a str>,
    pub email: Option<&'a str>,
    pub is_group: bool,
}

/// A ticket to create; its protocol is derived from its id and creation time.
pub struct NewTicket {
    pub connection_id: i64,
    pub contact_id: i64,
    pub status: TicketStatus,
    pub queue_id: Option<i64>,
    pub user_id: Option<i64>,
    pub is_group: bool,
    pub external_key: Option<String>,
    /// The external API config that opened it.
    pub api_config_id: Option<String>,
}

#[derive(Debug, Default, Clone)]
pub struct TicketFilter {
    pub status: Option<TicketStatus>,
    pub connection_id: Option<i64>,
    pub queue_id: Option<i64>,
    pub contact_id: Option<i64>,
    /// Only tickets with an id below this one (the pages run newest first).
    pub before_id: Option<i64>,
    pub limit: i64,
}

/// Who reacted: a contact or an agent (one reaction each per message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reactor {
    Contact(i64),
    User(i64),
}

pub trait ConversationTx {
    fn insert_contact(
        &mut self,
        company_id: i64,
        contact: &NewContact<'_>,
        now: i64,
    ) -> StoreResult<Contact>;
    fn contact(&mut self, company_id: i64, id: i64) -> StoreResult<Option<Contact>>;
    fn contact_by_number(&mut self, company_id: i64, number: &str) -> StoreResult<Option<Contact>>;
    fn contact_by_bsuid(&mut self, company_id: i64, bsuid: &str) -> StoreResult<Option<Contact>>;
    fn contacts(&mut self, company_id: i64, number: Option<&str>) -> StoreResult<Vec<Contact>>;
    /// Stores the mutable fields of a contact (number, BSUID, username, names, email).
    fn update_contact(&mut self, contact: &Contact) -> StoreResult<()>;
    fn insert_ticket(
        &mut self,
        company_id: i64,
        ticket: &NewTicket,
        now: i64,
    ) -> StoreResult<Ticket>;
    fn ticket(&mut self, company_id: i64, id: i64) -> StoreResult<Option<Ticket>>;
    /// The open or pending ticket of a contact on a connection.
    fn active_ticket(&mut self, connection_id: i64, contact_id: i64)
    -> StoreResult<Option<Ticket>>;
    /// Stores the mutable fields of a ticket (status, queue, agent, key, last message).
    fn update_ticket(&mut self, ticket: &Ticket) -> StoreResult<()>;
    fn tickets(&mut self, company_id: i64, filter: &TicketFilter) -> StoreResult<Vec<Ticket>>;
    fn insert_message(&mut self, company_id: i64, message: &Message) -> StoreResult<()>;
    /// Stores the mutable fields of a message (channel id, body, status, flags, media URL,
    /// error).
    fn update_message(&mut self, message: &Message) -> StoreResult<()>;
    fn message(&mut self, company_id: i64, id: &str) -> StoreResult<Option<Message>>;
    fn message_by_channel_id(
        &mut self,
        connection_id: i64,
        message_id: &str,
    ) -> StoreResult<Option<Message>>;
    /// Messages of the company whose channel id is `message_id`, on any connection.
    fn messages_by_channel_id(
        &mut self,
        company_id: i64,
        message_id: &str,
    ) -> StoreResult<Vec<Message>>;
    fn ticket_messages(
        &mut self,
        ticket_id: i64,
        after: Option<&str>,
        limit: i64,
    ) -> StoreResult<Vec<Message>>;
    /// The ticket's newest message.
    fn last_ticket_message(&mut self, ticket_id: i64) -> StoreResult<Option<Message>>;
    /// Sets (`Some`) or removes (`None`) the reaction of `reactor` on a message.
    fn set_reaction(
        &mut self,
        message_id: &str,
        reactor: Reactor,
        reaction: Option<&Reaction>,
    ) -> StoreResult<()>;
}
