//! Signing in to the dashboard with an API token, and the session that follows: a random
//! cookie (HttpOnly, SameSite=Strict, Secure behind https, 12 hours) whose hash is stored with
//! the token it was opened with, so signing out or revoking the token ends it on every node.
//! Every form carries the session's form token; the sign-in form, before there is a session,
//! carries the one its page set in a cookie of its own.

use axum::body::Bytes;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::i18n::Lang;
use super::pages::{self, Layout};
use crate::api::{AppState, token_hash};
use crate::store::{self, StoreError, UiSession};

pub const SESSION_COOKIE: &str = "zaphook_session";
const SIGNIN_COOKIE: &str = "zaphook_signin";
const SESSION_SECONDS: i64 = 12 * 3600;

/// A signed-in request: its company, the form token its forms carry, and its language.
pub struct Signed {
    pub company_id: i64,
    pub csrf: String,
    pub lang: Lang,
}

impl FromRequestParts<AppState> for Signed {
    /// To the sign-in page, or a 503 page when the database cannot say.
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let lang = Lang::of(&parts.headers);
        let Some(id) = cookie_value(&parts.headers, SESSION_COOKIE) else {
            return Err(Redirect::to("/ui/signin").into_response());
        };
        let (hash, now) = (token_hash(&id), state.ingest.clock.now_ms());
        match store::read(&state.ingest.store, move |tx| tx.ui_session(&hash, now)).await {
            Ok(Some(session)) => Ok(Signed {
                company_id: session.company_id,
                csrf: session.csrf,
                lang,
            }),
            Ok(None) => Err(Redirect::to("/ui/signin").into_response()),
            Err(e) => Err(pages::unavailable(lang, &e)),
        }
    }
}

impl Signed {
    /// Whether a form sent `csrf`, the session's form token.
    pub fn check(&self, csrf: &str) -> bool {
        same(&self.csrf, csrf)
    }

    pub fn layout(&self, path: &'static str) -> Layout {
        Layout::new(self.lang, path, Some(self.csrf.clone()))
    }
}

fn same(a: &str, b: &str) -> bool {
    !a.is_empty() && a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// 32 random bytes, URL-safe base64.
fn random_token() -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

/// A `Set-Cookie` value for the dashboard's paths.
pub fn cookie(name: &str, value: &str, max_age: i64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{name}={value}; Path=/ui; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}")
}

/// The value of cookie `name` in the request.
pub fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_string())
        .filter(|value| !value.is_empty())
}

/// `path` when it is one of the dashboard's own (never another site, so no open redirect).
pub fn local_path(path: &str) -> Option<&str> {
    (path.starts_with("/ui") && !path.starts_with("//") && !path.contains('\\')).then_some(path)
}

fn secure(state: &AppState) -> bool {
    state.public_url.starts_with("https://")
}

/// A form body (`application/x-www-form-urlencoded`); what cannot be read is an empty form.
pub fn form<T: for<'de> Deserialize<'de> + Default>(body: &Bytes) -> T {
    serde_urlencoded::from_bytes(body).unwrap_or_default()
}

/// A form body or query string as its fields, in order (a name may come more than once);
/// what cannot be read is no fields.
pub fn fields(raw: &[u8]) -> Vec<(String, String)> {
    serde_urlencoded::from_bytes(raw).unwrap_or_default()
}

/// The first value of field `name`, trimmed; `""` when there is none.
pub fn field(fields: &[(String, String)], name: &str) -> String {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default()
}

/// `GET /ui/signin`: the sign-in form, with a fresh form token in it and in a cookie.
pub async fn signin_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let lang = Lang::of(&headers);
    let csrf = random_token();
    let set = cookie(SIGNIN_COOKIE, &csrf, 3600, secure(&state));
    let page = pages::SignIn {
        page: Layout::new(lang, "/ui/signin", None),
        csrf,
        error: false,
    };
    (
        [(header::SET_COOKIE, set)],
        pages::html(StatusCode::OK, &page),
    )
        .into_response()
}

#[derive(Debug, Default, Deserialize)]
pub struct SignInForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    csrf: String,
}

/// `POST /ui/signin`: opens a session for the company of the token given.
pub async fn sign_in(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let lang = Lang::of(&headers);
    let sent: SignInForm = form(&body);
    let expected = cookie_value(&headers, SIGNIN_COOKIE).unwrap_or_default();
    if !same(&expected, &sent.csrf) {
        return pages::form_expired(lang);
    }
    let token = sent.token.trim().to_string();
    let token_hash_value = token_hash(&token);
    let id = random_token();
    let now = state.ingest.clock.now_ms();
    let session = UiSession {
        company_id: 0,
        token_hash: token_hash_value.clone(),
        csrf: random_token(),
        created_at: now,
        expires_at: now + SESSION_SECONDS * 1000,
    };
    let id_hash = token_hash(&id);
    let opened = store::write(&state.ingest.store, move |tx| {
        if token.is_empty() || token.len() > 256 {
            return Ok::<_, StoreError>(false);
        }
        let Some(company_id) = tx.token_company(&token_hash_value)? else {
            return Ok(false);
        };
        tx.insert_ui_session(
            &id_hash,
            &UiSession {
                company_id,
                ..session.clone()
            },
        )?;
        Ok(true)
    })
    .await;
    match opened {
        Ok(true) => {
            let secure = secure(&state);
            let mut response = Redirect::to("/ui/connections").into_response();
            let headers = response.headers_mut();
            for set in [
                cookie(SESSION_COOKIE, &id, SESSION_SECONDS, secure),
                cookie(SIGNIN_COOKIE, "", 0, secure),
            ] {
                if let Ok(value) = set.parse() {
                    headers.append(header::SET_COOKIE, value);
                }
            }
            response
        }
        Ok(false) => {
            let page = pages::SignIn {
                page: Layout::new(lang, "/ui/signin", None),
                csrf: expected,
                error: true,
            };
            pages::html(StatusCode::UNAUTHORIZED, &page)
        }
        Err(e) => pages::unavailable(lang, &e),
    }
}

/// A form that carries nothing but its form token.
#[derive(Debug, Default, Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    pub csrf: String,
}

/// `POST /ui/signout`: ends the session here and on every node.
pub async fn sign_out(
    State(state): State<AppState>,
    signed: Signed,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let sent: CsrfForm = form(&body);
    if !signed.check(&sent.csrf) {
        return pages::form_expired(signed.lang);
    }
    let hash = cookie_value(&headers, SESSION_COOKIE)
        .map(|id| token_hash(&id))
        .unwrap_or_default();
    if let Err(e) = store::write(&state.ingest.store, move |tx| tx.delete_ui_session(&hash)).await {
        return pages::unavailable(signed.lang, &e);
    }
    let set = cookie(SESSION_COOKIE, "", 0, secure(&state));
    ([(header::SET_COOKIE, set)], Redirect::to("/ui/signin")).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_dashboards_own_paths_are_gone_back_to() {
        assert_eq!(local_path("/ui/connections"), Some("/ui/connections"));
        for elsewhere in [
            "https://evil.example/ui",
            "//evil.example/ui",
            "/api/v1",
            "/ui\\x",
        ] {
            assert_eq!(local_path(elsewhere), None, "{elsewhere}");
        }
    }

    #[test]
    fn cookies_are_read_by_name_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            "a=1; zaphook_session=abc; b=".parse().unwrap(),
        );
        assert_eq!(
            cookie_value(&headers, "zaphook_session").as_deref(),
            Some("abc")
        );
        assert_eq!(cookie_value(&headers, "b"), None);
        assert_eq!(cookie_value(&headers, "c"), None);
    }
}
