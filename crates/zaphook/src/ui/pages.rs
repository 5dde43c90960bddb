//! The dashboard's pages: the data each one shows, read in one snapshot, rendered from its
//! template in `templates/ui/`, and the pages that say something went wrong.

use askama::Template;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::i18n::{Lang, Texts};
use super::session::Signed;
use crate::api::AppState;
use crate::domain::{Channel, rfc3339};
use crate::store::{self, StoreError};

/// What every page has around its content.
pub struct Layout {
    pub t: &'static Texts,
    pub lang: &'static str,
    /// The other language: its code and name, for the switch.
    pub other_lang: &'static str,
    pub other_name: &'static str,
    /// The page's own path, to come back to after switching language.
    pub path: &'static str,
    /// The session's form token; `None` before signing in.
    pub csrf: Option<String>,
}

impl Layout {
    pub fn new(lang: Lang, path: &'static str, csrf: Option<String>) -> Layout {
        Layout {
            t: lang.texts(),
            lang: lang.code(),
            other_lang: lang.other().code(),
            other_name: lang.texts().switch_language,
            path,
            csrf,
        }
    }
}

/// A rendered page; a template that fails to render (it cannot, for these) is a 500.
pub fn html(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(body) => (
            status,
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            body,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "a dashboard page failed to render");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "ui/signin.html")]
pub struct SignIn {
    pub page: Layout,
    pub csrf: String,
    pub error: bool,
}

#[derive(Template)]
#[template(path = "ui/message.html")]
pub struct Message {
    pub page: Layout,
    pub title: String,
    pub detail: String,
}

/// 403: a form came without its form token (or with another session's).
pub fn form_expired(lang: Lang) -> Response {
    let t = lang.texts();
    let page = Message {
        page: Layout::new(lang, "/ui/connections", None),
        title: t.form_expired.to_string(),
        detail: t.form_expired_help.to_string(),
    };
    html(StatusCode::FORBIDDEN, &page)
}

/// 404: nothing of this company by that id.
pub fn not_found(lang: Lang) -> Response {
    let t = lang.texts();
    let page = Message {
        page: Layout::new(lang, "/ui/connections", None),
        title: t.not_found.to_string(),
        detail: t.not_found_help.to_string(),
    };
    html(StatusCode::NOT_FOUND, &page)
}

/// What the API would have answered, as a page with the same status.
pub fn failed(lang: Lang, e: &crate::api::ApiError) -> Response {
    let status = e.status();
    let page = Message {
        page: Layout::new(lang, "/ui/connections", None),
        title: status.as_u16().to_string(),
        detail: e.to_string(),
    };
    html(status, &page)
}

/// 503: the database could not answer.
pub fn unavailable(lang: Lang, e: &StoreError) -> Response {
    let page = Message {
        page: Layout::new(lang, "/ui/connections", None),
        title: "503".to_string(),
        detail: e.to_string(),
    };
    let mut response = html(StatusCode::SERVICE_UNAVAILABLE, &page);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("2"));
    response
}

/// One connection as its row shows it.
pub struct ConnectionRow {
    pub id: i64,
    pub name: String,
    pub channel: &'static str,
    pub healthy: bool,
    pub last_callback: Option<String>,
    pub last_send_error: Option<String>,
    /// For a Cloud API connection: what to paste into Meta's console.
    pub callback_url: Option<String>,
    pub verify_token: Option<String>,
}

#[derive(Template)]
#[template(path = "ui/connections.html")]
pub struct Connections {
    pub page: Layout,
    pub connections: Vec<ConnectionRow>,
}

/// `GET /ui/connections`: the company's connections, their state and Meta's settings.
pub async fn connections(State(state): State<AppState>, signed: Signed) -> Response {
    let company = signed.company_id;
    let public_url = state.public_url.clone();
    let rows = store::read(&state.ingest.store, move |tx| {
        let mut rows = Vec::new();
        for c in tx.connections(company)? {
            let verify_token = match c.channel {
                Channel::Cloud => tx
                    .cloud_config(c.id)?
                    .filter(|(owner, _)| *owner == company)
                    .map(|(_, config)| config.verify_token),
                Channel::Sandbox => None,
            };
            let cloud = c.cloud.as_ref();
            rows.push(ConnectionRow {
                id: c.id,
                name: c.name,
                channel: c.channel.as_str(),
                healthy: cloud.is_none_or(|s| !s.token_refused),
                last_callback: cloud.and_then(|s| s.last_callback_at).map(rfc3339::format),
                last_send_error: cloud.and_then(|s| s.last_send_error.clone()),
                callback_url: cloud.map(|s| format!("{public_url}{}", s.callback_path)),
                verify_token,
            });
        }
        Ok::<_, StoreError>(rows)
    })
    .await;
    match rows {
        Ok(connections) => html(
            StatusCode::OK,
            &Connections {
                page: signed.layout("/ui/connections"),
                connections,
            },
        ),
        Err(e) => unavailable(signed.lang, &e),
    }
}
