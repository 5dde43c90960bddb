//! The external API's sends: `POST /` (a text; a file by `mediaUrl`, uploaded as the `media`
//! part of a multipart form, or as `mediaMessage` in base64) and `GET /params` (the same as a
//! link). An uploaded file is stored like inbound media and sent by its `/media/{key}` URL.
//! The ticket is found or created on the API config's connection, and `externalKey` becomes
//! its `apiConfig`; the answer comes once the message is stored and queued, as WHAZING's
//! "Message add queue".

use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{StatusCode, header};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Body, Caller, ExternalError, ExternalResult, id_field, text_field};
use crate::api::AppState;
use crate::api::error::Checks;
use crate::api::messages::MAX_TEXT;
use crate::channels::cloud::media::{self, Upload};
use crate::domain::{ApiConfig, MediaType};
use crate::ingest::{Recipient, SendMessage};
use crate::store;

/// Largest file the external API takes, as WHAZING.
pub const MAX_MEDIA: usize = 16 * 1024 * 1024;
/// Largest body of `POST /`: a file of `MAX_MEDIA` in base64, and the rest of the body.
pub const MAX_SEND_BODY: usize = MAX_MEDIA / 3 * 4 + 64 * 1024;

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

impl SendBody {
    /// Sets the field a form part or query parameter names (others are ignored, as WHAZING
    /// ignores them).
    fn set(&mut self, name: &str, value: Option<String>) -> ExternalResult<()> {
        match name {
            "body" => self.body = value,
            "number" => self.number = value,
            "externalKey" => self.external_key = value,
            "mediaUrl" => self.media_url = value,
            "ticketId" => {
                self.ticket_id = match value {
                    Some(v) => Some(v.trim().parse().map_err(|_| {
                        ExternalError::bad_request(format!("ticketId: {v:?} is not an id"))
                    })?),
                    None => None,
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// `mediaMessage` of a JSON send: a file in base64.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MediaMessage {
    #[serde(default, deserialize_with = "text_field")]
    media_type: Option<String>,
    #[serde(default, deserialize_with = "text_field")]
    file_name: Option<String>,
    media: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonSend {
    #[serde(flatten)]
    send: SendBody,
    media_message: Option<MediaMessage>,
}

/// A send with the file that came with it, if one did.
pub struct SendRequest {
    body: SendBody,
    file: Option<(Upload, Option<MediaType>)>,
}

fn too_large() -> ExternalError {
    ExternalError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the media is larger than {} MiB", MAX_MEDIA / (1024 * 1024)),
    )
}

impl<S: Send + Sync> FromRequest<S> for SendRequest {
    type Rejection = ExternalError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let multipart = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().starts_with("multipart/form-data"));
        if !multipart {
            let Body(json) = Body::<JsonSend>::from_request(req, state).await?;
            let file = match json.media_message {
                Some(m) => Some(decode_media_message(m)?),
                None => None,
            };
            return Ok(SendRequest {
                body: json.send,
                file,
            });
        }
        let mut form = Multipart::from_request(req, state)
            .await
            .map_err(|e| ExternalError::bad_request(e.body_text()))?;
        let mut body = SendBody::default();
        let mut file = None;
        let bad = |e: axum::extract::multipart::MultipartError| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                too_large()
            } else {
                ExternalError::bad_request(format!(
                    "the multipart form is not valid: {}",
                    e.body_text()
                ))
            }
        };
        while let Some(field) = form.next_field().await.map_err(bad)? {
            let name = field.name().unwrap_or_default().to_string();
            if name == "media" {
                let file_name = field.file_name().map(|n| n.chars().take(240).collect());
                let mime = field.content_type().map(str::to_string);
                let bytes = field.bytes().await.map_err(bad)?;
                if bytes.len() > MAX_MEDIA {
                    return Err(too_large());
                }
                if bytes.is_empty() {
                    return Err(ExternalError::bad_request("the media file is empty"));
                }
                file = Some((Upload::of(bytes, mime, file_name), None));
                continue;
            }
            let value = Some(field.text().await.map_err(bad)?).filter(|v| !v.trim().is_empty());
            body.set(&name, value)?;
        }
        Ok(SendRequest { body, file })
    }
}

fn decode_media_message(m: MediaMessage) -> ExternalResult<(Upload, Option<MediaType>)> {
    // A data URL's header (`data:image/png;base64,`) is taken too.
    let (mime, data) = match m
        .media
        .strip_prefix("data:")
        .and_then(|r| r.split_once(','))
    {
        Some((head, data)) => (head.strip_suffix(";base64").map(str::to_string), data),
        None => (None, m.media.as_str()),
    };
    let data: String = data.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    if data.len() > MAX_MEDIA / 3 * 4 + 4 {
        return Err(too_large());
    }
    let bytes = STANDARD.decode(data.as_bytes()).map_err(|e| {
        ExternalError::bad_request(format!("mediaMessage.media is not base64: {e}"))
    })?;
    if bytes.is_empty() {
        return Err(ExternalError::bad_request("mediaMessage.media is empty"));
    }
    let kind = match m.media_type.as_deref() {
        None => None,
        Some(t) => match MediaType::parse(&t.to_ascii_lowercase()) {
            Some(
                kind @ (MediaType::Image
                | MediaType::Video
                | MediaType::Audio
                | MediaType::Document),
            ) => Some(kind),
            _ => {
                return Err(ExternalError::bad_request(format!(
                    "mediaMessage.mediaType: {t:?} is not image, video, audio or document"
                )));
            }
        },
    };
    let file_name = m.file_name.map(|n| n.chars().take(240).collect());
    Ok((Upload::of(bytes.into(), mime, file_name), kind))
}

/// `POST /`.
pub async fn send(
    State(state): State<AppState>,
    Caller(config): Caller,
    request: SendRequest,
) -> ExternalResult<axum::Json<Value>> {
    let mut body = request.body;
    let mut kind = None;
    let mut file_name = None;
    if let Some((upload, given)) = request.file {
        if body.media_url.is_some() {
            return Err(ExternalError::bad_request(
                "give a file or a mediaUrl, not both",
            ));
        }
        kind = Some(given.unwrap_or_else(|| {
            upload
                .mime_type
                .as_deref()
                .map(media_type_of_mime)
                .or_else(|| upload.file_name.as_deref().map(media_type_of))
                .unwrap_or(MediaType::Document)
        }));
        file_name = upload.file_name.clone();
        let now = state.ingest.clock.now_ms();
        let stored = media::store_file(&state.media_dir, config.company_id, upload, now)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "an uploaded media file cannot be stored");
                ExternalError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the media cannot be stored now",
                )
            })?;
        let key = stored.key.clone();
        store::write(&state.ingest.store, move |tx| tx.insert_media(&stored)).await?;
        body.media_url = Some(media::media_url(&state.public_url, &key));
    }
    queue(&state, &config, body, kind, file_name).await
}

/// The kind of media a MIME type names.
fn media_type_of_mime(mime: &str) -> MediaType {
    match mime.split('/').next().unwrap_or_default() {
        "image" => MediaType::Image,
        "video" => MediaType::Video,
        "audio" => MediaType::Audio,
        _ => MediaType::Document,
    }
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
        body.set(&key, value)?;
    }
    queue(&state, &config, body, None, None).await
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

/// Where a send of the external API goes: `ticketId` (a ticket of the config's connection)
/// or else `number` (its contact's open or pending ticket there, found or created). A number
/// that is not one is recorded in `checks`.
pub(super) fn recipient(
    checks: &mut Checks,
    config: &ApiConfig,
    ticket_id: Option<i64>,
    number: Option<&str>,
) -> ExternalResult<Recipient> {
    match (ticket_id, number) {
        (Some(id), _) => Ok(Recipient::Ticket {
            id,
            connection_id: Some(config.connection_id),
        }),
        (None, Some(number)) => {
            let (number, is_group) = checks.number("number", number);
            Ok(Recipient::Number {
                connection_id: config.connection_id,
                number,
                is_group,
            })
        }
        (None, None) => Err(ExternalError::bad_request(
            "number is a required field (or give ticketId)",
        )),
    }
}

/// Stores and queues a send of the external API (its ticket found or created, `externalKey`
/// set on it) and answers as WHAZING: "Message add queue". The ticket's acks go to `config`'s
/// `urlMessageStatus` from now on.
pub(super) async fn enqueue(
    state: &AppState,
    config: &ApiConfig,
    mut cmd: SendMessage,
) -> ExternalResult<axum::Json<Value>> {
    cmd.api_config_id = Some(config.id.clone());
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

/// Queues the send; `kind` and `file_name` are those of an uploaded file, else guessed from
/// `mediaUrl`.
async fn queue(
    state: &AppState,
    config: &ApiConfig,
    body: SendBody,
    kind: Option<MediaType>,
    file_name: Option<String>,
) -> ExternalResult<axum::Json<Value>> {
    let mut checks = Checks::default();
    let to = recipient(&mut checks, config, body.ticket_id, body.number.as_deref())?;
    let text = body.body.unwrap_or_default();
    let media_url = body.media_url.map(|u| checks.url("mediaUrl", &u));
    let media_type =
        kind.unwrap_or_else(|| media_url.as_deref().map_or(MediaType::Chat, media_type_of));
    if text.trim().is_empty() && media_url.is_none() {
        return Err(ExternalError::bad_request("body is a required field"));
    }
    checks.text_at_most("body", &text, MAX_TEXT);
    let external_key = checks.optional_text("externalKey", body.external_key.as_deref(), 255);
    checks.done()?;
    let file_name = match media_type {
        MediaType::Document => file_name.or_else(|| media_url.as_deref().and_then(file_name_of)),
        _ => None,
    };
    let cmd = SendMessage {
        body: text,
        media_type,
        media_url,
        external_key,
        file_name,
        ..SendMessage::to(to)
    };
    enqueue(state, config, cmd).await
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
