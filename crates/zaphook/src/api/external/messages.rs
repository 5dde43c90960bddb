//! The external API's sends: `POST /` (a text, or a file by `mediaUrl`) and `GET /params`
//! (the same as a link). The ticket is found or created on the API config's connection, and
//! `externalKey` becomes its `apiConfig`; the answer comes once the message is stored and
//! queued, as WHAZING's "Message add queue".

use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Body, Caller, ExternalError, ExternalResult, id_field, text_field};
use crate::api::AppState;
use crate::api::error::Checks;
use crate::api::messages::MAX_TEXT;
use crate::domain::{ApiConfig, MediaType, SendType};
use crate::ingest::{Recipient, SendMessage};

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SendBody {
    #[serde(default, deserialize_with = "text_field")]
    body: Option<String>,
    #[serde(default, deserialize_with = "text_field")]
    number: Option<String>,
    #[serde(default, deserialize_with = "id_field")]
    ticket_id: Option<i64>,
    #[serde(default, deserialize_with = "text_field")]
    external_key: Option<String>,
    #[serde(default, deserialize_with = "text_field")]
    media_url: Option<String>,
}

/// `POST /`.
pub async fn send(
    State(state): State<AppState>,
    Caller(config): Caller,
    Body(body): Body<SendBody>,
) -> ExternalResult<axum::Json<Value>> {
    queue(&state, &config, body).await
}

/// `GET /params?body=&number=&externalKey=`: `POST /` as a link.
pub async fn send_params(
    State(state): State<AppState>,
    Caller(config): Caller,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> ExternalResult<axum::Json<Value>> {
    let mut body = SendBody::default();
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        let value = Some(value.into_owned()).filter(|v| !v.is_empty());
        match &*key {
            "body" => body.body = value,
            "number" => body.number = value,
            "externalKey" => body.external_key = value,
            "mediaUrl" => body.media_url = value,
            _ => {}
        }
    }
    queue(&state, &config, body).await
}

/// What kind of media a URL points to, by its file extension (as WHAZING guesses it from the
/// download); a document when it cannot tell.
fn media_type_of(url: &str) -> MediaType {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let extension = path
        .rsplit('/')
        .next()
        .and_then(|name| name.rsplit_once('.'))
        .map(|(_, ext)| ext.to_ascii_lowercase())
        .unwrap_or_default();
    match extension.as_str() {
        "jpg" | "jpeg" | "png" | "webp" | "gif" => MediaType::Image,
        "mp4" | "3gp" | "mov" => MediaType::Video,
        "mp3" | "ogg" | "oga" | "opus" | "aac" | "m4a" | "amr" | "wav" => MediaType::Audio,
        _ => MediaType::Document,
    }
}

/// The file name a document is shown with: the last part of its URL's path.
fn file_name_of(url: &str) -> Option<String> {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let name = path.rsplit('/').next()?.trim();
    (!name.is_empty() && name.contains('.')).then(|| name.chars().take(240).collect())
}

async fn queue(
    state: &AppState,
    config: &ApiConfig,
    body: SendBody,
) -> ExternalResult<axum::Json<Value>> {
    let mut checks = Checks::default();
    let to = match (body.ticket_id, body.number.as_deref()) {
        (Some(id), _) => Recipient::Ticket {
            id,
            connection_id: Some(config.connection_id),
        },
        (None, Some(number)) => {
            let (number, is_group) = checks.number("number", number);
            Recipient::Number {
                connection_id: config.connection_id,
                number,
                is_group,
            }
        }
        (None, None) => return Err(ExternalError::bad_request("give number or ticketId")),
    };
    let text = body.body.unwrap_or_default();
    let media_url = body.media_url.map(|u| checks.url("mediaUrl", &u));
    let media_type = media_url.as_deref().map_or(MediaType::Chat, media_type_of);
    if text.trim().is_empty() && media_url.is_none() {
        return Err(ExternalError::bad_request("body is required"));
    }
    checks.text_at_most("body", &text, MAX_TEXT);
    let external_key = checks.optional_text("externalKey", body.external_key.as_deref(), 255);
    checks.done()?;
    let file_name = match media_type {
        MediaType::Document => media_url.as_deref().and_then(file_name_of),
        _ => None,
    };
    let cmd = SendMessage {
        to,
        body: text,
        media_type,
        media_url,
        quoted_message_id: None,
        external_key,
        user_id: None,
        send_type: SendType::Api,
        file_name,
        template: None,
    };
    state
        .ingest
        .send(config.company_id, cmd)
        .await
        .map_err(|e| match e {
            crate::ingest::IngestError::NotFound(what) if what.starts_with("ticket") => {
                ExternalError::not_found("ERR_NO_TICKET_FOUND")
            }
            e => e.into(),
        })?;
    Ok(axum::Json(json!({ "message": "Message add queue" })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_kinds_and_names_come_from_the_url() {
        let kind = |url| media_type_of(url);
        assert_eq!(kind("https://x.test/a/photo.JPG?size=2"), MediaType::Image);
        assert_eq!(kind("https://x.test/clip.mp4"), MediaType::Video);
        assert_eq!(kind("https://x.test/voice.ogg#t"), MediaType::Audio);
        assert_eq!(kind("https://x.test/boleto.pdf"), MediaType::Document);
        assert_eq!(kind("https://x.test/download"), MediaType::Document);
        assert_eq!(
            file_name_of("https://x.test/docs/boleto.pdf?x=1"),
            Some("boleto.pdf".into())
        );
        assert_eq!(file_name_of("https://x.test/download"), None);
    }
}
