//! The Graph API client of the Cloud API channel: sending a message
//! (`POST /{version}/{phone-number-id}/messages`), resolving and downloading media
//! (`GET /{version}/{media-id}`, then its short-lived URL with the same bearer token), and
//! Meta's errors sorted into transient (retry) and permanent (fail the message).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::delivery::ssrf::{self, TargetPolicy};
use crate::domain::{ContactCard, Location, MediaType};

/// Meta's Graph API, the default `graphBaseUrl`.
pub const DEFAULT_BASE_URL: &str = "https://graph.facebook.com";
/// The default Graph API version.
pub const DEFAULT_VERSION: &str = "v25.0";

/// Where and as whom a connection talks to the Graph API.
#[derive(Debug, Clone)]
pub struct GraphTarget {
    /// e.g. `https://graph.facebook.com`, no trailing slash needed.
    pub base_url: String,
    /// e.g. `v25.0`.
    pub version: String,
    pub phone_number_id: String,
    pub access_token: String,
}

/// Who receives an outbound message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum To {
    /// A phone number, digits with country code.
    Phone(String),
    /// A business-scoped user id (`BR.…`), for users known without a phone number.
    UserId(String),
}

/// What an outbound message carries.
#[derive(Debug, Clone, PartialEq)]
pub enum Outbound {
    /// `preview_url` is set when the body has a link.
    Text { body: String },
    /// Media by `link`, with caption (not for audio and sticker) and filename (documents).
    Media {
        media_type: MediaType,
        link: String,
        caption: Option<String>,
        filename: Option<String>,
    },
    /// `{name, language: {code}, components?}` as the Cloud API takes it.
    Template {
        name: String,
        language: String,
        components: Option<Value>,
    },
    /// A reaction to `message_id`; an empty emoji removes ours.
    Reaction { message_id: String, emoji: String },
    /// A location pin: `{latitude, longitude, name?, address?}`.
    Location(Location),
    /// Contact cards: `[{name: {formatted_name, first_name}, phones: [{phone, wa_id?}]}]`.
    Contacts(Vec<ContactCard>),
    /// A Cloud API message object sent as it is (`type`, its part, `context`, …) inside
    /// zaphook's envelope: its own `messaging_product`, `recipient_type`, `to` and
    /// `recipient` never reach Meta.
    Raw(Map<String, Value>),
}

/// The keys of a message's envelope: zaphook's, whatever a raw message object says.
pub const ENVELOPE_KEYS: &[&str] = &["messaging_product", "recipient_type", "to", "recipient"];

/// The Cloud API `location` object of a pin.
pub fn location_part(location: &Location) -> Map<String, Value> {
    let mut part = Map::new();
    part.insert("latitude".into(), json!(location.latitude));
    part.insert("longitude".into(), json!(location.longitude));
    if let Some(name) = location.name.as_deref().filter(|n| !n.is_empty()) {
        part.insert("name".into(), name.into());
    }
    if let Some(address) = location.address.as_deref().filter(|a| !a.is_empty()) {
        part.insert("address".into(), address.into());
    }
    part
}

/// The Cloud API `contacts` array of some cards. `first_name` repeats the name: Meta's
/// reference asks for at least one name part besides `formatted_name`.
pub fn contacts_part(cards: &[ContactCard]) -> Value {
    let cards: Vec<Value> = cards
        .iter()
        .map(|card| {
            let mut phone = Map::new();
            phone.insert("phone".into(), card.phone.as_str().into());
            if let Some(wa_id) = &card.wa_id {
                phone.insert("wa_id".into(), wa_id.as_str().into());
            }
            json!({
                "name": {"formatted_name": card.name, "first_name": card.name},
                "phones": [phone],
            })
        })
        .collect();
    Value::Array(cards)
}

#[derive(Debug, Clone, PartialEq)]
pub struct OutboundMessage {
    pub to: To,
    pub content: Outbound,
    /// `context.message_id`: the message this one replies to.
    pub reply_to: Option<String>,
}

/// Whether trying the same request again later can succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// 5xx, 429, network errors and timeouts, throttling (4, 80007, 130429, 131056), Meta's
    /// temporary failures (1, 2, 131000, 131016), a sha256 mismatch: retry with backoff.
    Transient,
    /// Everything else (131047 outside the 24-hour window, 131026, 131051, 190, 368, 4xx):
    /// fail the message, do not retry.
    Permanent,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{title}")]
pub struct GraphError {
    pub kind: ErrorKind,
    /// Meta's `error.code`, when the answer had one.
    pub code: Option<i64>,
    /// A short human text: Meta's `error.message` / `error_data.details`, or what went wrong
    /// on the way (`connect: …`, `timeout`, `sha256 mismatch`, `media larger than …`).
    pub title: String,
    pub http_status: Option<u16>,
    /// Meta refused the access token (code 190 or HTTP 401): the connection needs a new one.
    pub token_refused: bool,
}

/// Downloaded media.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    pub bytes: Vec<u8>,
    pub mime_type: Option<String>,
    /// Lowercase hex SHA-256 of `bytes`.
    pub sha256_hex: String,
}

/// Most bytes of a Graph answer (a send result, a media lookup, an error) read; media
/// downloads have their own limit.
const ANSWER_LIMIT: usize = 64 * 1024;

/// Longest title kept from a peer's text, so a chatty error page cannot bloat the log.
const TITLE_LIMIT: usize = 300;

/// Meta error codes that a later retry can get past: throttling (4, 80007, 130429, 131056),
/// temporary failures on Meta's side (1, 2, 131000, 131016).
const TRANSIENT_CODES: &[i64] = &[1, 2, 4, 80007, 130429, 131000, 131016, 131056];

/// Re-engagement: the customer wrote last more than 24 hours ago.
const OUTSIDE_WINDOW: i64 = 131047;
/// Invalid or expired access token.
const INVALID_TOKEN: i64 = 190;

#[derive(Clone)]
pub struct GraphClient {
    client: reqwest::Client,
    targets: TargetPolicy,
}

impl GraphClient {
    /// A client whose requests (Graph calls and media downloads) never reach addresses the
    /// policy refuses, follow no redirects and give up after `timeout`.
    pub fn new(targets: &TargetPolicy, timeout: Duration) -> Result<Self, reqwest::Error> {
        let resolver = ssrf::GuardedResolver {
            policy: targets.clone(),
            lookup: ssrf::system_lookup(),
        };
        let client = reqwest::Client::builder()
            .user_agent(concat!("zaphook/", env!("CARGO_PKG_VERSION")))
            // A redirect would carry the bearer token to wherever the answer points.
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(Duration::from_secs(5))
            .timeout(timeout)
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(30))
            .dns_resolver(Arc::new(resolver))
            .build()?;
        Ok(GraphClient {
            client,
            targets: targets.clone(),
        })
    }

    /// Sends a message; answers Meta's id of it (`messages[0].id`).
    pub async fn send(
        &self,
        target: &GraphTarget,
        message: &OutboundMessage,
    ) -> Result<String, GraphError> {
        let url = graph_url(target, &[&target.phone_number_id, "messages"])?;
        let body = message_body(message)?;
        self.targets
            .check_literal(&url)
            .map_err(GraphError::permanent)?;
        // A 2xx whose answer broke off may or may not have sent the message; Meta keeps no
        // idempotency key for us, so this is a retry like any network error.
        let request = self
            .client
            .post(url)
            .bearer_auth(&target.access_token)
            .header("content-type", "application/json")
            .body(body.to_string());
        let (status, answer) = call(request).await?;
        serde_json::from_slice::<Value>(&answer)
            .ok()
            .and_then(|v| v["messages"][0]["id"].as_str().map(str::to_string))
            .filter(|id| !id.is_empty())
            .ok_or_else(|| GraphError {
                http_status: Some(status),
                ..GraphError::transient("answer without a message id")
            })
    }

    /// Resolves `media_id` to its URL and downloads it with the same token: at most `limit`
    /// bytes, its SHA-256 checked against `expected_sha256` (base64, as in the callback) when
    /// given.
    pub async fn download_media(
        &self,
        target: &GraphTarget,
        media_id: &str,
        expected_sha256: Option<&str>,
        limit: usize,
    ) -> Result<Media, GraphError> {
        let mut expected = Vec::new();
        if let Some(text) = expected_sha256 {
            expected.push(parse_digest(text).ok_or_else(|| {
                GraphError::permanent(format!(
                    "expected sha256 {:?} is not a SHA-256 digest",
                    clip(text)
                ))
            })?);
        }

        let lookup_url = graph_url(target, &[media_id])?;
        self.targets
            .check_literal(&lookup_url)
            .map_err(GraphError::permanent)?;
        let request = self
            .client
            .get(lookup_url)
            .bearer_auth(&target.access_token);
        let (_, answer) = call(request).await?;
        // The URL is short-lived, so a lookup answer we cannot use is worth another lookup.
        let info: Value = serde_json::from_slice(&answer)
            .map_err(|_| GraphError::transient("media lookup answer is not JSON"))?;
        let url = info["url"]
            .as_str()
            .and_then(|u| reqwest::Url::parse(u).ok())
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| GraphError::transient("media lookup answer without a usable url"))?;
        let file_size = match &info["file_size"] {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim().parse::<u64>().ok(),
            _ => None,
        };
        if file_size.is_some_and(|size| size > limit as u64) {
            return Err(too_large(limit));
        }
        // Meta's lookup has its own digest of the file (hex or base64); it must agree too.
        if let Some(text) = info["sha256"].as_str() {
            match parse_digest(text) {
                Some(digest) => expected.push(digest),
                None => tracing::debug!(media_id, "media lookup sha256 is not a digest"),
            }
        }
        let lookup_mime = info["mime_type"]
            .as_str()
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .map(str::to_string);

        self.targets
            .check_literal(&url)
            .map_err(GraphError::permanent)?;
        let mut response = self
            .client
            .get(url)
            .bearer_auth(&target.access_token)
            .send()
            .await
            .map_err(transport_error)?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            let answer = read_limited(&mut response, ANSWER_LIMIT)
                .await
                .unwrap_or_default();
            return Err(classify(status, &answer));
        }
        if response
            .content_length()
            .is_some_and(|length| length > limit as u64)
        {
            return Err(too_large(limit));
        }
        let header_mime = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .map(str::to_string);
        // Reserve what Meta announced, but never more than the caller allows.
        let announced = file_size.or(response.content_length()).unwrap_or(0);
        let mut bytes = Vec::with_capacity(announced.min(limit as u64) as usize);
        let mut hasher = Sha256::new();
        while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
            if bytes.len() + chunk.len() > limit {
                return Err(too_large(limit));
            }
            hasher.update(&chunk);
            bytes.extend_from_slice(&chunk);
        }
        let digest: [u8; 32] = hasher.finalize().into();
        if expected.iter().any(|e| *e != digest) {
            // A download cut or altered on the way is worth another try; the caller bounds
            // how many.
            return Err(GraphError::transient("sha256 mismatch"));
        }
        Ok(Media {
            bytes,
            mime_type: lookup_mime.or(header_mime),
            sha256_hex: hex(&digest),
        })
    }
}

impl GraphError {
    fn transient(title: impl Into<String>) -> Self {
        GraphError {
            kind: ErrorKind::Transient,
            code: None,
            title: title.into(),
            http_status: None,
            token_refused: false,
        }
    }

    fn permanent(title: impl Into<String>) -> Self {
        GraphError {
            kind: ErrorKind::Permanent,
            ..GraphError::transient(title)
        }
    }
}

fn too_large(limit: usize) -> GraphError {
    GraphError::permanent(format!("media larger than {limit} bytes"))
}

/// `{base_url}/{segments…}` with every segment percent-encoded, so an id cannot change the
/// path or add a query.
fn graph_url(target: &GraphTarget, tail: &[&str]) -> Result<reqwest::Url, GraphError> {
    let invalid = || {
        GraphError::permanent(format!(
            "invalid graph base url {:?}",
            clip(&target.base_url)
        ))
    };
    let mut url = reqwest::Url::parse(target.base_url.trim()).map_err(|_| invalid())?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid());
    }
    url.set_query(None);
    url.set_fragment(None);
    {
        let mut segments = url.path_segments_mut().map_err(|_| invalid())?;
        segments.pop_if_empty();
        segments.push(&target.version);
        segments.extend(tail);
    }
    Ok(url)
}

/// The JSON body of `POST /{phone-number-id}/messages` for `message`.
fn message_body(message: &OutboundMessage) -> Result<Value, GraphError> {
    let mut body = Map::new();
    if let Outbound::Raw(raw) = &message.content {
        let kind = raw.get("type").and_then(Value::as_str).unwrap_or_default();
        if kind.is_empty() || raw.get(kind).is_none_or(Value::is_null) {
            return Err(GraphError::permanent(
                "the message object has no type, or no part of that type",
            ));
        }
        body.extend(
            raw.iter()
                .filter(|(key, _)| !ENVELOPE_KEYS.contains(&key.as_str()))
                .map(|(key, value)| (key.clone(), value.clone())),
        );
    }
    body.insert("messaging_product".into(), "whatsapp".into());
    body.insert("recipient_type".into(), "individual".into());
    match &message.to {
        To::Phone(digits) => {
            body.insert("to".into(), digits.as_str().into());
        }
        // Meta addresses a business-scoped user id (`CC.…`, or a parent `CC.ENT.…`) in its own
        // `recipient` field instead of `to`; when both are present `to` wins, so `to` is left
        // out. Error 131062 answers a message type that cannot go to a BSUID (e.g. some
        // authentication templates). Sources: Meta, "Business-scoped user IDs"
        // (developers.facebook.com/documentation/business-messaging/whatsapp/business-scoped-user-ids/,
        // updated 2026-03-31) and dualhook.com/docs/contacts-bsuid-api-changes.
        To::UserId(bsuid) => {
            body.insert("recipient".into(), bsuid.as_str().into());
        }
    }
    if let Some(id) = &message.reply_to {
        body.insert("context".into(), json!({ "message_id": id }));
    }
    let (kind, content) = match &message.content {
        Outbound::Text { body } => (
            "text",
            json!({ "body": body, "preview_url": has_link(body) }),
        ),
        Outbound::Media {
            media_type,
            link,
            caption,
            filename,
        } => {
            let (kind, captioned) = match media_type {
                MediaType::Image => ("image", true),
                MediaType::Video => ("video", true),
                MediaType::Document => ("document", true),
                MediaType::Audio => ("audio", false),
                MediaType::Sticker => ("sticker", false),
                other => {
                    return Err(GraphError::permanent(format!(
                        "{other} cannot be sent as media"
                    )));
                }
            };
            let mut media = Map::new();
            media.insert("link".into(), link.as_str().into());
            if let Some(caption) = caption.as_deref().filter(|c| captioned && !c.is_empty()) {
                media.insert("caption".into(), caption.into());
            }
            if let Some(name) = filename
                .as_deref()
                .filter(|n| kind == "document" && !n.is_empty())
            {
                media.insert("filename".into(), name.into());
            }
            (kind, Value::Object(media))
        }
        Outbound::Template {
            name,
            language,
            components,
        } => {
            let mut template = Map::new();
            template.insert("name".into(), name.as_str().into());
            template.insert("language".into(), json!({ "code": language }));
            if let Some(components) = components.as_ref().filter(|c| !c.is_null()) {
                template.insert("components".into(), components.clone());
            }
            ("template", Value::Object(template))
        }
        Outbound::Reaction { message_id, emoji } => (
            "reaction",
            json!({ "message_id": message_id, "emoji": emoji }),
        ),
        Outbound::Location(location) => ("location", Value::Object(location_part(location))),
        Outbound::Contacts(cards) => ("contacts", contacts_part(cards)),
        // Its type and part are in the body already.
        Outbound::Raw(_) => return Ok(Value::Object(body)),
    };
    body.insert("type".into(), kind.into());
    body.insert(kind.into(), content);
    Ok(Value::Object(body))
}

/// Whether WhatsApp would render a link preview for `body`: it looks for URLs that start
/// with `http://` or `https://`.
fn has_link(body: &str) -> bool {
    let lower = body.to_ascii_lowercase();
    lower.contains("http://") || lower.contains("https://")
}

/// Sorts a non-2xx answer (`{"error": {message, type, code, error_subcode, error_data:
/// {details}, fbtrace_id}}`, or anything else) into a [`GraphError`].
fn classify(status: u16, body: &[u8]) -> GraphError {
    let parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let error = &parsed["error"];
    let code = error["code"].as_i64();
    let text = |v: &Value| {
        v.as_str()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let meta_title = text(&error["error_data"]["details"]).or_else(|| text(&error["message"]));
    if code.is_some() || meta_title.is_some() {
        // fbtrace_id is what Meta's support asks for; it does not belong in the title.
        tracing::debug!(
            status,
            code,
            subcode = error["error_subcode"].as_i64(),
            r#type = error["type"].as_str(),
            fbtrace_id = error["fbtrace_id"].as_str(),
            "graph api error"
        );
    }
    let mut title = meta_title.unwrap_or_else(|| format!("HTTP {status}"));
    if code == Some(OUTSIDE_WINDOW) {
        title = format!(
            "a template message is needed outside the 24-hour customer service window ({title})"
        );
    }
    let transient =
        status >= 500 || status == 429 || code.is_some_and(|c| TRANSIENT_CODES.contains(&c));
    GraphError {
        kind: if transient {
            ErrorKind::Transient
        } else {
            ErrorKind::Permanent
        },
        code,
        title: clip(&title),
        http_status: Some(status),
        token_refused: code == Some(INVALID_TOKEN) || status == 401,
    }
}

/// A transport error: a retry may get through, except when our own policy refused the
/// address (that answer will not change).
fn transport_error(e: reqwest::Error) -> GraphError {
    let text = crate::delivery::http::describe(e);
    // The guarded resolver's refusals end with "(refused)" (see ssrf.rs).
    let refused = text.contains("(refused)");
    let title = clip(&text);
    if refused {
        GraphError::permanent(title)
    } else {
        GraphError::transient(title)
    }
}

/// Sends a Graph call and reads its answer (at most `ANSWER_LIMIT` bytes); an answer that is
/// not a 2xx is Meta's error.
async fn call(request: reqwest::RequestBuilder) -> Result<(u16, Vec<u8>), GraphError> {
    let mut response = request.send().await.map_err(transport_error)?;
    let status = response.status().as_u16();
    let answer = read_limited(&mut response, ANSWER_LIMIT)
        .await
        .map_err(transport_error)?;
    if !(200..300).contains(&status) {
        return Err(classify(status, &answer));
    }
    Ok((status, answer))
}

/// Reads at most `limit` bytes of the answer; the rest stays unread.
async fn read_limited(
    response: &mut reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, reqwest::Error> {
    let mut body = Vec::new();
    while body.len() < limit {
        match response.chunk().await? {
            Some(chunk) => body.extend_from_slice(&chunk),
            None => break,
        }
    }
    body.truncate(limit);
    Ok(body)
}

/// A SHA-256 digest written in base64 (standard or URL-safe, as in Meta's callbacks) or
/// hex.
fn parse_digest(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        let mut out = [0u8; 32];
        for (i, pair) in text.as_bytes().chunks(2).enumerate() {
            let pair = std::str::from_utf8(pair).ok()?;
            out[i] = u8::from_str_radix(pair, 16).ok()?;
        }
        return Some(out);
    }
    let decoded = STANDARD
        .decode(text)
        .or_else(|_| URL_SAFE.decode(text))
        .or_else(|_| STANDARD_NO_PAD.decode(text))
        .or_else(|_| URL_SAFE_NO_PAD.decode(text))
        .ok()?;
    decoded.try_into().ok()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `text` cut to [`TITLE_LIMIT`] bytes at a character boundary.
fn clip(text: &str) -> String {
    if text.len() <= TITLE_LIMIT {
        return text.to_string();
    }
    let mut end = TITLE_LIMIT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn to_phone(content: Outbound) -> OutboundMessage {
        OutboundMessage {
            to: To::Phone("5511999990000".into()),
            content,
            reply_to: None,
        }
    }

    fn meta(code: i64, message: &str, details: Option<&str>) -> Vec<u8> {
        let mut error = json!({
            "message": message,
            "type": "OAuthException",
            "code": code,
            "fbtrace_id": "AbCdEf",
        });
        if let Some(details) = details {
            error["error_data"] = json!({ "messaging_product": "whatsapp", "details": details });
        }
        json!({ "error": error }).to_string().into_bytes()
    }

    #[test]
    fn a_text_body_has_the_envelope_and_a_preview_only_with_a_link() {
        let body = message_body(&to_phone(Outbound::Text {
            body: "hello".into(),
        }))
        .unwrap();
        assert_eq!(
            body,
            json!({
                "messaging_product": "whatsapp",
                "recipient_type": "individual",
                "to": "5511999990000",
                "type": "text",
                "text": { "body": "hello", "preview_url": false },
            })
        );
        let body = message_body(&to_phone(Outbound::Text {
            body: "see https://example.com/x".into(),
        }))
        .unwrap();
        assert_eq!(body["text"]["preview_url"], true);
    }

    #[test]
    fn links_are_found_by_their_scheme() {
        assert!(has_link("http://a.b"));
        assert!(has_link("go to HTTPS://A.B now"));
        assert!(!has_link("example.com"));
        assert!(!has_link("ftp://example.com"));
        assert!(!has_link("https:/broken"));
        assert!(!has_link(""));
    }

    #[test]
    fn media_bodies_keep_caption_and_filename_only_where_meta_takes_them() {
        let media = |media_type| {
            message_body(&to_phone(Outbound::Media {
                media_type,
                link: "https://cdn.example/f".into(),
                caption: Some("a caption".into()),
                filename: Some("f.pdf".into()),
            }))
            .unwrap()
        };
        assert_eq!(
            media(MediaType::Document)["document"],
            json!({"link": "https://cdn.example/f", "caption": "a caption", "filename": "f.pdf"})
        );
        for (media_type, kind) in [(MediaType::Image, "image"), (MediaType::Video, "video")] {
            let body = media(media_type);
            assert_eq!(body["type"], kind);
            assert_eq!(
                body[kind],
                json!({"link": "https://cdn.example/f", "caption": "a caption"})
            );
        }
        for (media_type, kind) in [(MediaType::Audio, "audio"), (MediaType::Sticker, "sticker")] {
            let body = media(media_type);
            assert_eq!(body["type"], kind);
            assert_eq!(body[kind], json!({"link": "https://cdn.example/f"}));
        }
        let err = message_body(&to_phone(Outbound::Media {
            media_type: MediaType::Location,
            link: "https://cdn.example/f".into(),
            caption: None,
            filename: None,
        }))
        .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Permanent);
    }

    #[test]
    fn template_reaction_context_and_bsuid_bodies() {
        let components = json!([{"type": "body", "parameters": [{"type": "text", "text": "Ana"}]}]);
        let body = message_body(&to_phone(Outbound::Template {
            name: "order_ready".into(),
            language: "pt_BR".into(),
            components: Some(components.clone()),
        }))
        .unwrap();
        assert_eq!(
            body["template"],
            json!({"name": "order_ready", "language": {"code": "pt_BR"}, "components": components})
        );
        let body = message_body(&to_phone(Outbound::Template {
            name: "hello_world".into(),
            language: "en_US".into(),
            components: None,
        }))
        .unwrap();
        assert_eq!(
            body["template"],
            json!({"name": "hello_world", "language": {"code": "en_US"}})
        );

        let body = message_body(&to_phone(Outbound::Reaction {
            message_id: "wamid.X".into(),
            emoji: "👍".into(),
        }))
        .unwrap();
        assert_eq!(body["type"], "reaction");
        assert_eq!(
            body["reaction"],
            json!({"message_id": "wamid.X", "emoji": "👍"})
        );

        let body = message_body(&OutboundMessage {
            to: To::UserId("BR.13491208655302741918".into()),
            content: Outbound::Text { body: "oi".into() },
            reply_to: Some("wamid.Y".into()),
        })
        .unwrap();
        assert_eq!(body["recipient"], "BR.13491208655302741918");
        assert!(body.get("to").is_none(), "to would take precedence: {body}");
        assert_eq!(body["context"], json!({"message_id": "wamid.Y"}));
    }

    #[test]
    fn location_and_contacts_bodies() {
        let body = message_body(&to_phone(Outbound::Location(Location {
            latitude: -23.5505,
            longitude: -46.6333,
            name: Some("Loja".into()),
            address: Some("Av. Paulista, 1000".into()),
        })))
        .unwrap();
        assert_eq!(
            body,
            json!({
                "messaging_product": "whatsapp",
                "recipient_type": "individual",
                "to": "5511999990000",
                "type": "location",
                "location": {"latitude": -23.5505, "longitude": -46.6333, "name": "Loja",
                             "address": "Av. Paulista, 1000"},
            })
        );
        let pin = message_body(&to_phone(Outbound::Location(Location {
            latitude: 0.0,
            longitude: 180.0,
            name: None,
            address: Some(String::new()),
        })))
        .unwrap();
        assert_eq!(
            pin["location"],
            json!({"latitude": 0.0, "longitude": 180.0})
        );

        let body = message_body(&to_phone(Outbound::Contacts(vec![
            ContactCard::new("Ana Souza", "+55 11 98765-4321"),
            ContactCard::new("Recepção", "ramal 20"),
        ])))
        .unwrap();
        assert_eq!(body["type"], "contacts");
        assert_eq!(
            body["contacts"],
            json!([
                {"name": {"formatted_name": "Ana Souza", "first_name": "Ana Souza"},
                 "phones": [{"phone": "+55 11 98765-4321", "wa_id": "5511987654321"}]},
                {"name": {"formatted_name": "Recepção", "first_name": "Recepção"},
                 "phones": [{"phone": "ramal 20"}]},
            ])
        );
    }

    #[test]
    fn a_raw_message_goes_inside_our_envelope() {
        let object = json!({
            "type": "interactive",
            "interactive": {"type": "button", "body": {"text": "Confirma?"},
                "action": {"buttons": [{"type": "reply", "reply": {"id": "s", "title": "Sim"}}]}},
            "biz_opaque_callback_data": "pedido-9",
            "to": "19999999999",
            "recipient": "US.1",
            "messaging_product": "other",
            "recipient_type": "group",
        });
        let raw = |o: &Value| Outbound::Raw(o.as_object().cloned().unwrap());
        let body = message_body(&to_phone(raw(&object))).unwrap();
        assert_eq!(
            body,
            json!({
                "messaging_product": "whatsapp",
                "recipient_type": "individual",
                "to": "5511999990000",
                "type": "interactive",
                "interactive": object["interactive"],
                "biz_opaque_callback_data": "pedido-9",
            })
        );
        let body = message_body(&OutboundMessage {
            to: To::UserId("BR.1502576394655843".into()),
            content: raw(&object),
            reply_to: Some("wamid.Q".into()),
        })
        .unwrap();
        assert_eq!(body["recipient"], "BR.1502576394655843");
        assert!(body.get("to").is_none(), "{body}");
        assert_eq!(body["context"], json!({"message_id": "wamid.Q"}));
        // A context of the object's own stays when zaphook has none.
        let replying = json!({"type": "text", "text": {"body": "oi"},
            "context": {"message_id": "wamid.R"}});
        let body = message_body(&to_phone(raw(&replying))).unwrap();
        assert_eq!(body["context"], json!({"message_id": "wamid.R"}));
        assert_eq!(body["text"], json!({"body": "oi"}));
        // One without a type or its part is never sent.
        for broken in [json!({"text": {"body": "oi"}}), json!({"type": "template"})] {
            let e = message_body(&to_phone(raw(&broken))).unwrap_err();
            assert_eq!(e.kind, ErrorKind::Permanent, "{broken}");
        }
    }

    #[test]
    fn graph_urls_encode_their_segments() {
        let target = GraphTarget {
            base_url: "https://graph.facebook.com/".into(),
            version: "v25.0".into(),
            phone_number_id: "1065".into(),
            access_token: "t".into(),
        };
        assert_eq!(
            graph_url(&target, &[&target.phone_number_id, "messages"])
                .unwrap()
                .as_str(),
            "https://graph.facebook.com/v25.0/1065/messages"
        );
        assert_eq!(
            graph_url(&target, &["../x?y"]).unwrap().as_str(),
            "https://graph.facebook.com/v25.0/..%2Fx%3Fy"
        );
        let bad = GraphTarget {
            base_url: "mailto:x@y".into(),
            ..target
        };
        assert_eq!(
            graph_url(&bad, &["m"]).unwrap_err().kind,
            ErrorKind::Permanent
        );
    }

    #[test]
    fn meta_errors_are_sorted_into_transient_and_permanent() {
        let transient = [
            (500, meta(131000, "Something went wrong", None)),
            (400, meta(130429, "Rate limit hit", None)),
            (400, meta(131056, "Pair rate limit hit", None)),
            (400, meta(4, "Application request limit reached", None)),
            (400, meta(80007, "Rate limit issues", None)),
            (503, meta(131016, "Service unavailable", None)),
            (400, meta(1, "An unknown error occurred", None)),
            (400, meta(2, "Service temporarily unavailable", None)),
            (502, b"<html>bad gateway</html>".to_vec()),
            (429, Vec::new()),
        ];
        for (status, body) in transient {
            let e = classify(status, &body);
            assert_eq!(e.kind, ErrorKind::Transient, "{status} {e:?}");
            assert_eq!(e.http_status, Some(status));
            assert!(!e.token_refused);
        }
        let permanent = [
            (400, meta(131026, "Message undeliverable", None)),
            (400, meta(131051, "Unsupported message type", None)),
            (
                403,
                meta(368, "Temporarily blocked for policies violations", None),
            ),
            (400, meta(100, "Invalid parameter", None)),
            (400, meta(131062, "BSUID recipients not supported", None)),
            (404, Vec::new()),
        ];
        for (status, body) in permanent {
            let e = classify(status, &body);
            assert_eq!(e.kind, ErrorKind::Permanent, "{status} {e:?}");
            assert!(!e.token_refused);
        }
    }

    #[test]
    fn titles_prefer_details_then_message_then_status() {
        let e = classify(
            400,
            &meta(100, "Invalid parameter", Some("Parameter 'to' is invalid")),
        );
        assert_eq!(e.title, "Parameter 'to' is invalid");
        assert_eq!(e.code, Some(100));
        assert_eq!(
            classify(400, &meta(100, "Invalid parameter", None)).title,
            "Invalid parameter"
        );
        let e = classify(502, b"not json");
        assert_eq!((e.title.as_str(), e.code), ("HTTP 502", None));
        let long = "x".repeat(5000);
        assert!(classify(400, &meta(100, &long, None)).title.len() < 400);
    }

    #[test]
    fn outside_the_window_says_a_template_is_needed() {
        let e = classify(
            400,
            &meta(
                131047,
                "Re-engagement message",
                Some("More than 24 hours have passed since the recipient last replied"),
            ),
        );
        assert_eq!(e.kind, ErrorKind::Permanent);
        assert_eq!(e.code, Some(131047));
        assert!(e.title.contains("template message"), "{}", e.title);
        assert!(
            e.title.contains("24-hour customer service window"),
            "{}",
            e.title
        );
    }

    #[test]
    fn a_refused_token_is_flagged() {
        let e = classify(401, &meta(190, "Error validating access token", None));
        assert!(e.token_refused);
        assert_eq!(e.kind, ErrorKind::Permanent);
        assert!(classify(400, &meta(190, "Invalid OAuth access token", None)).token_refused);
        assert!(classify(401, b"").token_refused);
        assert!(!classify(403, b"").token_refused);
    }

    #[test]
    fn digests_parse_from_base64_or_hex() {
        let digest: [u8; 32] = Sha256::digest(b"abc").into();
        let hex_text = hex(&digest);
        assert_eq!(
            hex_text,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(parse_digest(&hex_text), Some(digest));
        assert_eq!(parse_digest(&hex_text.to_uppercase()), Some(digest));
        assert_eq!(parse_digest(&STANDARD.encode(digest)), Some(digest));
        assert_eq!(parse_digest(&URL_SAFE_NO_PAD.encode(digest)), Some(digest));
        assert_eq!(parse_digest(&STANDARD.encode(b"short")), None);
        assert_eq!(parse_digest("not a digest!"), None);
    }
}
