//! The dashboard's delivery log and what is done from it: the company's deliveries newest
//! first, narrowed by a GET form and paged by key; a delivery's page (payload, the headers
//! each attempt sent, every attempt) with a button to send it again; and recovering an
//! endpoint's failed deliveries since a time, with a page that follows the recovery. The
//! queries are the store's and the writes the API's own.

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};

use super::charts::{self, Charts};
use super::i18n::Texts;
use super::pages::{self, Layout, html};
use super::session::{Signed, field, fields};
use crate::api::ApiError;
use crate::api::AppState;
use crate::api::webhooks;
use crate::domain::{DeliveryDetail, DeliveryStatus, EventType, Webhook, rfc3339};
use crate::store::{self, LogFilter, LogKey, LogPage, Recovery, RecoveryProgress, StoreError};

/// Deliveries on one page of the log.
const PAGE: i64 = 50;
/// Most deliveries one page reads when part of its filter is checked row by row (the text in
/// the payload, say); a page that did not fill by then offers to search on.
const SCAN: i64 = 5_000;
/// Recoveries listed on the log's page.
const RECENT_RECOVERIES: i64 = 5;
/// Longest text searched for in payloads.
const MAX_TEXT: usize = 200;

/// A form's fields, as sent; unreadable forms are empty.
/// A time as the form's `datetime-local` inputs send it (`2026-11-27T09:30`, with seconds or
/// not), read as UTC, or an RFC 3339 time.
fn parse_time(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Some(ms) = rfc3339::parse(text) {
        return Some(ms);
    }
    match text.len() {
        16 => rfc3339::parse(&format!("{text}:00Z")),
        19 => rfc3339::parse(&format!("{text}Z")),
        _ => None,
    }
}

/// A time as a `datetime-local` input shows it, in UTC.
fn input_time(ms: i64) -> String {
    rfc3339::format(ms).chars().take(19).collect()
}

/// One endpoint as the selects offer it.
pub struct EndpointChoice {
    pub id: i64,
    pub url: String,
    pub selected: bool,
}

/// One choice of a select of names (event types, states).
pub struct NameChoice {
    pub name: &'static str,
    pub selected: bool,
}

/// A delivery as the log shows it.
pub struct LogRow {
    pub id: String,
    pub webhook_id: i64,
    pub event_type: &'static str,
    pub status: &'static str,
    pub attempts: i64,
    pub last_status_code: Option<i64>,
    pub created_at: String,
    pub ticket_id: Option<i64>,
}

/// A recovery as the log lists it.
pub struct RecoveryRow {
    pub id: i64,
    pub webhook_id: i64,
    pub since: String,
    pub started_at: String,
    pub queued: i64,
}

impl RecoveryRow {
    fn of(r: &Recovery) -> RecoveryRow {
        RecoveryRow {
            id: r.id,
            webhook_id: r.webhook_id,
            since: rfc3339::format(r.since),
            started_at: rfc3339::format(r.started_at),
            queued: r.queued,
        }
    }
}

#[derive(Template)]
#[template(path = "ui/deliveries.html")]
pub struct LogPageView {
    pub page: Layout,
    pub endpoints: Vec<EndpointChoice>,
    pub events: Vec<NameChoice>,
    pub statuses: Vec<NameChoice>,
    /// What the form had, shown again.
    pub ticket: String,
    pub from: String,
    pub to: String,
    pub text: String,
    /// Fields of the form that could not be read, and were left out of the filter.
    pub errors: Vec<String>,
    pub rows: Vec<LogRow>,
    /// The link to the next page, when there may be older deliveries.
    pub older: Option<String>,
    /// The page stopped at its bound of deliveries read: how far back it searched.
    pub searched_to: Option<String>,
    /// The link to the newest page of the same filter, on a later page.
    pub newest: Option<String>,
    /// The endpoint the recovery form starts with.
    pub recover_endpoint: Option<i64>,
    pub recoveries: Vec<RecoveryRow>,
    /// Every endpoint's attempts over the last hours.
    pub charts: Charts,
}

/// The filter a log URL asks for, what its form shows again, and what could not be read.
struct Asked {
    filter: LogFilter,
    before: Option<LogKey>,
    /// The filter's own fields, as the links to other pages carry them.
    kept: Vec<(&'static str, String)>,
    errors: Vec<String>,
}

fn asked(company_id: i64, query: &[(String, String)], t: &Texts) -> Asked {
    let mut filter = LogFilter {
        company_id,
        ..LogFilter::default()
    };
    let mut kept = Vec::new();
    let mut errors = Vec::new();
    let mut keep = |name: &'static str, value: &str| {
        if !value.is_empty() {
            kept.push((name, value.to_string()));
        }
    };
    let endpoint = field(query, "endpoint");
    if let Ok(id) = endpoint.parse::<i64>() {
        filter.webhook_id = Some(id);
        keep("endpoint", &endpoint);
    }
    let event = field(query, "event");
    if let Some(e) = EventType::parse(&event) {
        filter.event_type = Some(e);
        keep("event", &event);
    }
    let status = field(query, "status");
    if let Some(s) = DeliveryStatus::parse(&status) {
        filter.status = Some(s);
        keep("status", &status);
    }
    let ticket = field(query, "ticket");
    if !ticket.is_empty() {
        match ticket.parse::<i64>() {
            Ok(id) => {
                filter.ticket_id = Some(id);
                keep("ticket", &ticket);
            }
            Err(_) => errors.push(format!("{}: {}", t.ticket, t.not_a_number)),
        }
    }
    for (name, label, slot) in [
        ("from", t.from_utc, &mut filter.from),
        ("to", t.to_utc, &mut filter.to),
    ] {
        let value = field(query, name);
        if value.is_empty() {
            continue;
        }
        match parse_time(&value) {
            Some(ms) => {
                *slot = Some(ms);
                keep(name, &value);
            }
            None => errors.push(format!("{label}: {}", t.not_a_time)),
        }
    }
    // Control characters (PostgreSQL's text cannot hold NUL) never match a payload's JSON.
    let text: String = field(query, "text")
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_TEXT)
        .collect();
    if !text.is_empty() {
        filter.text = Some(text.clone());
        keep("text", &text);
    }
    let before = LogKey::parse(&field(query, "before"));
    Asked {
        filter,
        before,
        kept,
        errors,
    }
}

/// `/ui/deliveries?…` with the filter's fields and, for a later page, where it starts.
fn log_link(kept: &[(&'static str, String)], before: Option<LogKey>) -> String {
    let mut pairs: Vec<(&str, String)> = kept.to_vec();
    if let Some(key) = before {
        pairs.push(("before", key.encode()));
    }
    let query = serde_urlencoded::to_string(&pairs).unwrap_or_default();
    if query.is_empty() {
        "/ui/deliveries".to_string()
    } else {
        format!("/ui/deliveries?{query}")
    }
}

/// `GET /ui/deliveries`: the company's deliveries, newest first, narrowed by the form.
pub async fn log(
    State(state): State<AppState>,
    signed: Signed,
    RawQuery(query): RawQuery,
) -> Response {
    let t = signed.lang.texts();
    let query = fields(query.unwrap_or_default().as_bytes());
    let Asked {
        filter,
        before,
        kept,
        errors,
    } = asked(signed.company_id, &query, t);
    let (company, now) = (signed.company_id, state.ingest.clock.now_ms());
    let read = filter.clone();
    let found = store::read(&state.ingest.store, move |tx| {
        let endpoints = tx.webhooks(company)?;
        let page = tx.delivery_log(&read, before, PAGE, SCAN)?;
        let recoveries = tx.recoveries(company, RECENT_RECOVERIES)?;
        let charts = charts::charts(tx, t, company, None, now)?;
        Ok::<_, StoreError>((endpoints, page, recoveries, charts))
    })
    .await;
    let (endpoints, log, recoveries, charts): (Vec<Webhook>, LogPage, Vec<Recovery>, Charts) =
        match found {
            Ok(found) => found,
            Err(e) => return pages::unavailable(signed.lang, &e),
        };
    let view = LogPageView {
        page: signed.layout("/ui/deliveries"),
        endpoints: endpoints
            .iter()
            .map(|w| EndpointChoice {
                id: w.id,
                url: w.url.clone(),
                selected: filter.webhook_id == Some(w.id),
            })
            .collect(),
        events: EventType::ALL
            .iter()
            .map(|e| NameChoice {
                name: e.as_str(),
                selected: filter.event_type == Some(*e),
            })
            .collect(),
        statuses: DeliveryStatus::ALL
            .iter()
            .map(|s| NameChoice {
                name: s.as_str(),
                selected: filter.status == Some(*s),
            })
            .collect(),
        ticket: filter.ticket_id.map(|t| t.to_string()).unwrap_or_default(),
        from: filter.from.map(input_time).unwrap_or_default(),
        to: filter.to.map(input_time).unwrap_or_default(),
        text: filter.text.clone().unwrap_or_default(),
        errors,
        rows: log
            .rows
            .iter()
            .map(|r| LogRow {
                id: r.delivery.id.clone(),
                webhook_id: r.delivery.webhook_id,
                event_type: r.delivery.event_type.as_str(),
                status: r.delivery.status.as_str(),
                attempts: r.delivery.attempts,
                last_status_code: r.delivery.last_status_code,
                created_at: rfc3339::format(r.delivery.created_at),
                ticket_id: r.ticket_id,
            })
            .collect(),
        older: log.next.map(|key| log_link(&kept, Some(key))),
        searched_to: log.searched_to.map(rfc3339::format),
        newest: before.map(|_| log_link(&kept, None)),
        recover_endpoint: filter
            .webhook_id
            .filter(|id| endpoints.iter().any(|w| w.id == *id)),
        recoveries: recoveries.iter().map(RecoveryRow::of).collect(),
        charts,
    };
    html(StatusCode::OK, &view)
}

#[derive(Template)]
#[template(path = "ui/delivery.html")]
pub struct DeliveryPage {
    pub page: Layout,
    pub id: String,
    pub event_type: &'static str,
    pub status: &'static str,
    pub attempts_count: i64,
    pub created_at: String,
    pub webhook_id: i64,
    pub event_id: String,
    pub next_attempt_at: Option<String>,
    pub delivered_at: Option<String>,
    pub payload: String,
    pub attempts: Vec<AttemptRow>,
}

pub struct AttemptRow {
    pub at: String,
    pub status_code: Option<i64>,
    pub latency_ms: i64,
    pub error: Option<String>,
    pub response_body: Option<String>,
    /// The request's headers as sent, when they were kept.
    pub headers: Option<String>,
}

/// Compact JSON laid out two spaces per level, keys in the order they were sent.
fn pretty(json: &str) -> String {
    let mut out = String::with_capacity(json.len() * 2);
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        out.push_str(&"  ".repeat(depth));
    };
    let mut chars = json.chars().peekable();
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                out.push(c);
                if matches!(chars.peek(), Some('}' | ']')) {
                    out.extend(chars.next());
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

fn delivery_page(signed: &Signed, detail: DeliveryDetail) -> Response {
    let payload = pretty(detail.payload.get());
    let d = &detail.delivery;
    html(
        StatusCode::OK,
        &DeliveryPage {
            page: signed.layout("/ui/deliveries"),
            id: d.id.clone(),
            event_type: d.event_type.as_str(),
            status: d.status.as_str(),
            attempts_count: d.attempts,
            created_at: rfc3339::format(d.created_at),
            webhook_id: d.webhook_id,
            event_id: d.event_id.clone(),
            next_attempt_at: d.next_attempt_at.map(rfc3339::format),
            delivered_at: d.delivered_at.map(rfc3339::format),
            payload,
            attempts: detail
                .attempts_log
                .iter()
                .map(|a| AttemptRow {
                    at: rfc3339::format(a.at),
                    status_code: a.status_code,
                    latency_ms: a.latency_ms,
                    error: a.error.clone(),
                    response_body: a.response_body.clone(),
                    headers: a.request_headers.clone(),
                })
                .collect(),
        },
    )
}

/// `GET /ui/deliveries/{id}`: another company's delivery is not found.
pub async fn delivery(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<String>,
) -> Response {
    let company = signed.company_id;
    match store::read(&state.ingest.store, move |tx| tx.delivery(company, &id)).await {
        Ok(Some(detail)) => delivery_page(&signed, detail),
        Ok(None) => pages::not_found(signed.lang),
        Err(e) => pages::unavailable(signed.lang, &e),
    }
}

/// `POST /ui/deliveries/{id}/retry`: queues it again now and goes back to its page.
pub async fn retry(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let sent: super::session::CsrfForm = super::session::form(&body);
    if !signed.check(&sent.csrf) {
        return pages::form_expired(signed.lang);
    }
    match webhooks::retry(&state, signed.company_id, id.clone()).await {
        Ok(()) => Redirect::to(&format!("/ui/deliveries/{id}")).into_response(),
        Err(ApiError::NotFound(_)) => pages::not_found(signed.lang),
        Err(e) => pages::failed(signed.lang, &e),
    }
}

/// `POST /ui/recoveries` (`endpoint`, `since`): queues the endpoint's failed and dead
/// deliveries since then again, and goes to the page that follows them.
pub async fn recover(State(state): State<AppState>, signed: Signed, body: Bytes) -> Response {
    let sent = fields(&body);
    if !signed.check(&field(&sent, "csrf")) {
        return pages::form_expired(signed.lang);
    }
    let t = signed.lang.texts();
    let Ok(endpoint) = field(&sent, "endpoint").parse::<i64>() else {
        return pages::not_found(signed.lang);
    };
    let Some(since) = parse_time(&field(&sent, "since")) else {
        let e = ApiError::field("since", t.not_a_time);
        return pages::failed(signed.lang, &e);
    };
    match webhooks::recover_since(&state, signed.company_id, endpoint, since).await {
        Ok(recovery) => Redirect::to(&format!("/ui/recoveries/{}", recovery.id)).into_response(),
        Err(ApiError::NotFound(_)) => pages::not_found(signed.lang),
        Err(e) => pages::failed(signed.lang, &e),
    }
}

#[derive(Template)]
#[template(path = "ui/recovery.html")]
pub struct RecoveryPage {
    pub page: Layout,
    pub recovery: RecoveryRow,
    pub progress: RecoveryProgress,
    /// Queued by this recovery, then queued again by a later one (counted there).
    pub taken_later: i64,
    /// Every delivery it queued was delivered.
    pub done: bool,
    /// The log of what it queued that failed again.
    pub failed_link: String,
}

/// `GET /ui/recoveries/{id}`: how many deliveries the recovery queued again, and where they
/// stand now (the page follows them while it is open).
pub async fn recovery(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<String>,
) -> Response {
    let Ok(id) = id.parse::<i64>() else {
        return pages::not_found(signed.lang);
    };
    let company = signed.company_id;
    match store::read(&state.ingest.store, move |tx| tx.recovery(company, id)).await {
        Ok(Some((recovery, progress))) => {
            let since = input_time(recovery.since);
            let failed_link = log_link(
                &[
                    ("endpoint", recovery.webhook_id.to_string()),
                    ("status", "failed".to_string()),
                    ("from", since),
                ],
                None,
            );
            let page = RecoveryPage {
                page: signed.layout("/ui/deliveries"),
                taken_later: (recovery.queued - progress.total()).max(0),
                done: progress.delivered == recovery.queued,
                recovery: RecoveryRow::of(&recovery),
                progress,
                failed_link,
            };
            html(StatusCode::OK, &page)
        }
        Ok(None) => pages::not_found(signed.lang),
        Err(e) => pages::unavailable(signed.lang, &e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_laid_out_in_their_own_key_order() {
        let sent = r#"{"event":"message.created","body":"a, {b}: \"c\"","reactions":[],"ticket":{"id":1,"tags":[1,2]}}"#;
        assert_eq!(
            pretty(sent),
            "{\n  \"event\": \"message.created\",\n  \"body\": \"a, {b}: \\\"c\\\"\",\n  \"reactions\": [],\n  \"ticket\": {\n    \"id\": 1,\n    \"tags\": [\n      1,\n      2\n    ]\n  }\n}"
        );
        let back: serde_json::Value = serde_json::from_str(&pretty(sent)).unwrap();
        assert_eq!(
            back,
            serde_json::from_str::<serde_json::Value>(sent).unwrap()
        );
    }

    #[test]
    fn the_forms_times_are_utc_and_bad_ones_are_said() {
        assert_eq!(parse_time("1970-01-01T00:01"), Some(60_000));
        assert_eq!(parse_time("1970-01-01T00:01:02"), Some(62_000));
        assert_eq!(parse_time("1970-01-01T00:01:02.5Z"), Some(62_500));
        for bad in ["", "yesterday", "1970-13-01T00:00", "ééééééééééééééééé"] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
        assert_eq!(input_time(62_500), "1970-01-01T00:01:02");
        let t = crate::ui::i18n::Lang::En.texts();
        let query = fields(b"ticket=x&from=nope&endpoint=%FF&text=a%00b&before=1.2.3");
        let asked = asked(1, &query, t);
        assert_eq!(asked.errors.len(), 2, "{:?}", asked.errors);
        assert_eq!(asked.filter.text.as_deref(), Some("ab"));
        assert_eq!(asked.filter.webhook_id, None);
        assert_eq!(asked.before, None);
    }

    #[test]
    fn links_carry_the_filter_and_the_key() {
        let kept = vec![("text", "a b&c".to_string())];
        let key = LogKey {
            created_at: 5,
            seq: 7,
        };
        assert_eq!(
            log_link(&kept, Some(key)),
            "/ui/deliveries?text=a+b%26c&before=5.7"
        );
        assert_eq!(LogKey::parse(&key.encode()), Some(key));
        assert_eq!(log_link(&[], None), "/ui/deliveries");
    }
}
