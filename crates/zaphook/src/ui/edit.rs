//! The dashboard's form to change an endpoint: its address, events, scope (a connection, a
//! queue, start on transfer), WHAZING's filters, ordering and description. The checks and the
//! write are the API's own; what fails is shown beside the form, which keeps what was typed.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};

use super::endpoints::{EventChoice, choices};
use super::i18n::Texts;
use super::pages::{self, Layout, html};
use super::session::{self, Signed};
use crate::api::webhooks::{self, EditForm, WebhookBody};
use crate::api::{ApiError, AppState};
use crate::domain::{EventType, Filters, Ordering, Webhook};
use crate::store::{self, StoreError};

/// An option of a select.
pub struct Choice {
    pub value: i64,
    pub label: String,
    pub selected: bool,
}

/// A filter's checkbox.
pub struct FilterChoice {
    pub name: &'static str,
    pub label: &'static str,
    pub checked: bool,
}

#[derive(askama::Template)]
#[template(path = "ui/edit.html")]
pub struct EditPage {
    pub page: Layout,
    pub id: i64,
    pub url: String,
    pub description: String,
    pub events: Vec<EventChoice>,
    pub connections: Vec<Choice>,
    pub queues: Vec<Choice>,
    pub start_on_transfer: bool,
    pub filters: Vec<FilterChoice>,
    pub ordered: bool,
    pub errors: Vec<String>,
}

/// The filters' checkboxes, in the order WHAZING lists them.
pub fn filter_choices(t: &Texts, f: &Filters) -> Vec<FilterChoice> {
    vec![
        FilterChoice {
            name: "received",
            label: t.filter_received,
            checked: f.received,
        },
        FilterChoice {
            name: "sent",
            label: t.filter_sent,
            checked: f.sent,
        },
        FilterChoice {
            name: "includeGroups",
            label: t.filter_groups,
            checked: f.include_groups,
        },
        FilterChoice {
            name: "ticketOpen",
            label: t.filter_open,
            checked: f.ticket_open,
        },
        FilterChoice {
            name: "ticketPending",
            label: t.filter_pending,
            checked: f.ticket_pending,
        },
        FilterChoice {
            name: "mediaBase64",
            label: t.filter_media,
            checked: f.media_base64,
        },
    ]
}

async fn edit_page(
    state: &AppState,
    signed: &Signed,
    id: i64,
    form: Option<(EditForm, Vec<String>)>,
) -> Response {
    let company = signed.company_id;
    let found = store::read(&state.ingest.store, move |tx| {
        let Some(endpoint) = tx.webhook_view(company, id)? else {
            return Ok(None);
        };
        Ok::<_, StoreError>(Some((
            endpoint,
            tx.connections(company)?,
            tx.queues(company)?,
        )))
    })
    .await;
    let (endpoint, connections, queues) = match found {
        Ok(Some(found)) => found,
        Ok(None) => return pages::not_found(signed.lang),
        Err(e) => return pages::unavailable(signed.lang, &e),
    };
    let (shown, errors, status) = match form {
        Some((form, errors)) => (form, errors, StatusCode::UNPROCESSABLE_ENTITY),
        None => (of_endpoint(&endpoint), Vec::new(), StatusCode::OK),
    };
    html(
        status,
        &EditPage {
            page: signed.layout("/ui/endpoints"),
            id,
            url: shown.url,
            description: shown.description.unwrap_or_default(),
            events: choices(&shown.events),
            connections: connections
                .iter()
                .map(|c| Choice {
                    value: c.id,
                    label: format!("{} ({})", c.name, c.channel),
                    selected: shown.connection_id == Some(c.id),
                })
                .collect(),
            queues: queues
                .iter()
                .map(|q| Choice {
                    value: q.id,
                    label: q.name.clone(),
                    selected: shown.queue_id == Some(q.id),
                })
                .collect(),
            start_on_transfer: shown.start_on_transfer,
            filters: filter_choices(signed.lang.texts(), &shown.filters),
            ordered: shown.ordering == Ordering::Ticket,
            errors,
        },
    )
}

fn of_endpoint(w: &Webhook) -> EditForm {
    EditForm {
        url: w.url.clone(),
        events: w.events.clone(),
        description: w.description.clone(),
        connection_id: w.connection_id,
        queue_id: w.queue_id,
        start_on_transfer: w.start_on_transfer,
        filters: w.filters,
        ordering: w.ordering,
    }
}

/// The form's fields; `None` when its form token is not the session's.
fn read_form(signed: &Signed, body: &Bytes) -> Option<EditForm> {
    let fields = session::fields(body);
    let value = |name: &str| session::field(&fields, name);
    if !signed.check(&value("csrf")) {
        return None;
    }
    let on = |name: &str| fields.iter().any(|(k, _)| k == name);
    // A select offers only ids and "" (any); something else is no id (the API then finds no
    // such connection or queue and says so).
    let id = |name: &str| {
        let v = value(name);
        (!v.is_empty()).then(|| v.parse().unwrap_or(-1))
    };
    let description = value("description");
    Some(EditForm {
        url: value("url"),
        events: fields
            .iter()
            .filter(|(k, _)| k == "events")
            .filter_map(|(_, v)| EventType::parse(v))
            .collect(),
        description: (!description.is_empty()).then_some(description),
        connection_id: id("connectionId"),
        queue_id: id("queueId"),
        start_on_transfer: on("startOnTransfer"),
        filters: Filters {
            received: on("received"),
            sent: on("sent"),
            include_groups: on("includeGroups"),
            ticket_open: on("ticketOpen"),
            ticket_pending: on("ticketPending"),
            media_base64: on("mediaBase64"),
        },
        ordering: if on("ordered") {
            Ordering::Ticket
        } else {
            Ordering::None
        },
    })
}

/// `GET /ui/endpoints/{id}/edit`.
pub async fn show(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<String>,
) -> Response {
    match id.parse() {
        Ok(id) => edit_page(&state, &signed, id, None).await,
        Err(_) => pages::not_found(signed.lang),
    }
}

/// `POST /ui/endpoints/{id}/edit`: saves and goes to the endpoint's page, or shows the form
/// again with what is wrong.
pub async fn save(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let Some(form) = read_form(&signed, &body) else {
        return pages::form_expired(signed.lang);
    };
    let Ok(id) = id.parse::<i64>() else {
        return pages::not_found(signed.lang);
    };
    let kept = form.clone();
    match webhooks::change(&state, signed.company_id, id, WebhookBody::of_edit(form)).await {
        Ok(_) => Redirect::to(&format!("/ui/endpoints/{id}")).into_response(),
        Err(ApiError::Validation(errors)) => {
            let errors = errors
                .into_iter()
                .map(|e| format!("{}: {}", e.field, e.message))
                .collect();
            edit_page(&state, &signed, id, Some((kept, errors))).await
        }
        Err(ApiError::NotFound(_)) => pages::not_found(signed.lang),
        Err(e) => pages::failed(signed.lang, &e),
    }
}
