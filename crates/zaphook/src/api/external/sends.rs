//! The external API's rich sends, each `{number | ticketId, externalKey?, contents}` and
//! answered as `POST /` ("Message add queue"): `POST /location` (a pin), `POST /sendcontact`
//! (a contact card) and `POST /apioficial` (a Cloud API message object, sent as it is through
//! a Cloud API connection: templates, buttons, lists, …). `contents` may also come as a JSON
//! string, which is how a form (or an n8n expression) carries an object.

use axum::extract::State;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::messages::{enqueue, recipient};
use super::{Body, Caller, ExternalResult, id_field, text_field};
use crate::api::AppState;
use crate::api::error::Checks;
use crate::api::messages::{CONTACT_KEYS, LOCATION_KEYS, MAX_TEXT, check_contact, check_location};
use crate::channels::cloud::content;
use crate::domain::{ApiConfig, MediaType};
use crate::ingest::SendMessage;

/// Largest `contents` of `POST /apioficial`, as JSON: far above any message Meta takes.
const MAX_CLOUD_MESSAGE: usize = 64 * 1024;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContentsSend {
    #[serde(default, deserialize_with = "text_field")]
    number: Option<String>,
    #[serde(default, deserialize_with = "id_field")]
    ticket_id: Option<i64>,
    #[serde(default, deserialize_with = "text_field")]
    external_key: Option<String>,
    #[serde(default)]
    contents: Option<Value>,
}

/// A send's recipient and external key, checked, and its `contents` as an object (`None`,
/// with the failure in `checks`, when it is not one).
struct Opened {
    checks: Checks,
    send: SendMessage,
    contents: Option<Map<String, Value>>,
}

fn open(config: &ApiConfig, body: ContentsSend, shape: &str) -> ExternalResult<Opened> {
    let mut checks = Checks::default();
    let to = recipient(&mut checks, config, body.ticket_id, body.number.as_deref())?;
    let external_key = checks.optional_text("externalKey", body.external_key.as_deref(), 255);
    let contents = match body.contents {
        // A form carries the object as JSON text.
        Some(Value::String(text)) => {
            Some(serde_json::from_str::<Value>(&text).unwrap_or(Value::String(text)))
        }
        other => other,
    };
    let contents = match contents {
        Some(Value::Object(object)) => Some(object),
        None | Some(Value::Null) => {
            checks.fail("contents", format!("is a required field: {shape}"));
            None
        }
        Some(_) => {
            checks.fail("contents", format!("must be an object: {shape}"));
            None
        }
    };
    Ok(Opened {
        checks,
        send: SendMessage {
            external_key,
            ..SendMessage::to(to)
        },
        contents,
    })
}

/// The fields `keys` of `contents` read as a `T`; others are ignored, as WHAZING ignores
/// them (its `contents.type`, say).
fn fields<T: DeserializeOwned>(
    checks: &mut Checks,
    contents: &Map<String, Value>,
    keys: &[&str],
) -> Option<T> {
    let known: Map<String, Value> = contents
        .iter()
        .filter(|(key, _)| keys.contains(&key.as_str()))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    serde_json::from_value(Value::Object(known))
        .map_err(|e| checks.fail("contents", e.to_string()))
        .ok()
}

/// `POST /location`: `contents: {latitude, longitude, name?, address?}`.
pub async fn location(
    State(state): State<AppState>,
    Caller(config): Caller,
    Body(body): Body<ContentsSend>,
) -> ExternalResult<axum::Json<Value>> {
    let Opened {
        mut checks,
        mut send,
        contents,
    } = open(&config, body, "{latitude, longitude, name?, address?}")?;
    let pin = contents
        .and_then(|c| fields(&mut checks, &c, LOCATION_KEYS))
        .map(|l| check_location(&mut checks, "contents", l));
    checks.done()?;
    if let Some(pin) = pin {
        send.body = content::location_body(&pin);
        send.media_type = MediaType::Location;
        send.location = Some(pin);
    }
    enqueue(&state, &config, send).await
}

/// `POST /sendcontact`: `contents: {displayName, telephone}`, a contact card.
pub async fn send_contact(
    State(state): State<AppState>,
    Caller(config): Caller,
    Body(body): Body<ContentsSend>,
) -> ExternalResult<axum::Json<Value>> {
    let Opened {
        mut checks,
        mut send,
        contents,
    } = open(&config, body, "{displayName, telephone}")?;
    let card = contents
        .and_then(|c| fields(&mut checks, &c, CONTACT_KEYS))
        .map(|c| check_contact(&mut checks, "contents", c));
    checks.done()?;
    if let Some(card) = card {
        let cards = vec![card];
        send.body = content::contacts_body(&cards);
        send.media_type = MediaType::Contacts;
        send.contacts = Some(cards);
    }
    enqueue(&state, &config, send).await
}

/// `POST /apioficial`: `contents` is a Cloud API message object (`{type, <type>: {…}}`), or a
/// template written WHAZING's way (`{name, language, components}`), sent as it is through the
/// config's Cloud API connection; zaphook adds the envelope.
pub async fn api_oficial(
    State(state): State<AppState>,
    Caller(config): Caller,
    Body(body): Body<ContentsSend>,
) -> ExternalResult<axum::Json<Value>> {
    let Opened {
        mut checks,
        mut send,
        contents,
    } = open(
        &config,
        body,
        "a Cloud API message object, like {\"type\": \"interactive\", \"interactive\": {…}}",
    )?;
    let message = contents.map(content::template_shorthand).and_then(|c| {
        if serde_json::to_string(&c).map_or(0, |t| t.len()) > MAX_CLOUD_MESSAGE {
            checks.fail(
                "contents",
                format!("must be at most {} KiB of JSON", MAX_CLOUD_MESSAGE / 1024),
            );
            return None;
        }
        content::cloud_message(&c)
            .map_err(|r| checks.fail(&format!("contents.{}", r.key), r.message))
            .ok()
    });
    if let Some(m) = &message {
        checks.text_at_most("contents", &m.body, MAX_TEXT);
        if let Some(link) = &m.media_url {
            checks.url("contents.link", link);
        }
    }
    checks.done()?;
    if let Some(m) = message {
        send.body = m.body;
        send.media_type = m.media_type;
        send.media_url = m.media_url;
        send.cloud_message = Some(m.message);
    }
    enqueue(&state, &config, send).await
}
