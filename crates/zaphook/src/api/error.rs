//! The API's error type and its one rendering: `application/problem+json` with `type`,
//! `title`, `status`, `detail`, and `errors: [{field, message}]` for validation. Errors of the
//! layers below are mapped here and nowhere else; a database failure is the only 500 and its
//! detail stays in the log.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::ingest::IngestError;
use crate::store::StoreError;

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("missing or invalid bearer token")]
    Unauthorized,
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("the request is not valid")]
    Validation(Vec<FieldError>),
    #[error("{0}")]
    Unprocessable(String),
    #[error("the service is unavailable: {0}")]
    Unavailable(String),
    #[error("the storage is full: {0}")]
    StorageFull(String),
    #[error("internal error")]
    Internal(String),
}

/// The problem+json body.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
}

impl ApiError {
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        ApiError::Validation(vec![FieldError {
            field: field.to_string(),
            message: message.into(),
        }])
    }

    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        self.parts().0
    }

    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad-request", "Bad request"),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not-found", "Not found"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict", "Conflict"),
            ApiError::PayloadTooLarge(_) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                "Payload too large",
            ),
            ApiError::UnsupportedMediaType(_) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
            ),
            ApiError::Validation(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation",
                "Validation failed",
            ),
            ApiError::Unprocessable(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "unprocessable",
                "Unprocessable request",
            ),
            ApiError::Unavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Service unavailable",
            ),
            ApiError::StorageFull(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "storage-full",
                "Storage full",
            ),
            ApiError::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal error",
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind, title) = self.parts();
        let (detail, errors) = match self {
            ApiError::Validation(errors) => {
                let detail = errors
                    .iter()
                    .map(|e| format!("{}: {}", e.field, e.message))
                    .collect::<Vec<_>>()
                    .join("; ");
                (detail, Some(errors))
            }
            ApiError::Internal(cause) => {
                tracing::error!(%cause, "request failed");
                (
                    "the server could not complete the request".to_string(),
                    None,
                )
            }
            other => (other.to_string(), None),
        };
        let problem = Problem {
            kind: format!("https://zaphook.dev/problems/{kind}"),
            title: title.to_string(),
            status: status.as_u16(),
            detail,
            errors,
        };
        let mut response = (status, axum::Json(problem)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Closed => ApiError::Unavailable("the server is shutting down".into()),
            StoreError::Conflict(_) => {
                ApiError::Conflict("a record with the same key was written at the same time".into())
            }
            // The store says once when its writes start and stop failing; a line per request
            // would bury it.
            StoreError::Retry(_) | StoreError::Unavailable(_) => {
                tracing::debug!(error = %e, "a request could not be stored now");
                ApiError::Unavailable("the database cannot take the change now".into())
            }
            StoreError::StorageFull(_) => {
                tracing::debug!(error = %e, "a request could not be stored now");
                ApiError::StorageFull(
                    "the disk is full: nothing of this request was stored; try again once space is freed".into(),
                )
            }
            StoreError::Invalid(why) => {
                ApiError::BadRequest(format!("a value cannot be stored: {why}"))
            }
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<IngestError> for ApiError {
    fn from(e: IngestError) -> Self {
        match e {
            IngestError::NotFound(what) => ApiError::NotFound(what),
            IngestError::Conflict(why) => ApiError::Conflict(why),
            IngestError::Invalid { field, message } => ApiError::field(field, message),
            IngestError::Store(e) => e.into(),
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// Collects every validation failure of a request, so one answer names them all.
#[derive(Default)]
pub struct Checks(Vec<FieldError>);

impl Checks {
    pub fn fail(&mut self, field: &str, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.to_string(),
            message: message.into(),
        });
    }

    /// A required text: trimmed, not empty, at most `max` characters.
    pub fn text(&mut self, field: &str, value: &str, max: usize) -> String {
        let value = value.trim();
        if value.is_empty() {
            self.fail(field, "must not be empty");
        } else {
            self.text_at_most(field, value, max);
        }
        value.to_string()
    }

    /// A text of at most `max` characters and without NUL, which no backend stores alike
    /// (PostgreSQL's text refuses it).
    pub fn text_at_most(&mut self, field: &str, value: &str, max: usize) {
        if value.chars().count() > max {
            self.fail(field, format!("must be at most {max} characters"));
        } else if value.contains('\0') {
            self.fail(field, "must not contain NUL (\\u0000)");
        }
    }

    /// An optional text: trimmed, empty becomes absent.
    pub fn optional_text(
        &mut self,
        field: &str,
        value: Option<&str>,
        max: usize,
    ) -> Option<String> {
        let value = value.map(str::trim).filter(|v| !v.is_empty())?;
        self.text_at_most(field, value, max);
        Some(value.to_string())
    }

    /// A WhatsApp number or group id, normalised.
    pub fn number(&mut self, field: &str, value: &str) -> (String, bool) {
        match crate::domain::normalize_number(value) {
            Some(found) => found,
            None => {
                self.fail(
                    field,
                    "must be a phone number with country code (digits, optionally +, spaces, dashes) or a group id ending in @g.us",
                );
                (String::new(), false)
            }
        }
    }

    /// An http(s) URL.
    pub fn url(&mut self, field: &str, value: &str) -> String {
        let value = value.trim();
        match reqwest::Url::parse(value) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
                if value.len() > 2048 {
                    self.fail(field, "must be at most 2048 characters");
                }
            }
            Ok(_) => self.fail(field, "must be an http or https URL"),
            Err(e) => self.fail(field, format!("must be an http or https URL ({e})")),
        }
        value.to_string()
    }

    pub fn done(self) -> ApiResult<()> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Validation(self.0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_answer_by_their_kind() {
        let status = |e: StoreError| ApiError::from(e).into_response();
        let busy = status(StoreError::Retry("locked".into()));
        assert_eq!(busy.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(busy.headers()[header::RETRY_AFTER], "1");
        let full = status(StoreError::StorageFull("disk full".into()));
        assert_eq!(full.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(full.headers()[header::RETRY_AFTER], "1");
        assert_eq!(
            status(StoreError::Conflict("unique".into())).status(),
            StatusCode::CONFLICT
        );
        assert_eq!(
            status(StoreError::Database("?".into())).status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}
