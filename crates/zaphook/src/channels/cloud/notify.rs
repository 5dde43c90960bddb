//! Reading Meta's Cloud API callback bodies: every entry × change × message × status × echo
//! of one body becomes a `Notification`, in the order of the body. Pure: no I/O, no store.
//! Unknown fields are ignored, unknown message types become `MediaType::Unsupported` with the
//! original object kept, and malformed items are skipped with a reason; nothing panics.

use serde_json::{Map, Value};

use crate::domain::MediaType;

/// What one callback body reports.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Parsed {
    pub notifications: Vec<Notification>,
    /// Items that could not be read (a message without an id, a status without a status),
    /// each with a short reason. The rest of the body is still read.
    pub skipped: Vec<String>,
}

/// The body is not a Cloud API notification at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

#[derive(Debug, Clone, PartialEq)]
pub enum Notification {
    /// A user sent the business a message (field `messages`, `value.messages[]`).
    Message(CloudMessage),
    /// The business sent a message from the WhatsApp Business app of a coexistence number
    /// (field `smb_message_echoes`, `value.message_echoes[]`); `party` is the recipient.
    Echo(CloudMessage),
    /// A delivery status of a message the business sent (`value.statuses[]`).
    Status(CloudStatus),
}

/// The WhatsApp user on the other side of a conversation, as far as the body names them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Party {
    /// The phone number (`wa_id` / `from` / `to` / `recipient_id`), digits only; absent for a
    /// user known only by BSUID.
    pub wa_id: Option<String>,
    /// The business-scoped user id (`user_id`, `from_user_id`, `to_user_id`,
    /// `recipient_user_id`), like `BR.1502576394655843`.
    pub user_id: Option<String>,
    /// `profile.username`.
    pub username: Option<String>,
    /// `profile.name`.
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CloudMessage {
    /// `metadata.phone_number_id` of the change the message came in.
    pub phone_number_id: String,
    /// The `wamid…` id.
    pub id: String,
    /// `timestamp` (Unix seconds as a string) in milliseconds; 0 when absent or unreadable.
    pub timestamp_ms: i64,
    pub party: Party,
    /// `context.id`: the message this one replies to.
    pub context_id: Option<String>,
    pub content: Content,
    /// The original message object, as Meta sent it.
    pub raw: Value,
}

/// Media to fetch through the Graph API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaRef {
    pub id: String,
    pub mime_type: Option<String>,
    /// Base64 SHA-256 of the file, as Meta gives it.
    pub sha256: Option<String>,
    pub filename: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Content {
    /// Something that is filed as a message of the conversation.
    Message {
        media_type: MediaType,
        /// `messageBody`: the text, the caption, a location or contact card as text, the
        /// chosen reply's title, … (`""` if none).
        body: String,
        media: Option<MediaRef>,
    },
    /// A reaction to `target_id`; an empty emoji removes the reactor's reaction.
    Reaction { target_id: String, emoji: String },
    /// The sender edited `target_id`; its new content.
    Edit {
        target_id: String,
        media_type: MediaType,
        body: String,
    },
    /// The sender deleted `target_id` for everyone.
    Revoke { target_id: String },
    /// The user's BSUID changed (a `system` message of type `user_changed_user_id`); `party`
    /// of the message has the old identity, this the new one.
    UserIdChanged { new_user_id: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusKind {
    Sent,
    Delivered,
    Read,
    Played,
    Failed,
}

/// Why Meta failed a message: the first entry of `errors`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudError {
    pub code: i64,
    pub title: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CloudStatus {
    pub phone_number_id: String,
    /// The `wamid…` of the message the status is about.
    pub message_id: String,
    pub status: StatusKind,
    pub timestamp_ms: i64,
    /// `recipient_id` / `recipient_user_id`.
    pub recipient: Party,
    pub error: Option<CloudError>,
}

/// Reads a callback body (already verified by its signature).
///
/// Bodies built from peer content follow fixed formats, so integrators can rely on them:
/// - `location`: the lines `name`, `address` and `latitude,longitude` that are present,
///   joined by `\n` (coordinates as Meta wrote them).
/// - `contacts`: one line per card, `formatted_name: phone, phone` (just the name without
///   phones, just the phones without a name), joined by `\n`.
/// - `interactive` `button_reply` / `list_reply`: `title (id)`; `nfm_reply`: its
///   `response_json`, else its `body`.
/// - `button`: `text (payload)`.
///
/// In `title (id)` and `text (payload)` an empty half is left out with its brackets.
pub fn parse(body: &[u8]) -> Result<Parsed, ParseError> {
    // serde_json refuses nesting deeper than 128 levels, so no input can exhaust the stack
    // here or in the recursion of `content` below.
    let mut root: Value =
        serde_json::from_slice(body).map_err(|e| ParseError(format!("not JSON: {e}")))?;
    without_nul(&mut root);
    let Some(root) = root.as_object() else {
        return Err(ParseError("not a JSON object".into()));
    };
    match root.get("object") {
        Some(Value::String(o)) if o == "whatsapp_business_account" => {}
        Some(other) => {
            return Err(ParseError(format!(
                "object is {}, not \"whatsapp_business_account\"",
                clip(&other.to_string())
            )));
        }
        None => return Err(ParseError("no \"object\"".into())),
    }

    let mut out = Parsed::default();
    for (e, entry) in list(root.get("entry"), "entry", &mut out.skipped)
        .iter()
        .enumerate()
    {
        let at = format!("entry[{e}]");
        let Some(entry) = entry.as_object() else {
            out.skipped.push(format!("{at}: not an object"));
            continue;
        };
        let changes = list(
            entry.get("changes"),
            &format!("{at}.changes"),
            &mut out.skipped,
        );
        for (c, change) in changes.iter().enumerate() {
            read_change(change, &format!("{at}.changes[{c}]"), &mut out);
        }
    }
    Ok(out)
}

/// Where the other party's identifiers sit in a message object.
#[derive(Clone, Copy)]
enum Side {
    /// A user's message: they are the sender.
    Sender,
    /// An echo of the business's own message: the customer is the recipient.
    Recipient,
}

impl Side {
    fn keys(self) -> (&'static str, &'static str) {
        match self {
            Side::Sender => ("from", "from_user_id"),
            Side::Recipient => ("to", "to_user_id"),
        }
    }
}

/// A `value.contacts[]` entry.
#[derive(Debug, Default, Clone)]
struct Contact {
    wa_id: Option<String>,
    user_id: Option<String>,
    username: Option<String>,
    name: Option<String>,
}

fn read_change(change: &Value, at: &str, out: &mut Parsed) {
    let Some(change) = change.as_object() else {
        out.skipped.push(format!("{at}: not an object"));
        return;
    };
    let Some(field) = change.get("field").and_then(Value::as_str) else {
        out.skipped.push(format!("{at}: no field"));
        return;
    };
    let side = match field {
        "messages" => Side::Sender,
        "smb_message_echoes" => Side::Recipient,
        // Account, template, quality, … updates are not conversation events.
        _ => return,
    };
    let Some(value) = change.get("value").and_then(Value::as_object) else {
        out.skipped
            .push(format!("{at}: {field} without a value object"));
        return;
    };
    // Without it the notification cannot be tied to a connection.
    let Some(phone_number_id) = value
        .get("metadata")
        .and_then(|m| m.get("phone_number_id"))
        .and_then(id_text)
    else {
        out.skipped
            .push(format!("{at}: no metadata.phone_number_id"));
        return;
    };

    let mut contacts = Vec::new();
    for (i, c) in list(
        value.get("contacts"),
        &format!("{at}.contacts"),
        &mut out.skipped,
    )
    .iter()
    .enumerate()
    {
        match read_contact(c) {
            Some(c) => contacts.push(c),
            None => out
                .skipped
                .push(format!("{at}.contacts[{i}]: not an object")),
        }
    }

    let (key, wrap): (&str, fn(CloudMessage) -> Notification) = match side {
        Side::Sender => ("messages", Notification::Message),
        Side::Recipient => ("message_echoes", Notification::Echo),
    };
    let messages = list(value.get(key), &format!("{at}.{key}"), &mut out.skipped);
    for (i, m) in messages.iter().enumerate() {
        match read_message(m, &phone_number_id, &contacts, side) {
            Ok(m) => out.notifications.push(wrap(m)),
            Err(why) => out.skipped.push(format!("{at}.{key}[{i}]: {why}")),
        }
    }

    if let Side::Sender = side {
        let statuses = list(
            value.get("statuses"),
            &format!("{at}.statuses"),
            &mut out.skipped,
        );
        for (i, s) in statuses.iter().enumerate() {
            match read_status(s, &phone_number_id, &contacts) {
                Ok(s) => out.notifications.push(Notification::Status(s)),
                Err(why) => out.skipped.push(format!("{at}.statuses[{i}]: {why}")),
            }
        }
    }
}

fn read_contact(c: &Value) -> Option<Contact> {
    let c = c.as_object()?;
    let profile = c.get("profile");
    Some(Contact {
        wa_id: digits(c.get("wa_id")),
        user_id: text(c.get("user_id")),
        username: text(profile.and_then(|p| p.get("username"))),
        name: text(profile.and_then(|p| p.get("name"))),
    })
}

fn read_message(
    m: &Value,
    phone_number_id: &str,
    contacts: &[Contact],
    side: Side,
) -> Result<CloudMessage, String> {
    let Some(obj) = m.as_object() else {
        return Err("not an object".into());
    };
    let Some(id) = text(obj.get("id")) else {
        return Err("message without id".into());
    };
    let content = content(obj).map_err(|why| format!("{}: {why}", clip(&id)))?;

    let (phone_key, user_key) = side.keys();
    let mut party = party(
        digits(obj.get(phone_key)),
        text(obj.get(user_key)),
        contacts,
    );
    if let (None, Content::UserIdChanged { .. }) = (&party.user_id, &content) {
        // System messages carry no contacts; the old BSUID is still named in the body.
        party.user_id = system_body(obj)
            .and_then(changed_from_to)
            .map(|(old, _)| old.to_string());
    }
    if party.wa_id.is_none() && party.user_id.is_none() {
        return Err(format!(
            "{}: neither a phone number nor a user id",
            clip(&id)
        ));
    }

    let context_id = context_id(obj).or_else(|| {
        // An edit's reply context sits on the edited message.
        obj.get("edit")
            .and_then(|e| e.get("message"))
            .and_then(Value::as_object)
            .and_then(context_id)
    });

    Ok(CloudMessage {
        phone_number_id: phone_number_id.to_string(),
        id,
        timestamp_ms: millis(obj.get("timestamp")),
        party,
        context_id,
        content,
        raw: m.clone(),
    })
}

fn context_id(obj: &Map<String, Value>) -> Option<String> {
    text(obj.get("context").and_then(|c| c.get("id")))
}

/// The party named by a phone number and/or a BSUID, completed from its contacts entry.
fn party(wa_id: Option<String>, user_id: Option<String>, contacts: &[Contact]) -> Party {
    let same = |mine: &Option<String>, theirs: &Option<String>| mine.is_some() && mine == theirs;
    let matched = contacts
        .iter()
        .find(|c| same(&wa_id, &c.wa_id) || same(&user_id, &c.user_id))
        .or_else(|| match contacts {
            // A lone contact is the party unless an identifier on both sides says otherwise.
            [only]
                if (wa_id.is_none() || only.wa_id.is_none())
                    && (user_id.is_none() || only.user_id.is_none()) =>
            {
                Some(only)
            }
            _ => None,
        })
        .cloned()
        .unwrap_or_default();
    Party {
        wa_id: wa_id.or(matched.wa_id),
        user_id: user_id.or(matched.user_id),
        username: matched.username,
        name: matched.name,
    }
}

/// Maps a message object's `type` and its same-named part to `Content`; `Err` is a reason
/// to skip the message.
pub(super) fn content(obj: &Map<String, Value>) -> Result<Content, String> {
    let kind = obj.get("type").and_then(Value::as_str).unwrap_or("");
    let part = obj.get(kind).and_then(Value::as_object);
    let field = |name: &str| part.and_then(|p| text(p.get(name)));
    let message = |media_type, body: String| Content::Message {
        media_type,
        body,
        media: None,
    };

    Ok(match kind {
        "text" => message(MediaType::Chat, field("body").unwrap_or_default()),
        "image" | "video" | "audio" | "voice" | "document" | "sticker" => {
            let media_type = match kind {
                "image" => MediaType::Image,
                "video" => MediaType::Video,
                "document" => MediaType::Document,
                "sticker" => MediaType::Sticker,
                _ => MediaType::Audio,
            };
            let media = field("id").map(|id| MediaRef {
                id,
                mime_type: field("mime_type"),
                sha256: field("sha256"),
                filename: if kind == "document" {
                    field("filename")
                } else {
                    None
                },
            });
            Content::Message {
                media_type,
                body: field("caption").unwrap_or_default(),
                media,
            }
        }
        "location" => message(MediaType::Location, part.map(location).unwrap_or_default()),
        "contacts" => message(MediaType::Contacts, contact_cards(obj.get("contacts"))),
        "interactive" => interactive(part),
        "button" => message(MediaType::Button, labelled(field("text"), field("payload"))),
        "reaction" => Content::Reaction {
            target_id: field("message_id").ok_or("reaction without message_id")?,
            emoji: field("emoji").unwrap_or_default(),
        },
        "edit" => {
            let target_id =
                field("original_message_id").ok_or("edit without original_message_id")?;
            let edited = part
                .and_then(|p| p.get("message"))
                .and_then(Value::as_object)
                .map(content);
            let (media_type, body) = match edited {
                Some(Ok(Content::Message {
                    media_type, body, ..
                })) if media_type != MediaType::Unsupported => (media_type, body),
                _ => (MediaType::Unsupported, String::new()),
            };
            Content::Edit {
                target_id,
                media_type,
                body,
            }
        }
        "revoke" => Content::Revoke {
            target_id: field("original_message_id").ok_or("revoke without original_message_id")?,
        },
        "system" if field("type").as_deref() == Some("user_changed_user_id") => {
            let new_user_id = field("user_id")
                .or_else(|| {
                    let (_, new) = changed_from_to(system_body(obj)?)?;
                    Some(new.to_string())
                })
                .ok_or("user_changed_user_id without the new user_id")?;
            Content::UserIdChanged { new_user_id }
        }
        "system" => message(MediaType::Unsupported, field("body").unwrap_or_default()),
        // `unsupported`, `unknown`, `order`, `request_welcome`, … are kept in `raw` only.
        _ => message(MediaType::Unsupported, String::new()),
    })
}

fn interactive(part: Option<&Map<String, Value>>) -> Content {
    let kind = part.and_then(|p| p.get("type")).and_then(Value::as_str);
    let reply = kind.and_then(|k| part.and_then(|p| p.get(k)));
    let field = |name: &str| text(reply.and_then(|r| r.get(name)));
    let body = match kind {
        Some("button_reply" | "list_reply") => labelled(field("title"), field("id")),
        Some("nfm_reply") => {
            match reply.and_then(|r| r.get("response_json")) {
                Some(Value::String(json)) if !json.is_empty() => json.clone(),
                // Meta documents a string, but an object reads the same once serialised.
                Some(json @ Value::Object(_)) => json.to_string(),
                _ => field("body").unwrap_or_default(),
            }
        }
        _ => {
            return Content::Message {
                media_type: MediaType::Unsupported,
                body: String::new(),
                media: None,
            };
        }
    };
    Content::Message {
        media_type: MediaType::Interactive,
        body,
        media: None,
    }
}

/// `label (key)`, dropping either half when it is absent.
fn labelled(label: Option<String>, key: Option<String>) -> String {
    match (label, key) {
        (Some(label), Some(key)) => format!("{label} ({key})"),
        (Some(one), None) | (None, Some(one)) => one,
        (None, None) => String::new(),
    }
}

pub(super) fn location(part: &Map<String, Value>) -> String {
    let mut lines: Vec<String> = ["name", "address"]
        .iter()
        .filter_map(|k| text(part.get(*k)))
        .collect();
    if let (Some(lat), Some(long)) = (
        coordinate(part.get("latitude")),
        coordinate(part.get("longitude")),
    ) {
        lines.push(format!("{lat},{long}"));
    }
    lines.join("\n")
}

fn coordinate(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        _ => None,
    }
}

pub(super) fn contact_cards(cards: Option<&Value>) -> String {
    let Some(Value::Array(cards)) = cards else {
        return String::new();
    };
    let lines: Vec<String> = cards
        .iter()
        .filter_map(|card| {
            let name = text(card.get("name").and_then(|n| n.get("formatted_name")));
            let phones: Vec<String> = match card.get("phones") {
                Some(Value::Array(phones)) => phones
                    .iter()
                    .filter_map(|p| text(p.get("phone")).or_else(|| text(p.get("wa_id"))))
                    .collect(),
                _ => Vec::new(),
            };
            match (name, phones.is_empty()) {
                (Some(name), false) => Some(format!("{name}: {}", phones.join(", "))),
                (Some(name), true) => Some(name),
                (None, false) => Some(phones.join(", ")),
                (None, true) => None,
            }
        })
        .collect();
    lines.join("\n")
}

fn system_body(obj: &Map<String, Value>) -> Option<&str> {
    obj.get("system")?.get("body")?.as_str()
}

/// The two identifiers of a system body "User NAME changed from OLD to NEW".
fn changed_from_to(body: &str) -> Option<(&str, &str)> {
    let (_, rest) = body.split_once(" changed from ")?;
    let (old, new) = rest.split_once(" to ")?;
    let (old, new) = (old.trim(), new.trim());
    let single = |s: &str| !s.is_empty() && !s.contains(char::is_whitespace);
    (single(old) && single(new)).then_some((old, new))
}

fn read_status(
    s: &Value,
    phone_number_id: &str,
    contacts: &[Contact],
) -> Result<CloudStatus, String> {
    let Some(obj) = s.as_object() else {
        return Err("not an object".into());
    };
    let Some(message_id) = text(obj.get("id")) else {
        return Err("status without id".into());
    };
    let status = match obj.get("status").and_then(Value::as_str) {
        Some("sent") => StatusKind::Sent,
        Some("delivered") => StatusKind::Delivered,
        Some("read") => StatusKind::Read,
        Some("played") => StatusKind::Played,
        Some("failed") => StatusKind::Failed,
        Some(other) => {
            return Err(format!(
                "{}: unknown status {:?}",
                clip(&message_id),
                clip(other)
            ));
        }
        None => return Err(format!("{}: status without status", clip(&message_id))),
    };
    let error = match obj.get("errors") {
        Some(Value::Array(errors)) => {
            errors
                .first()
                .and_then(Value::as_object)
                .map(|e| CloudError {
                    code: e.get("code").map(code).unwrap_or(0),
                    title: text(e.get("title"))
                        .or_else(|| text(e.get("message")))
                        .unwrap_or_default(),
                })
        }
        _ => None,
    };
    Ok(CloudStatus {
        phone_number_id: phone_number_id.to_string(),
        message_id,
        status,
        timestamp_ms: millis(obj.get("timestamp")),
        recipient: party(
            digits(obj.get("recipient_id")),
            text(obj.get("recipient_user_id")),
            contacts,
        ),
        error,
    })
}

/// The elements of an array field: absent or null is an empty list, another kind is noted.
fn list<'a>(v: Option<&'a Value>, what: &str, skipped: &mut Vec<String>) -> &'a [Value] {
    match v {
        Some(Value::Array(items)) => items,
        None | Some(Value::Null) => &[],
        Some(_) => {
            skipped.push(format!("{what}: not an array"));
            &[]
        }
    }
}

/// Replaces every NUL (`\u0000`, valid JSON) in the strings of `v` with U+FFFD: no text
/// column of PostgreSQL can hold one, and a customer's message must be stored whatever it
/// holds. A string is only rebuilt when it has one.
fn without_nul(v: &mut Value) {
    match v {
        Value::String(s) if s.contains('\0') => *s = s.replace('\0', "\u{FFFD}"),
        Value::Array(items) => items.iter_mut().for_each(without_nul),
        Value::Object(fields) => {
            // Keys are only compared with known names: one with a NUL matches none.
            fields.values_mut().for_each(without_nul);
        }
        _ => {}
    }
}

/// A non-empty string.
fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

/// An id Meta writes as a string, read as well from an integer.
fn id_text(v: &Value) -> Option<String> {
    match v {
        Value::Number(n) if n.is_u64() => Some(n.to_string()),
        v => text(Some(v)),
    }
}

/// A phone number as given, without a leading `+`, when it is digits only.
fn digits(v: Option<&Value>) -> Option<String> {
    let raw = id_text(v?)?;
    let number = raw.strip_prefix('+').unwrap_or(&raw);
    (!number.is_empty() && number.bytes().all(|b| b.is_ascii_digit())).then(|| number.to_string())
}

/// Unix seconds (a string, or a number) in milliseconds; 0 when absent or unreadable.
fn millis(v: Option<&Value>) -> i64 {
    let seconds = match v {
        Some(Value::String(s)) => s.trim().parse::<i64>().ok(),
        Some(Value::Number(n)) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite() && f.abs() < 1e15)
                .map(|f| f.trunc() as i64)
        }),
        _ => None,
    };
    seconds
        .filter(|s| *s >= 0)
        .and_then(|s| s.checked_mul(1000))
        .unwrap_or(0)
}

fn code(v: &Value) -> i64 {
    match v {
        Value::Number(n) => n.as_i64().unwrap_or(0),
        Value::String(s) => s.trim().parse().unwrap_or(0),
        _ => 0,
    }
}

/// Peer text quoted in a reason, cut short so a hostile body cannot bloat `skipped`.
fn clip(s: &str) -> &str {
    match s.char_indices().nth(64) {
        Some((end, _)) => s.get(..end).unwrap_or(s),
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const TEXT: &str = include_str!("../../../../../../shared/fixtures/whatsapp-cloud/text.json");
    const IMAGE: &str = include_str!("../../../../../../shared/fixtures/whatsapp-cloud/image.json");
    const REACTION: &str =
        include_str!("../../../../../../shared/fixtures/whatsapp-cloud/reaction.json");
    const STATUS_SENT: &str =
        include_str!("../../../../../../shared/fixtures/whatsapp-cloud/status-sent.json");

    const PNID: &str = "106540352242922";

    /// One body with one change of `field` whose value is `value` plus the metadata.
    fn body(field: &str, mut value: Value) -> Vec<u8> {
        value["messaging_product"] = json!("whatsapp");
        value["metadata"] = json!({"display_phone_number": "15550783881", "phone_number_id": PNID});
        let body = json!({
            "object": "whatsapp_business_account",
            "entry": [{"id": "102290129340398", "changes": [{"field": field, "value": value}]}]
        });
        body.to_string().into_bytes()
    }

    fn sheena() -> Value {
        json!([{"profile": {"name": "Sheena Nelson"}, "wa_id": "16505551234"}])
    }

    /// A message from Sheena with the given type-specific members.
    fn from_sheena(extra: Value) -> Vec<u8> {
        let mut m = json!({"from": "16505551234", "id": "wamid.M1", "timestamp": "1749416383"});
        if let (Some(m), Value::Object(extra)) = (m.as_object_mut(), extra) {
            m.extend(extra);
        }
        body("messages", json!({"contacts": sheena(), "messages": [m]}))
    }

    fn only(body: &[u8]) -> Notification {
        let parsed = parse(body).expect("parses");
        assert!(parsed.skipped.is_empty(), "skipped: {:?}", parsed.skipped);
        assert_eq!(parsed.notifications.len(), 1, "{parsed:?}");
        parsed.notifications.into_iter().next().expect("one")
    }

    fn message(n: Notification) -> CloudMessage {
        match n {
            Notification::Message(m) => m,
            other => panic!("not a message: {other:?}"),
        }
    }

    fn content_of(extra: Value) -> Content {
        message(only(&from_sheena(extra))).content
    }

    fn msg(media_type: MediaType, body: &str) -> Content {
        Content::Message {
            media_type,
            body: body.into(),
            media: None,
        }
    }

    #[test]
    fn fixture_text() {
        let m = message(only(TEXT.as_bytes()));
        assert_eq!(m.phone_number_id, PNID);
        assert_eq!(
            m.id,
            "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA="
        );
        assert_eq!(m.timestamp_ms, 1_749_416_383_000);
        assert_eq!(
            m.party,
            Party {
                wa_id: Some("16505551234".into()),
                user_id: None,
                username: None,
                name: Some("Sheena Nelson".into()),
            }
        );
        assert_eq!(m.context_id, None);
        assert_eq!(
            m.content,
            msg(MediaType::Chat, "Does it come in another color?")
        );
        assert_eq!(m.raw["text"]["body"], "Does it come in another color?");
    }

    #[test]
    fn a_nul_in_peer_text_is_replaced_not_refused() {
        let m = message(only(&from_sheena(json!({
            "type": "text",
            "text": {"body": "before\u{0}after"}
        }))));
        assert_eq!(m.content, msg(MediaType::Chat, "before\u{FFFD}after"));
        assert_eq!(m.raw["text"]["body"], "before\u{FFFD}after");
    }

    #[test]
    fn fixture_image() {
        let m = message(only(IMAGE.as_bytes()));
        assert_eq!(
            m.content,
            Content::Message {
                media_type: MediaType::Image,
                body: "Taj Mahal".into(),
                media: Some(MediaRef {
                    id: "1003383421387256".into(),
                    mime_type: Some("image/jpeg".into()),
                    sha256: Some("SfInY0gGKTsJlUWbwxC1k+FAD0FZHvzwfpvO0zX0GUI=".into()),
                    filename: None,
                }),
            }
        );
        assert_eq!(m.timestamp_ms, 1_749_416_496_000);
    }

    #[test]
    fn fixture_reaction() {
        let m = message(only(REACTION.as_bytes()));
        assert_eq!(
            m.content,
            Content::Reaction {
                target_id: "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=".into(),
                emoji: "👍".into(),
            }
        );
        assert_eq!(m.party.name.as_deref(), Some("Sheena Nelson"));
    }

    #[test]
    fn fixture_status_sent() {
        let Notification::Status(s) = only(STATUS_SENT.as_bytes()) else {
            panic!("not a status");
        };
        assert_eq!(
            s,
            CloudStatus {
                phone_number_id: PNID.into(),
                message_id: "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQUFERjg0NDEzNDdFODU3MUMxMAA=".into(),
                status: StatusKind::Sent,
                timestamp_ms: 1_750_030_073_000,
                recipient: Party {
                    wa_id: Some("16505551234".into()),
                    ..Party::default()
                },
                error: None,
            }
        );
    }

    #[test]
    fn entries_changes_and_items_keep_body_order() {
        let text = |id: &str| json!({"from": "16505551234", "id": id, "type": "text", "text": {"body": id}});
        let status = |id: &str| json!({"id": id, "status": "delivered", "timestamp": "1", "recipient_id": "16505551234"});
        let meta = json!({"phone_number_id": PNID});
        let body = json!({
            "object": "whatsapp_business_account",
            "entry": [
                {"changes": [
                    {"field": "messages", "value": {"metadata": meta, "messages": [text("a"), text("b")], "statuses": [status("c")]}},
                    {"field": "account_update", "value": {"event": "VERIFIED_ACCOUNT"}},
                    {"field": "messages", "value": {"metadata": {"phone_number_id": "2"}, "statuses": [status("d")]}}
                ]},
                {"changes": [
                    {"field": "smb_message_echoes", "value": {"metadata": meta, "message_echoes": [
                        {"from": "15550783881", "to": "16505551234", "id": "e", "type": "text", "text": {"body": "e"}}
                    ]}},
                    {"field": "messages", "value": {"metadata": meta, "messages": [text("f")]}}
                ]}
            ]
        });
        let parsed = parse(body.to_string().as_bytes()).expect("parses");
        assert!(parsed.skipped.is_empty(), "{:?}", parsed.skipped);
        let ids: Vec<(&str, &str)> = parsed
            .notifications
            .iter()
            .map(|n| match n {
                Notification::Message(m) => ("message", m.id.as_str()),
                Notification::Echo(m) => ("echo", m.id.as_str()),
                Notification::Status(s) => ("status", s.message_id.as_str()),
            })
            .collect();
        assert_eq!(
            ids,
            [
                ("message", "a"),
                ("message", "b"),
                ("status", "c"),
                ("status", "d"),
                ("echo", "e"),
                ("message", "f")
            ]
        );
        let Notification::Status(d) = &parsed.notifications[3] else {
            panic!("d is a status");
        };
        assert_eq!(d.phone_number_id, "2");
    }

    #[test]
    fn media_types() {
        let video = content_of(
            json!({"type": "video", "video": {"id": "v1", "mime_type": "video/mp4", "caption": "look"}}),
        );
        assert_eq!(
            video,
            Content::Message {
                media_type: MediaType::Video,
                body: "look".into(),
                media: Some(MediaRef {
                    id: "v1".into(),
                    mime_type: Some("video/mp4".into()),
                    sha256: None,
                    filename: None,
                }),
            }
        );
        let voice = content_of(
            json!({"type": "audio", "audio": {"id": "a1", "mime_type": "audio/ogg; codecs=opus", "sha256": "h", "voice": true}}),
        );
        assert_eq!(
            voice,
            Content::Message {
                media_type: MediaType::Audio,
                body: String::new(),
                media: Some(MediaRef {
                    id: "a1".into(),
                    mime_type: Some("audio/ogg; codecs=opus".into()),
                    sha256: Some("h".into()),
                    filename: None,
                }),
            }
        );
        let document = content_of(
            json!({"type": "document", "document": {"id": "d1", "mime_type": "application/pdf", "filename": "invoice.pdf", "caption": "March"}}),
        );
        assert_eq!(
            document,
            Content::Message {
                media_type: MediaType::Document,
                body: "March".into(),
                media: Some(MediaRef {
                    id: "d1".into(),
                    mime_type: Some("application/pdf".into()),
                    sha256: None,
                    filename: Some("invoice.pdf".into()),
                }),
            }
        );
        let sticker = content_of(
            json!({"type": "sticker", "sticker": {"id": "s1", "mime_type": "image/webp", "animated": false}}),
        );
        let Content::Message {
            media_type, media, ..
        } = sticker
        else {
            panic!("sticker is a message");
        };
        assert_eq!(media_type, MediaType::Sticker);
        assert_eq!(media.map(|m| m.id).as_deref(), Some("s1"));
    }

    #[test]
    fn media_without_id_is_still_a_message() {
        assert_eq!(
            content_of(
                json!({"type": "image", "image": {"caption": "lost", "mime_type": "image/jpeg"}})
            ),
            msg(MediaType::Image, "lost")
        );
        assert_eq!(
            content_of(json!({"type": "document"})),
            msg(MediaType::Document, "")
        );
    }

    #[test]
    fn location_body_is_name_address_coordinates() {
        let full = json!({"type": "location", "location": {
            "address": "1 Hacker Way, Menlo Park, CA 94025", "latitude": 37.483307,
            "longitude": -122.148981, "name": "Meta HQ", "url": "https://meta.com"}});
        assert_eq!(
            content_of(full),
            msg(
                MediaType::Location,
                "Meta HQ\n1 Hacker Way, Menlo Park, CA 94025\n37.483307,-122.148981"
            )
        );
        let pin =
            json!({"type": "location", "location": {"latitude": "-23.5", "longitude": "-46.6"}});
        assert_eq!(content_of(pin), msg(MediaType::Location, "-23.5,-46.6"));
    }

    #[test]
    fn contacts_body_lists_names_and_phones() {
        let cards = json!({"type": "contacts", "contacts": [
            {"name": {"formatted_name": "Barbara J. Johnson", "first_name": "Barbara"},
             "phones": [{"phone": "+1 (940) 555-1234", "type": "HOME"}, {"wa_id": "19175559999"}],
             "emails": [{"email": "bjohnson@example.com"}]},
            {"name": {"formatted_name": "No Phone"}},
            {"phones": [{"phone": "+55 11 5555-0000"}]},
            {"org": {"company": "nothing readable"}}
        ]});
        assert_eq!(
            content_of(cards),
            msg(
                MediaType::Contacts,
                "Barbara J. Johnson: +1 (940) 555-1234, 19175559999\nNo Phone\n+55 11 5555-0000"
            )
        );
    }

    #[test]
    fn interactive_replies_name_title_and_id() {
        let button = json!({"type": "interactive", "interactive": {"type": "button_reply",
            "button_reply": {"id": "btn-yes", "title": "Yes"}}});
        assert_eq!(
            content_of(button),
            msg(MediaType::Interactive, "Yes (btn-yes)")
        );
        let list = json!({"type": "interactive", "interactive": {"type": "list_reply",
            "list_reply": {"id": "row-2", "title": "Tuesday", "description": "2 pm"}}});
        assert_eq!(
            content_of(list),
            msg(MediaType::Interactive, "Tuesday (row-2)")
        );
        let flow = json!({"type": "interactive", "interactive": {"type": "nfm_reply",
            "nfm_reply": {"name": "flow", "body": "Sent", "response_json": "{\"flow_token\":\"t\"}"}}});
        assert_eq!(
            content_of(flow),
            msg(MediaType::Interactive, "{\"flow_token\":\"t\"}")
        );
        let flow_body = json!({"type": "interactive", "interactive": {"type": "nfm_reply",
            "nfm_reply": {"body": "Sent"}}});
        assert_eq!(content_of(flow_body), msg(MediaType::Interactive, "Sent"));
        let unknown =
            json!({"type": "interactive", "interactive": {"type": "call_permission_reply"}});
        assert_eq!(content_of(unknown), msg(MediaType::Unsupported, ""));
    }

    #[test]
    fn template_button_names_text_and_payload() {
        let button = json!({"type": "button", "button": {"payload": "STOP_PROMOS", "text": "Stop promotions"},
            "context": {"from": "15550783881", "id": "wamid.TEMPLATE"}});
        let m = message(only(&from_sheena(button)));
        assert_eq!(
            m.content,
            msg(MediaType::Button, "Stop promotions (STOP_PROMOS)")
        );
        assert_eq!(m.context_id.as_deref(), Some("wamid.TEMPLATE"));
    }

    #[test]
    fn context_id_on_any_message() {
        let reply = json!({"type": "text", "text": {"body": "this one"}, "context": {"from": "15550783881", "id": "wamid.ORIGINAL"}});
        let m = message(only(&from_sheena(reply)));
        assert_eq!(m.context_id.as_deref(), Some("wamid.ORIGINAL"));
    }

    #[test]
    fn reaction_removal_and_reaction_without_target() {
        assert_eq!(
            content_of(json!({"type": "reaction", "reaction": {"message_id": "wamid.T"}})),
            Content::Reaction {
                target_id: "wamid.T".into(),
                emoji: String::new()
            }
        );
        let parsed = parse(&from_sheena(
            json!({"type": "reaction", "reaction": {"emoji": "👍"}}),
        ))
        .expect("parses");
        assert!(parsed.notifications.is_empty());
        assert_eq!(parsed.skipped.len(), 1);
        assert!(
            parsed.skipped[0].contains("reaction without message_id"),
            "{:?}",
            parsed.skipped
        );
    }

    #[test]
    fn bsuid_only_user_has_no_phone_number() {
        let body = body(
            "messages",
            json!({
                "contacts": [{"profile": {"name": "Pablo", "username": "@pablo.m"}, "user_id": "BR.1502576394655843"}],
                "messages": [{"from_user_id": "BR.1502576394655843", "id": "wamid.B", "timestamp": "1760000000",
                              "type": "text", "text": {"body": "oi"}}]
            }),
        );
        let m = message(only(&body));
        assert_eq!(
            m.party,
            Party {
                wa_id: None,
                user_id: Some("BR.1502576394655843".into()),
                username: Some("@pablo.m".into()),
                name: Some("Pablo".into()),
            }
        );
    }

    #[test]
    fn sender_is_matched_to_its_contact() {
        let body = body(
            "messages",
            json!({
                "contacts": [
                    {"profile": {"name": "Ana"}, "wa_id": "5511911110000", "user_id": "BR.1"},
                    {"profile": {"name": "Bia", "username": "@bia"}, "wa_id": "5511922220000", "user_id": "BR.2"}
                ],
                "messages": [
                    {"from": "5511922220000", "id": "m1", "type": "text", "text": {"body": "by phone"}},
                    {"from_user_id": "BR.1", "id": "m2", "type": "text", "text": {"body": "by user id"}},
                    {"from": "5511933330000", "id": "m3", "type": "text", "text": {"body": "nobody listed"}}
                ]
            }),
        );
        let parsed = parse(&body).expect("parses");
        let parties: Vec<Party> = parsed
            .notifications
            .into_iter()
            .map(|n| message(n).party)
            .collect();
        assert_eq!(
            parties,
            [
                Party {
                    wa_id: Some("5511922220000".into()),
                    user_id: Some("BR.2".into()),
                    username: Some("@bia".into()),
                    name: Some("Bia".into()),
                },
                Party {
                    wa_id: Some("5511911110000".into()),
                    user_id: Some("BR.1".into()),
                    username: None,
                    name: Some("Ana".into()),
                },
                Party {
                    wa_id: Some("5511933330000".into()),
                    ..Party::default()
                },
            ]
        );
    }

    #[test]
    fn lone_contact_is_used_only_when_no_identifier_contradicts_it() {
        let with = |msg: Value, contact: Value| {
            message(only(&body(
                "messages",
                json!({"contacts": [contact], "messages": [msg]}),
            )))
            .party
        };
        let text = json!({"type": "text", "text": {"body": "x"}, "id": "m"});
        let mut phone_only = text.clone();
        phone_only["from"] = json!("5511900000000");
        let by_user = with(
            phone_only.clone(),
            json!({"profile": {"name": "Caio"}, "user_id": "BR.9"}),
        );
        assert_eq!(by_user.name.as_deref(), Some("Caio"));
        assert_eq!(by_user.user_id.as_deref(), Some("BR.9"));
        let other = with(
            phone_only,
            json!({"profile": {"name": "Someone else"}, "wa_id": "5511988888888"}),
        );
        assert_eq!(other.name, None);
        assert_eq!(other.wa_id.as_deref(), Some("5511900000000"));
    }

    #[test]
    fn phone_numbers_must_be_digits() {
        let body = body(
            "messages",
            json!({"messages": [
                {"from": "+16505551234", "id": "m1", "type": "text", "text": {"body": "plus"}},
                {"from": "not-a-number", "from_user_id": "US.7", "id": "m2", "type": "text", "text": {"body": "junk"}},
                {"from": "abc", "id": "m3", "type": "text", "text": {"body": "nobody"}}
            ]}),
        );
        let parsed = parse(&body).expect("parses");
        let parties: Vec<Party> = parsed
            .notifications
            .into_iter()
            .map(|n| message(n).party)
            .collect();
        assert_eq!(parties[0].wa_id.as_deref(), Some("16505551234"));
        assert_eq!(parties[1].wa_id, None);
        assert_eq!(parties[1].user_id.as_deref(), Some("US.7"));
        assert_eq!(parties.len(), 2);
        assert_eq!(parsed.skipped.len(), 1);
        assert!(parsed.skipped[0].contains("neither a phone number nor a user id"));
    }

    #[test]
    fn echo_party_is_the_recipient() {
        let body = body(
            "smb_message_echoes",
            json!({"message_echoes": [{
            "from": "15550783881", "to": "+16505551234", "to_user_id": "US.13491208655302741918",
            "id": "wamid.ECHO", "timestamp": "1739321024", "type": "text",
            "text": {"body": "Here's the info you requested!"}}]}),
        );
        let Notification::Echo(m) = only(&body) else {
            panic!("not an echo");
        };
        assert_eq!(m.party.wa_id.as_deref(), Some("16505551234"));
        assert_eq!(m.party.user_id.as_deref(), Some("US.13491208655302741918"));
        assert_eq!(
            m.content,
            msg(MediaType::Chat, "Here's the info you requested!")
        );
        assert_eq!(m.timestamp_ms, 1_739_321_024_000);
    }

    #[test]
    fn edit_carries_original_id_and_new_content() {
        let edit = json!({"type": "edit", "edit": {"original_message_id": "wamid.ORIG", "message": {
            "context": {"id": "wamid.CTX"}, "type": "image",
            "image": {"caption": "new caption", "mime_type": "image/jpeg", "sha256": "h", "id": "i1"}}}});
        let m = message(only(&from_sheena(edit)));
        assert_eq!(
            m.content,
            Content::Edit {
                target_id: "wamid.ORIG".into(),
                media_type: MediaType::Image,
                body: "new caption".into(),
            }
        );
        assert_eq!(m.context_id.as_deref(), Some("wamid.CTX"));
        let text = json!({"type": "edit", "edit": {"original_message_id": "wamid.ORIG",
            "message": {"type": "text", "text": {"body": "fixed typo"}}}});
        assert_eq!(
            content_of(text),
            Content::Edit {
                target_id: "wamid.ORIG".into(),
                media_type: MediaType::Chat,
                body: "fixed typo".into(),
            }
        );
    }

    #[test]
    fn edit_of_unsupported_content() {
        let unsupported = Content::Edit {
            target_id: "wamid.ORIG".into(),
            media_type: MediaType::Unsupported,
            body: String::new(),
        };
        for message in [
            json!({"type": "poll", "poll": {"name": "?"}}),
            json!({"type": "reaction", "reaction": {"message_id": "x", "emoji": "👍"}}),
            json!("not an object"),
        ] {
            let edit = json!({"type": "edit", "edit": {"original_message_id": "wamid.ORIG", "message": message}});
            assert_eq!(content_of(edit), unsupported);
        }
        assert_eq!(
            content_of(json!({"type": "edit", "edit": {"original_message_id": "wamid.ORIG"}})),
            unsupported
        );
        let parsed = parse(&from_sheena(
            json!({"type": "edit", "edit": {"message": {}}}),
        ))
        .expect("parses");
        assert!(parsed.notifications.is_empty());
        assert!(parsed.skipped[0].contains("edit without original_message_id"));
    }

    #[test]
    fn revoke_names_the_original() {
        assert_eq!(
            content_of(json!({"type": "revoke", "revoke": {"original_message_id": "wamid.GONE"}})),
            Content::Revoke {
                target_id: "wamid.GONE".into()
            }
        );
        let parsed = parse(&from_sheena(json!({"type": "revoke", "revoke": {}}))).expect("parses");
        assert!(parsed.skipped[0].contains("revoke without original_message_id"));
    }

    #[test]
    fn user_changed_user_id() {
        let body = body(
            "messages",
            json!({"messages": [{
            "from": "16505551234", "from_user_id": "US.OLD1", "id": "wamid.SYS", "timestamp": "1760000000",
            "type": "system", "system": {"body": "User Sheena Nelson changed from US.OLD1 to US.NEW2",
                "user_id": "US.NEW2", "type": "user_changed_user_id"}}]}),
        );
        let m = message(only(&body));
        assert_eq!(
            m.content,
            Content::UserIdChanged {
                new_user_id: "US.NEW2".into()
            }
        );
        assert_eq!(m.party.user_id.as_deref(), Some("US.OLD1"));
        assert_eq!(m.party.wa_id.as_deref(), Some("16505551234"));
    }

    #[test]
    fn user_changed_user_id_read_from_its_body() {
        // A username user: no phone number, no contacts, identities only in the body.
        let body = body(
            "messages",
            json!({"messages": [{
            "id": "wamid.SYS", "timestamp": "1760000000", "type": "system",
            "system": {"body": "User Pablo changed from BR.OLD to BR.NEW", "type": "user_changed_user_id"}}]}),
        );
        let m = message(only(&body));
        assert_eq!(
            m.content,
            Content::UserIdChanged {
                new_user_id: "BR.NEW".into()
            }
        );
        assert_eq!(m.party.user_id.as_deref(), Some("BR.OLD"));
        assert_eq!(m.party.wa_id, None);
        // With only the phone number given, the old BSUID still comes from the body.
        let with_phone = from_sheena(json!({"type": "system", "system": {
            "body": "User Sheena changed from US.A to US.B", "user_id": "US.B", "type": "user_changed_user_id"}}));
        let m = message(only(&with_phone));
        assert_eq!(m.party.user_id.as_deref(), Some("US.A"));
        assert_eq!(m.party.wa_id.as_deref(), Some("16505551234"));
        // Neither the system object nor its body names the new BSUID: skipped.
        let parsed = parse(&from_sheena(json!({"type": "system", "system": {
            "body": "something else", "type": "user_changed_user_id"}})))
        .expect("parses");
        assert!(parsed.notifications.is_empty());
        assert!(parsed.skipped[0].contains("without the new user_id"));
    }

    #[test]
    fn other_system_messages_are_unsupported_with_their_body() {
        let number = json!({"type": "system", "system": {
            "body": "User Sheena Nelson changed from 16505551234 to 12195555358",
            "wa_id": "12195555358", "type": "user_changed_number"}});
        assert_eq!(
            content_of(number),
            msg(
                MediaType::Unsupported,
                "User Sheena Nelson changed from 16505551234 to 12195555358"
            )
        );
    }

    #[test]
    fn unknown_types_are_unsupported_and_keep_raw() {
        for kind in ["unsupported", "unknown", "order", "request_welcome", "gif"] {
            let extra = json!({"type": kind, kind: {"anything": [1, 2]},
                "errors": [{"code": 131051, "title": "Message type unknown"}]});
            let m = message(only(&from_sheena(extra)));
            assert_eq!(m.content, msg(MediaType::Unsupported, ""), "{kind}");
            assert_eq!(m.raw["type"], kind);
            assert_eq!(m.raw[kind]["anything"][1], 2);
        }
        assert_eq!(content_of(json!({})), msg(MediaType::Unsupported, ""));
    }

    #[test]
    fn failed_status_with_errors() {
        let body = body(
            "messages",
            json!({"statuses": [
                {"id": "wamid.F", "status": "failed", "timestamp": "1750030073", "recipient_id": "16505551234",
                 "recipient_user_id": "US.5",
                 "errors": [{"code": 131047, "title": "Re-engagement message", "message": "Re-engagement message",
                             "error_data": {"details": "Message failed to send because more than 24 hours have passed"}},
                            {"code": 1, "title": "second"}]},
                {"id": "wamid.G", "status": "failed", "timestamp": 1750030074,
                 "errors": [{"code": "130472", "message": "User's number is part of an experiment"}]}
            ]}),
        );
        let parsed = parse(&body).expect("parses");
        assert!(parsed.skipped.is_empty(), "{:?}", parsed.skipped);
        let statuses: Vec<CloudStatus> = parsed
            .notifications
            .into_iter()
            .map(|n| match n {
                Notification::Status(s) => s,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(statuses[0].status, StatusKind::Failed);
        assert_eq!(
            statuses[0].error,
            Some(CloudError {
                code: 131047,
                title: "Re-engagement message".into()
            })
        );
        assert_eq!(
            statuses[0].recipient,
            Party {
                wa_id: Some("16505551234".into()),
                user_id: Some("US.5".into()),
                ..Party::default()
            }
        );
        assert_eq!(
            statuses[1].error,
            Some(CloudError {
                code: 130472,
                title: "User's number is part of an experiment".into()
            })
        );
        assert_eq!(statuses[1].timestamp_ms, 1_750_030_074_000);
        assert_eq!(statuses[1].recipient, Party::default());
    }

    #[test]
    fn status_kinds_and_unknown_statuses() {
        let status = |s: &str| json!({"id": format!("wamid.{s}"), "status": s, "timestamp": "1", "recipient_id": "1"});
        let body = body(
            "messages",
            json!({"statuses": [
                status("sent"), status("delivered"), status("read"), status("played"), status("deleted"),
                status("warning"), {"id": "wamid.none"}, {"status": "read"}
            ]}),
        );
        let parsed = parse(&body).expect("parses");
        let kinds: Vec<StatusKind> = parsed
            .notifications
            .iter()
            .filter_map(|n| match n {
                Notification::Status(s) => Some(s.status),
                _ => None,
            })
            .collect();
        use StatusKind::*;
        assert_eq!(kinds, [Sent, Delivered, Read, Played]);
        assert_eq!(parsed.skipped.len(), 4, "{:?}", parsed.skipped);
        assert!(parsed.skipped[0].contains("unknown status \"deleted\""));
    }

    #[test]
    fn unknown_fields_and_members_are_ignored() {
        let body = json!({
            "object": "whatsapp_business_account",
            "extra": {"ignored": true},
            "entry": [{"id": "1", "time": 1, "changes": [
                {"field": "account_update", "value": {"event": "VERIFIED_ACCOUNT"}},
                {"field": "message_template_status_update", "value": {"event": "APPROVED"}},
                {"field": "user_preferences", "value": "whatever"},
                {"field": "messages", "value": {"metadata": {"phone_number_id": PNID}, "new_member": [1],
                    "messages": [{"from": "1555", "id": "m", "type": "text", "text": {"body": "hi", "new": 1},
                                  "referral": {"source_type": "ad"}, "future": null}]}}
            ]}]
        });
        let m = message(only(body.to_string().as_bytes()));
        assert_eq!(m.content, msg(MediaType::Chat, "hi"));
    }

    #[test]
    fn malformed_items_are_skipped_and_the_rest_is_read() {
        let body = json!({
            "object": "whatsapp_business_account",
            "entry": [
                "not an entry",
                {"changes": {"not": "an array"}},
                {"changes": [
                    7,
                    {"value": {}},
                    {"field": "messages", "value": []},
                    {"field": "messages", "value": {"messages": [{"id": "no metadata"}]}},
                    {"field": "messages", "value": {"metadata": {"phone_number_id": PNID},
                        "contacts": [null, {"wa_id": 5511, "profile": "not an object"}],
                        "messages": [
                            null,
                            {"from": "1555", "type": "text", "text": {"body": "no id"}},
                            {"from": "1555", "id": "good", "timestamp": "soon", "type": "text", "text": {"body": "kept"}},
                            {"from": "1555", "id": "", "type": "text"}
                        ],
                        "statuses": "nope"}}
                ]}
            ]
        });
        let parsed = parse(body.to_string().as_bytes()).expect("parses");
        assert_eq!(parsed.notifications.len(), 1);
        let m = message(parsed.notifications.into_iter().next().expect("one"));
        assert_eq!(m.id, "good");
        assert_eq!(m.timestamp_ms, 0);
        assert_eq!(m.party.wa_id.as_deref(), Some("1555"));
        let expected = [
            "entry[0]: not an object",
            "entry[1].changes: not an array",
            "entry[2].changes[0]: not an object",
            "entry[2].changes[1]: no field",
            "entry[2].changes[2]: messages without a value object",
            "entry[2].changes[3]: no metadata.phone_number_id",
            "entry[2].changes[4].contacts[0]: not an object",
            "entry[2].changes[4].messages[0]: not an object",
            "entry[2].changes[4].messages[1]: message without id",
            "entry[2].changes[4].messages[3]: message without id",
            "entry[2].changes[4].statuses: not an array",
        ];
        assert_eq!(parsed.skipped, expected);
    }

    #[test]
    fn timestamps() {
        assert_eq!(millis(Some(&json!("1749416383"))), 1_749_416_383_000);
        assert_eq!(millis(Some(&json!(1749416383))), 1_749_416_383_000);
        assert_eq!(millis(Some(&json!(1749416383.9))), 1_749_416_383_000);
        assert_eq!(millis(Some(&json!(" 12 "))), 12_000);
        assert_eq!(millis(None), 0);
        assert_eq!(millis(Some(&json!("yesterday"))), 0);
        assert_eq!(millis(Some(&json!("-5"))), 0);
        assert_eq!(millis(Some(&json!(i64::MAX.to_string()))), 0);
        assert_eq!(millis(Some(&json!(u64::MAX))), 0);
        assert_eq!(millis(Some(&json!(1e300))), 0);
        assert_eq!(millis(Some(&json!(true))), 0);
    }

    #[test]
    fn not_a_notification_is_an_error() {
        assert!(parse(b"").is_err());
        assert!(parse(b"<html>").is_err());
        assert!(parse(b"{\"object\":").is_err());
        assert!(parse(&[0xff, 0xfe, 0x00]).is_err());
        assert!(parse(b"[]").is_err());
        assert!(parse(b"\"whatsapp_business_account\"").is_err());
        assert!(parse(b"{}").is_err());
        let page = parse(br#"{"object":"page","entry":[]}"#).expect_err("wrong object");
        assert!(page.0.contains("\"page\""), "{page}");
        assert!(parse(br#"{"object":null,"entry":[]}"#).is_err());
        assert!(parse(br#"{"object":"whatsapp_business_account"}"#).is_ok());
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = format!(
            "{{\"object\":\"whatsapp_business_account\",\"entry\":{}{}}}",
            "[".repeat(10_000),
            "]".repeat(10_000)
        );
        assert!(parse(deep.as_bytes()).is_err());
    }
}
