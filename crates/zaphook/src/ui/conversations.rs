//! The dashboard's conversations: the company's tickets, newest first, with their contact,
//! status, queue, agent and `apiConfig`; and a ticket's timeline, its messages and the events
//! zaphook sent about them (and about the ticket), each linked to its deliveries.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::pages::{self, Layout, html};
use super::session::Signed;
use crate::api::AppState;
use crate::domain::{Contact, Message, Ticket, TicketStatus, rfc3339};
use crate::store::dashboard::TicketEvent;
use crate::store::{self, StoreError, TicketFilter};

/// Tickets per page.
const PAGE: i64 = 50;
/// Messages a timeline shows.
const MESSAGES: i64 = 500;

/// A ticket as the list shows it.
pub struct TicketRow {
    pub id: i64,
    pub protocol: String,
    pub contact: String,
    pub number: Option<String>,
    pub status: &'static str,
    pub queue: Option<String>,
    pub user_id: Option<i64>,
    pub api_config: Option<String>,
    pub last_message: String,
    pub updated_at: String,
}

#[derive(askama::Template)]
#[template(path = "ui/conversations.html")]
pub struct ConversationsPage {
    pub page: Layout,
    pub status: String,
    pub statuses: &'static [TicketStatus],
    pub tickets: Vec<TicketRow>,
    /// The link to the next (older) page, when there is one.
    pub older: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    status: String,
    before: Option<String>,
}

fn row(ticket: &Ticket, contact: Option<&Contact>, queues: &HashMap<i64, String>) -> TicketRow {
    TicketRow {
        id: ticket.id,
        protocol: ticket.protocol.clone(),
        contact: contact.map_or_else(|| format!("#{}", ticket.contact_id), |c| c.name.clone()),
        number: contact.and_then(|c| c.number.clone().or_else(|| c.bsuid.clone())),
        status: ticket.status.as_str(),
        queue: ticket
            .queue_id
            .map(|q| queues.get(&q).cloned().unwrap_or_else(|| format!("#{q}"))),
        user_id: ticket.user_id,
        api_config: ticket.external_key.clone(),
        last_message: ticket.last_message.clone(),
        updated_at: rfc3339::format(ticket.updated_at),
    }
}

/// `GET /ui/conversations?status=&before=`.
pub async fn list(
    State(state): State<AppState>,
    signed: Signed,
    Query(query): Query<ListQuery>,
) -> Response {
    let company = signed.company_id;
    let status = TicketStatus::parse(&query.status);
    let before_id = query.before.as_deref().and_then(|b| b.parse().ok());
    let found = store::read(&state.ingest.store, move |tx| {
        let filter = TicketFilter {
            status,
            connection_id: None,
            queue_id: None,
            contact_id: None,
            before_id,
            limit: PAGE + 1,
        };
        let tickets = tx.tickets(company, &filter)?;
        let queues: HashMap<i64, String> = tx
            .queues(company)?
            .into_iter()
            .map(|q| (q.id, q.name))
            .collect();
        let mut rows = Vec::with_capacity(tickets.len());
        for ticket in &tickets {
            let contact = tx.contact(company, ticket.contact_id)?;
            rows.push(row(ticket, contact.as_ref(), &queues));
        }
        Ok::<_, StoreError>(rows)
    })
    .await;
    let mut tickets = match found {
        Ok(rows) => rows,
        Err(e) => return pages::unavailable(signed.lang, &e),
    };
    let older = (tickets.len() as i64 > PAGE).then(|| {
        tickets.truncate(PAGE as usize);
        let last = tickets.last().map_or(0, |t| t.id);
        let status = status.map_or("", |s| s.as_str());
        format!("/ui/conversations?status={status}&before={last}")
    });
    html(
        StatusCode::OK,
        &ConversationsPage {
            page: signed.layout("/ui/conversations"),
            status: status.map_or("", |s| s.as_str()).to_string(),
            statuses: TicketStatus::ALL,
            tickets,
            older,
        },
    )
}

/// An event on the timeline, with its deliveries.
pub struct EventRow {
    pub event_type: &'static str,
    pub at: String,
    pub deliveries: Vec<(String, i64, &'static str, i64)>,
}

impl EventRow {
    fn of(e: &TicketEvent) -> EventRow {
        EventRow {
            event_type: e.event_type.as_str(),
            at: rfc3339::format(e.created_at),
            deliveries: e
                .deliveries
                .iter()
                .map(|d| (d.id.clone(), d.webhook_id, d.status.as_str(), d.attempts))
                .collect(),
        }
    }
}

/// A message on the timeline, with the events about it.
pub struct MessageRow {
    pub id: String,
    pub at: String,
    pub from_me: bool,
    pub body: String,
    pub media_type: &'static str,
    pub status: &'static str,
    pub is_deleted: bool,
    pub edited: bool,
    pub events: Vec<EventRow>,
}

/// What the timeline shows, in time order.
pub enum Entry {
    Message(MessageRow),
    /// An event about the ticket itself (created, transferred, closed, …).
    Event(EventRow),
}

#[derive(askama::Template)]
#[template(path = "ui/ticket.html")]
pub struct TicketPage {
    pub page: Layout,
    pub ticket: TicketRow,
    pub entries: Vec<Entry>,
}

/// Messages and events in one line of time: each message at its place, with the events
/// that carried it; ticket events at theirs. Within one millisecond they keep the order they
/// were made in, which their ids (time-ordered, monotonic) tell.
fn timeline(messages: Vec<Message>, events: Vec<TicketEvent>) -> Vec<Entry> {
    let made = |id: &str| id.split_once('_').map_or(id, |(_, ulid)| ulid).to_string();
    let mut about: HashMap<String, Vec<EventRow>> = HashMap::new();
    let mut timed: Vec<(i64, String, Entry)> = Vec::new();
    for e in &events {
        match &e.message_id {
            Some(id) if messages.iter().any(|m| &m.id == id) => {
                about.entry(id.clone()).or_default().push(EventRow::of(e));
            }
            _ => timed.push((e.created_at, made(&e.id), Entry::Event(EventRow::of(e)))),
        }
    }
    for m in messages {
        let (at, made) = (m.created_at, made(&m.id));
        let entry = Entry::Message(MessageRow {
            events: about.remove(&m.id).unwrap_or_default(),
            at: rfc3339::format(m.timestamp),
            from_me: m.from_me,
            body: m.body,
            media_type: m.media_type.as_str(),
            status: m.status.as_str(),
            is_deleted: m.is_deleted,
            edited: m.edited,
            id: m.id,
        });
        timed.push((at, made, entry));
    }
    timed.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    timed.into_iter().map(|(_, _, entry)| entry).collect()
}

/// `GET /ui/conversations/{id}`: another company's ticket is not found.
pub async fn show(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<String>,
) -> Response {
    let Ok(id) = id.parse::<i64>() else {
        return pages::not_found(signed.lang);
    };
    let company = signed.company_id;
    let found = store::read(&state.ingest.store, move |tx| {
        let Some(ticket) = tx.ticket(company, id)? else {
            return Ok(None);
        };
        let contact = tx.contact(company, ticket.contact_id)?;
        let queues: HashMap<i64, String> = tx
            .queues(company)?
            .into_iter()
            .map(|q| (q.id, q.name))
            .collect();
        let messages = tx.ticket_messages(id, None, MESSAGES)?;
        let events = tx.ticket_events(company, id)?;
        let ticket = row(&ticket, contact.as_ref(), &queues);
        Ok::<_, StoreError>(Some((ticket, timeline(messages, events))))
    })
    .await;
    match found {
        Ok(Some((ticket, entries))) => html(
            StatusCode::OK,
            &TicketPage {
                page: signed.layout("/ui/conversations"),
                ticket,
                entries,
            },
        ),
        Ok(None) => pages::not_found(signed.lang),
        Err(e) => pages::unavailable(signed.lang, &e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{self, EventType};

    #[test]
    fn entries_of_one_millisecond_keep_the_order_they_were_made_in() {
        let event = |event_type| TicketEvent {
            id: domain::new_event_id(),
            event_type,
            created_at: 1_000,
            message_id: None,
            deliveries: Vec::new(),
        };
        let (transferred, closed) = (
            event(EventType::TicketTransferred),
            event(EventType::TicketClosed),
        );
        let entries = timeline(Vec::new(), vec![closed, transferred]);
        let order: Vec<&str> = entries
            .iter()
            .filter_map(|e| match e {
                Entry::Event(row) => Some(row.event_type),
                Entry::Message(_) => None,
            })
            .collect();
        assert_eq!(order, ["ticket.transferred", "ticket.closed"]);
    }
}
