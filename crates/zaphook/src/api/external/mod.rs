//! The WHAZING external API under `/v1/api/external/{apiId}`, for integrations moving from
//! WHAZING (n8n flows, Typebot bots, CRM modules) with only a base URL and a token changed:
//! WHAZING's routes, field names and `{"error": …}` answers (never problem+json), over the same
//! tickets, contacts and messages as the rest of zaphook. This module holds what every route
//! shares: the API config a request's token names, its body in any form n8n sends, and the
//! error answer.

mod contacts;
mod messages;
mod sends;
mod tickets;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::de::DeserializeOwned;

use super::AppState;
use super::error::ApiError;
use super::extract::token_hash;
use crate::domain::ApiConfig;
use crate::ingest::IngestError;
use crate::store::{self, StoreError};

pub fn router() -> Router<AppState> {
    let routes = Router::new()
        .route(
            "/",
            post(messages::send).layer(DefaultBodyLimit::max(messages::MAX_SEND_BODY)),
        )
        .route("/params", get(messages::send_params))
        .route("/params/", get(messages::send_params))
        .route("/location", post(sends::location))
        .route("/sendcontact", post(sends::send_contact))
        .route("/apioficial", post(sends::api_oficial))
        .route("/createticket", post(tickets::create))
        .route("/showticket", post(tickets::show))
        .route("/showallticket", post(tickets::show_all))
        .route("/updateticketinfo", post(tickets::update_info))
        .route("/updatequeue", post(tickets::update_queue))
        .route("/ticket/{id}", get(tickets::messages))
        .route("/createcontact", post(contacts::create))
        .route("/updatecontact", post(contacts::update))
        .route("/contact", post(contacts::show))
        .route("/statuschannel", get(contacts::status_channel));
    Router::new().nest("/v1/api/external/{apiId}", routes)
}

/// WHAZING's error answer: a status and `{"error": "…"}`.
#[derive(Debug)]
pub struct ExternalError {
    status: StatusCode,
    error: String,
}

impl ExternalError {
    pub fn new(status: StatusCode, error: impl Into<String>) -> Self {
        ExternalError {
            status,
            error: error.into(),
        }
    }

    fn forbidden(error: &str) -> Self {
        Self::new(StatusCode::FORBIDDEN, error)
    }

    pub fn bad_request(error: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, error)
    }

    pub fn not_found(error: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, error)
    }
}

impl IntoResponse for ExternalError {
    fn into_response(self) -> Response {
        let unavailable = self.status == StatusCode::SERVICE_UNAVAILABLE;
        let mut response = (
            self.status,
            axum::Json(serde_json::json!({ "error": self.error })),
        )
            .into_response();
        if unavailable {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        response
    }
}

/// zaphook's own errors in WHAZING's shape: validation is a 400 naming the fields, a failure
/// of the store a 503 (try again) or a 500 whose detail stays in the log.
impl From<ApiError> for ExternalError {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::Validation(errors) => ExternalError::bad_request(
                errors
                    .iter()
                    .map(|e| format!("{}: {}", e.field, e.message))
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
            ApiError::BadRequest(why) | ApiError::Unprocessable(why) => {
                ExternalError::bad_request(why)
            }
            ApiError::NotFound(what) => ExternalError::not_found(format!("{what} not found")),
            ApiError::Conflict(why) => ExternalError::new(StatusCode::CONFLICT, why),
            ApiError::PayloadTooLarge(why) => {
                ExternalError::new(StatusCode::PAYLOAD_TOO_LARGE, why)
            }
            ApiError::UnsupportedMediaType(why) => {
                ExternalError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, why)
            }
            ApiError::Unauthorized => ExternalError::forbidden("Invalid token."),
            ApiError::Unavailable(why) | ApiError::StorageFull(why) => {
                ExternalError::new(StatusCode::SERVICE_UNAVAILABLE, why)
            }
            ApiError::Internal(cause) => {
                tracing::error!(%cause, "external API request failed");
                ExternalError::new(StatusCode::INTERNAL_SERVER_ERROR, "ERR_INTERNAL")
            }
        }
    }
}

impl From<IngestError> for ExternalError {
    fn from(e: IngestError) -> Self {
        ApiError::from(e).into()
    }
}

impl From<StoreError> for ExternalError {
    fn from(e: StoreError) -> Self {
        ApiError::from(e).into()
    }
}

pub type ExternalResult<T> = Result<T, ExternalError>;

/// The API config whose token came with the request, checked against the `apiId` of the URL:
/// `Authorization: Bearer <token>`, or `?bearertoken=` on `GET /params` (a link n8n or a
/// browser opens).
pub struct Caller(pub ApiConfig);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ExternalError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        // Inside the nested router the path has lost its `/v1/api/external/{apiId}` prefix.
        let api_id = axum::extract::RawPathParams::from_request_parts(parts, state)
            .await
            .ok()
            .and_then(|params| {
                params
                    .iter()
                    .find(|(key, _)| *key == "apiId")
                    .map(|(_, value)| value.to_string())
            })
            .unwrap_or_default();
        let route = parts.uri.path().trim_matches('/').to_string();
        // As WHAZING: the token is the second word of the header, whatever the first says; a
        // header without one is an invalid token, no header at all is a missing one.
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .map(|v| v.to_str().unwrap_or_default());
        let from_header =
            header.map(|v| v.split(' ').nth(1).unwrap_or_default().trim().to_string());
        let from_query = || {
            (route == "params")
                .then(|| parts.uri.query())
                .flatten()
                .and_then(|q| {
                    url::form_urlencoded::parse(q.as_bytes())
                        .find(|(k, _)| k == "bearertoken")
                        .map(|(_, v)| v.trim().to_string())
                })
                .filter(|t| !t.is_empty())
        };
        let token = match from_header {
            Some(token) => token,
            None => {
                from_query().ok_or_else(|| ExternalError::forbidden("Token was not provided."))?
            }
        };
        if token.is_empty() || token.len() > 256 {
            return Err(ExternalError::forbidden("Invalid token."));
        }
        let hash = token_hash(&token);
        let config = store::read(&state.ingest.store, move |tx| tx.api_config_by_token(&hash))
            .await?
            .ok_or_else(|| ExternalError::forbidden("Invalid token."))?;
        if config.id != api_id {
            return Err(ExternalError::forbidden("ERR_SESSION_NOT_AUTH_TOKEN"));
        }
        Ok(Caller(config))
    }
}

/// A request body as an n8n HTTP Request node sends it: JSON, or a form
/// (`application/x-www-form-urlencoded`); field names as WHAZING spells them.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ExternalError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| ExternalError::new(e.status(), e.body_text()))?;
        if content_type.starts_with("application/x-www-form-urlencoded") {
            return serde_urlencoded::from_bytes(&bytes)
                .map(Body)
                .map_err(|e| ExternalError::bad_request(format!("the form is not valid: {e}")));
        }
        if !content_type.is_empty() && !content_type.contains("json") {
            return Err(ExternalError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "send the body as application/json or application/x-www-form-urlencoded",
            ));
        }
        let bytes = if bytes.is_empty() {
            &b"{}"[..]
        } else {
            &bytes[..]
        };
        serde_json::from_slice(bytes)
            .map(Body)
            .map_err(|e| ExternalError::bad_request(format!("the JSON body is not valid: {e}")))
    }
}

/// An id as integrations write it: a JSON number, or a string of digits (forms and many n8n
/// expressions give strings).
pub fn id_field<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Id {
        Number(i64),
        Text(String),
    }
    match <Option<Id> as serde::Deserialize>::deserialize(d)? {
        None => Ok(None),
        Some(Id::Number(n)) => Ok(Some(n)),
        Some(Id::Text(t)) if t.trim().is_empty() => Ok(None),
        Some(Id::Text(t)) => t
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| serde::de::Error::custom(format!("{t:?} is not an id"))),
    }
}

/// A text as integrations write it: a JSON string, or a number (a phone number or a key
/// written without quotes); empty is absent.
pub fn text_field<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Written {
        Text(String),
        Integer(i64),
        Unsigned(u64),
    }
    Ok(
        match <Option<Written> as serde::Deserialize>::deserialize(d)? {
            None => None,
            Some(Written::Text(t)) => Some(t).filter(|t| !t.trim().is_empty()),
            Some(Written::Integer(n)) => Some(n.to_string()),
            Some(Written::Unsigned(n)) => Some(n.to_string()),
        },
    )
}
