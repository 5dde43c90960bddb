//! The dashboard's endpoints: the list of endpoints with a form to add one, and an endpoint's
//! page with its latest deliveries (a delivery's own page is in `deliveries`). The checks and
//! writes are the API's own.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};

use super::charts::{self, Charts, Health, Period};
use super::edit::{FilterChoice, filter_choices};
use super::pages::{self, Layout, html};
use super::session::{self, Signed};
use crate::api::ApiError;
use crate::api::AppState;
use crate::api::webhooks::{self, WebhookBody};
use crate::domain::{Delivery, EventType, Webhook, rfc3339};
use crate::store::{self, StoreError};

/// Deliveries shown on an endpoint's page, newest first.
const LATEST: i64 = 50;

/// One event type as the form offers it.
pub struct EventChoice {
    pub name: &'static str,
    pub checked: bool,
}

pub fn choices(checked: &[EventType]) -> Vec<EventChoice> {
    EventType::subscribable()
        .map(|e| EventChoice {
            name: e.as_str(),
            checked: checked.contains(&e),
        })
        .collect()
}

#[derive(askama::Template)]
#[template(path = "ui/endpoints.html")]
pub struct Endpoints {
    pub page: Layout,
    /// Each endpoint with its last hour and its waiting deliveries.
    pub endpoints: Vec<(Webhook, Period, i64)>,
    pub events: Vec<EventChoice>,
    /// What the form had, when it is shown again with its errors.
    pub url: String,
    pub description: String,
    pub errors: Vec<String>,
}

async fn endpoints_page(
    state: &AppState,
    signed: &Signed,
    form: (String, String, Vec<EventType>, Vec<String>),
    status: StatusCode,
) -> Response {
    let (company, now) = (signed.company_id, state.ingest.clock.now_ms());
    let listed = store::read(&state.ingest.store, move |tx| {
        let mut endpoints = Vec::new();
        for w in tx.webhooks(company)? {
            let (hour, waiting) = charts::last_hour(tx, w.id, now)?;
            endpoints.push((w, hour, waiting));
        }
        Ok::<_, StoreError>(endpoints)
    })
    .await;
    match listed {
        Ok(endpoints) => {
            let (url, description, events, errors) = form;
            html(
                status,
                &Endpoints {
                    page: signed.layout("/ui/endpoints"),
                    endpoints,
                    events: choices(&events),
                    url,
                    description,
                    errors,
                },
            )
        }
        Err(e) => pages::unavailable(signed.lang, &e),
    }
}

/// `GET /ui/endpoints`.
pub async fn list(State(state): State<AppState>, signed: Signed) -> Response {
    let empty = (
        String::new(),
        String::new(),
        EventType::DEFAULT_SUBSCRIPTION.to_vec(),
        Vec::new(),
    );
    endpoints_page(&state, &signed, empty, StatusCode::OK).await
}

/// `POST /ui/endpoints`: adds an endpoint, then shows its page with its secret, once.
pub async fn create(State(state): State<AppState>, signed: Signed, body: Bytes) -> Response {
    let fields = session::fields(&body);
    let value = |name: &str| session::field(&fields, name);
    if !signed.check(&value("csrf")) {
        return pages::form_expired(signed.lang);
    }
    let events: Vec<EventType> = fields
        .iter()
        .filter(|(k, _)| k == "events")
        .filter_map(|(_, v)| EventType::parse(v))
        .collect();
    let (url, description) = (value("url"), value("description"));
    let request = WebhookBody::of_form(
        url.clone(),
        events.clone(),
        Some(description.clone()).filter(|d| !d.is_empty()),
    );
    match webhooks::create(&state, signed.company_id, request).await {
        Ok(created) => {
            let shown = Shown {
                secret: created.secret.clone(),
                ..Shown::default()
            };
            endpoint_page(&state, &signed, created.id, shown, StatusCode::CREATED).await
        }
        Err(ApiError::Validation(errors)) => {
            let errors = errors
                .into_iter()
                .map(|e| format!("{}: {}", e.field, e.message))
                .collect();
            let form = (url, description, events, errors);
            endpoints_page(&state, &signed, form, StatusCode::UNPROCESSABLE_ENTITY).await
        }
        Err(e) => pages::failed(signed.lang, &e),
    }
}

#[derive(askama::Template)]
#[template(path = "ui/endpoint.html")]
pub struct EndpointPage {
    pub page: Layout,
    pub endpoint: Webhook,
    /// Shown once, right after the endpoint was added or its secret rotated.
    pub secret: Option<String>,
    /// What came of a test event just sent.
    pub test: Option<TestShown>,
    pub health: Health,
    pub charts: Charts,
    pub filters: Vec<FilterChoice>,
    pub deliveries: Vec<DeliveryRow>,
}

/// A test event's outcome, as the page says it.
pub struct TestShown {
    pub delivered: bool,
    pub status_code: Option<u16>,
    pub latency_ms: i64,
    pub error: Option<String>,
}

/// What an endpoint's page shows above the endpoint, after one of its buttons.
#[derive(Default)]
struct Shown {
    secret: Option<String>,
    test: Option<TestShown>,
}

/// A delivery as the lists show it.
pub struct DeliveryRow {
    pub id: String,
    pub event_type: &'static str,
    pub status: &'static str,
    pub attempts: i64,
    pub last_status_code: Option<i64>,
    pub created_at: String,
}

impl DeliveryRow {
    fn of(d: &Delivery) -> DeliveryRow {
        DeliveryRow {
            id: d.id.clone(),
            event_type: d.event_type.as_str(),
            status: d.status.as_str(),
            attempts: d.attempts,
            last_status_code: d.last_status_code,
            created_at: rfc3339::format(d.created_at),
        }
    }
}

async fn endpoint_page(
    state: &AppState,
    signed: &Signed,
    id: i64,
    shown: Shown,
    status: StatusCode,
) -> Response {
    let company = signed.company_id;
    let (texts, now) = (signed.lang.texts(), state.ingest.clock.now_ms());
    let found = store::read(&state.ingest.store, move |tx| {
        let Some(endpoint) = tx.webhook_view(company, id)? else {
            return Ok(None);
        };
        let deliveries = tx.deliveries(id, None, None, LATEST)?;
        let health = charts::health(tx, texts, id, now)?;
        let charts = charts::charts(tx, texts, company, Some(id), now)?;
        Ok::<_, StoreError>(Some((endpoint, deliveries, health, charts)))
    })
    .await;
    match found {
        Ok(Some((endpoint, deliveries, health, charts))) => html(
            status,
            &EndpointPage {
                page: signed.layout("/ui/endpoints"),
                secret: shown.secret,
                test: shown.test,
                health,
                charts,
                filters: filter_choices(signed.lang.texts(), &endpoint.filters),
                endpoint,
                deliveries: deliveries.iter().map(DeliveryRow::of).collect(),
            },
        ),
        Ok(None) => pages::not_found(signed.lang),
        Err(e) => pages::unavailable(signed.lang, &e),
    }
}

/// `GET /ui/endpoints/{id}`.
pub async fn show(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<String>,
) -> Response {
    match id.parse() {
        Ok(id) => endpoint_page(&state, &signed, id, Shown::default(), StatusCode::OK).await,
        Err(_) => pages::not_found(signed.lang),
    }
}

/// `POST /ui/endpoints/{id}/{action}`: enable, disable, rotate (the new secret is shown
/// once), test (its outcome is shown).
pub async fn act(
    State(state): State<AppState>,
    signed: Signed,
    Path((id, action)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let sent: super::session::CsrfForm = super::session::form(&body);
    if !signed.check(&sent.csrf) {
        return pages::form_expired(signed.lang);
    }
    let Ok(id) = id.parse::<i64>() else {
        return pages::not_found(signed.lang);
    };
    let company = signed.company_id;
    let done = match action.as_str() {
        "enable" | "disable" => {
            let body = WebhookBody::of_enabled(action == "enable");
            webhooks::change(&state, company, id, body)
                .await
                .map(|_| Shown::default())
        }
        "rotate" => webhooks::rotate(&state, company, id)
            .await
            .map(|rotated| Shown {
                secret: Some(rotated.secret),
                ..Shown::default()
            }),
        "test" => webhooks::test(&state, company, id).await.map(|t| Shown {
            test: Some(TestShown {
                delivered: t.delivered,
                status_code: t.status_code,
                latency_ms: t.latency_ms,
                error: t.error,
            }),
            ..Shown::default()
        }),
        _ => return pages::not_found(signed.lang),
    };
    match done {
        Ok(shown) if shown.secret.is_none() && shown.test.is_none() => {
            Redirect::to(&format!("/ui/endpoints/{id}")).into_response()
        }
        Ok(shown) => endpoint_page(&state, &signed, id, shown, StatusCode::OK).await,
        Err(ApiError::NotFound(_)) => pages::not_found(signed.lang),
        Err(e) => pages::failed(signed.lang, &e),
    }
}
