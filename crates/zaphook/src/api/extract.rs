//! Request extractors whose rejections are problem+json: JSON bodies, path ids, query strings,
//! and the bearer token that names the company of the request.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::AppState;
use super::error::ApiError;
use crate::store;

/// A JSON body; malformed JSON, a wrong type or an unknown field is a clear 4xx.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Json(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    let text = rejection.body_text();
    match rejection {
        JsonRejection::JsonDataError(_) => ApiError::Unprocessable(text),
        JsonRejection::JsonSyntaxError(_) => ApiError::BadRequest(text),
        JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType(
            "expected a body with content-type: application/json".into(),
        ),
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::PayloadTooLarge("the body is larger than the limit".into())
        }
        _ => ApiError::BadRequest(text),
    }
}

/// A path parameter; a value of the wrong shape names no resource, so it is a 404.
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            Err(PathRejection::FailedToDeserializePathParams(_)) => Err(ApiError::NotFound(
                format!("{} (the id is not valid)", parts.uri.path()),
            )),
            Err(other) => Err(ApiError::BadRequest(other.body_text())),
        }
    }
}

/// For `#[serde(deserialize_with)]`: distinguishes an absent key (`None`, with
/// `#[serde(default)]`) from an explicit `null` (`Some(None)`), for PATCH bodies.
pub fn nullable<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    <Option<T> as serde::Deserialize>::deserialize(d).map(Some)
}

/// A query string.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Query(value)),
            Err(rejection) => Err(query_rejection(rejection)),
        }
    }
}

fn query_rejection(rejection: QueryRejection) -> ApiError {
    ApiError::BadRequest(rejection.body_text())
}

/// Tokens recently found valid, so most requests skip the database. A revoked token stops
/// working within `TOKEN_TTL`.
#[derive(Clone, Default)]
pub struct TokenCache(Arc<Mutex<HashMap<String, (i64, Instant)>>>);

const TOKEN_TTL: Duration = Duration::from_secs(10);
const TOKEN_CACHE_SIZE: usize = 10_000;

impl TokenCache {
    fn get(&self, hash: &str) -> Option<i64> {
        let cache = self.0.lock().ok()?;
        let (company, at) = cache.get(hash)?;
        (at.elapsed() < TOKEN_TTL).then_some(*company)
    }

    fn put(&self, hash: String, company: i64) {
        if let Ok(mut cache) = self.0.lock() {
            if cache.len() >= TOKEN_CACHE_SIZE {
                cache.clear();
            }
            cache.insert(hash, (company, Instant::now()));
        }
    }
}

/// The company whose bearer token came with the request.
#[derive(Debug, Clone, Copy)]
pub struct Company(pub i64);

/// The stored form of a token: its SHA-256, hex.
pub fn token_hash(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

impl FromRequestParts<AppState> for Company {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty() && t.len() <= 256)
            .ok_or(ApiError::Unauthorized)?;
        let hash = token_hash(token);
        if let Some(company) = state.tokens.get(&hash) {
            return Ok(Company(company));
        }
        let lookup = hash.clone();
        let company = store::read(&state.ingest.store, move |tx| tx.token_company(&lookup))
            .await?
            .ok_or(ApiError::Unauthorized)?;
        state.tokens.put(hash, company);
        Ok(Company(company))
    }
}
