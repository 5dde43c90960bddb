//! What zaphook files of a rich message it sends: its media type and `body`, read the way an
//! inbound message of that kind is read (`notify.rs`), so a location pin or a contact card
//! reads alike in both directions; and the checks of a Cloud API message object that an
//! integration sends as it is.

use serde_json::{Map, Value};

use super::graph::{self, ENVELOPE_KEYS};
use super::notify::{self, Content};
use crate::domain::{ContactCard, Location, MediaType};

/// The `body` of a location pin: the lines name, address and `latitude,longitude`.
pub fn location_body(location: &Location) -> String {
    notify::location(&graph::location_part(location))
}

/// The `body` of contact cards: a line `name: phone` per card.
pub fn contacts_body(cards: &[ContactCard]) -> String {
    notify::contact_cards(Some(&graph::contacts_part(cards)))
}

/// A Cloud API message object that can be sent as it is, and what zaphook files of it.
#[derive(Debug, Clone, PartialEq)]
pub struct CloudMessage {
    /// The object without envelope keys.
    pub message: Map<String, Value>,
    pub media_type: MediaType,
    pub body: String,
    /// The `link` of a media message.
    pub media_url: Option<String>,
}

/// Why a message object cannot be sent: the key at fault and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub key: String,
    pub message: String,
}

fn refuse(key: &str, message: impl Into<String>) -> Refusal {
    Refusal {
        key: key.to_string(),
        message: message.into(),
    }
}

/// A template as WHAZING's examples write `contents`, `{name, language, components?}` with no
/// `type`, as the Cloud API message object it stands for (`{type: "template", template}`);
/// any other object as it is. No message object has a top-level `name` and `language`.
pub fn template_shorthand(object: Map<String, Value>) -> Map<String, Value> {
    if object.contains_key("type")
        || !object.contains_key("name")
        || !object.contains_key("language")
    {
        return object;
    }
    let mut message = Map::new();
    message.insert("type".into(), Value::from("template"));
    message.insert("template".into(), Value::Object(object));
    message
}

/// Checks a Cloud API message object (`{type, <type>: {…}, context?, …}`) to send as it is.
/// The envelope is zaphook's: `to` and `recipient` come from the ticket's contact, and
/// `messaging_product` and `recipient_type` may only say what zaphook sends (`whatsapp`,
/// `individual`). A reaction is not a message of its own and is refused.
///
/// What is filed: `text` is `chat` with its body; a media type is itself with its caption
/// and `link`; `location` and `contacts` read as inbound ones; `interactive` (buttons, lists,
/// links, flows, …) is `interactive` with the text of its `body`; `template` is `chat` with no
/// text, as a template sent with `template` on `POST /api/v1/messages`; any other type is
/// `unsupported`, as an inbound message zaphook cannot read.
pub fn cloud_message(object: &Map<String, Value>) -> Result<CloudMessage, Refusal> {
    let kind = match object.get("type") {
        Some(Value::String(kind)) if !kind.trim().is_empty() => kind.as_str(),
        _ => {
            return Err(refuse(
                "type",
                "is required: the Cloud API message type (template, interactive, text, image, …)",
            ));
        }
    };
    match object.get(kind) {
        Some(Value::Object(_)) => {}
        Some(Value::Array(cards)) if kind == "contacts" && !cards.is_empty() => {}
        _ => {
            return Err(refuse(
                kind,
                format!("is required: a {kind} message carries its content in {kind}"),
            ));
        }
    }
    if kind == "reaction" {
        return Err(refuse(
            "type",
            "a reaction is not a message of its own; react with POST /api/v1/messages/{id}/reactions",
        ));
    }
    for key in ["to", "recipient"] {
        if object.contains_key(key) {
            return Err(refuse(
                key,
                "is zaphook's: the recipient is the number or ticket the send names",
            ));
        }
    }
    for (key, ours) in [
        ("messaging_product", "whatsapp"),
        ("recipient_type", "individual"),
    ] {
        if object.get(key).is_some_and(|v| v != ours) {
            return Err(refuse(
                key,
                format!("is zaphook's and can only be {ours:?}"),
            ));
        }
    }
    let message: Map<String, Value> = object
        .iter()
        .filter(|(key, _)| !ENVELOPE_KEYS.contains(&key.as_str()))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    let part = object.get(kind).and_then(Value::as_object);
    let (media_type, body) = match kind {
        "interactive" => (
            MediaType::Interactive,
            part.and_then(|p| p.get("body"))
                .and_then(|b| b.get("text"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        ),
        "template" => (MediaType::Chat, String::new()),
        _ => match notify::content(object) {
            Ok(Content::Message {
                media_type, body, ..
            }) => (media_type, body),
            _ => (MediaType::Unsupported, String::new()),
        },
    };
    let media_url = match media_type {
        MediaType::Image
        | MediaType::Video
        | MediaType::Audio
        | MediaType::Document
        | MediaType::Sticker => part
            .and_then(|p| p.get("link"))
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|l| l.starts_with("https://") || l.starts_with("http://"))
            .map(str::to_string),
        _ => None,
    };
    Ok(CloudMessage {
        message,
        media_type,
        body,
        media_url,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    fn filed(v: Value) -> (MediaType, String, Option<String>) {
        let m = cloud_message(&object(v)).unwrap();
        (m.media_type, m.body, m.media_url)
    }

    #[test]
    fn pins_and_cards_read_as_inbound_ones() {
        let pin = Location {
            latitude: -23.5505,
            longitude: -46.6333,
            name: Some("Loja".into()),
            address: Some("Av. Paulista, 1000".into()),
        };
        assert_eq!(
            location_body(&pin),
            "Loja\nAv. Paulista, 1000\n-23.5505,-46.6333"
        );
        let bare = Location {
            name: None,
            address: None,
            ..pin
        };
        assert_eq!(location_body(&bare), "-23.5505,-46.6333");
        let cards = [ContactCard::new("Ana Souza", "+55 11 98765-4321")];
        assert_eq!(contacts_body(&cards), "Ana Souza: +55 11 98765-4321");
    }

    #[test]
    fn message_objects_are_filed_by_their_type() {
        let buttons = json!({"type": "interactive", "interactive": {"type": "button",
            "body": {"text": "Confirma?"},
            "action": {"buttons": [{"type": "reply", "reply": {"id": "yes", "title": "Sim"}}]}}});
        assert_eq!(
            filed(buttons),
            (MediaType::Interactive, "Confirma?".into(), None)
        );
        let template = json!({"type": "template", "template": {"name": "hello_world",
            "language": {"code": "en_US"}}});
        assert_eq!(filed(template), (MediaType::Chat, String::new(), None));
        let text = json!({"type": "text", "text": {"body": "oi"}});
        assert_eq!(filed(text), (MediaType::Chat, "oi".into(), None));
        let image = json!({"type": "image", "image": {"link": "https://cdn.example/a.jpg",
            "caption": "a foto"}});
        assert_eq!(
            filed(image),
            (
                MediaType::Image,
                "a foto".into(),
                Some("https://cdn.example/a.jpg".into())
            )
        );
        let by_id = json!({"type": "document", "document": {"id": "1234"}});
        assert_eq!(filed(by_id), (MediaType::Document, String::new(), None));
        let pin = json!({"type": "location", "location": {"latitude": 1.5, "longitude": 2,
            "name": "Aqui"}});
        assert_eq!(
            filed(pin),
            (MediaType::Location, "Aqui\n1.5,2".into(), None)
        );
        let cards = json!({"type": "contacts", "contacts": [{"name": {"formatted_name": "Ana"},
            "phones": [{"phone": "+55 11 5555-0000"}]}]});
        assert_eq!(
            filed(cards),
            (MediaType::Contacts, "Ana: +55 11 5555-0000".into(), None)
        );
        let short = template_shorthand(object(
            json!({"name": "hello_world", "language": {"code": "pt_BR"}}),
        ));
        assert_eq!(
            Value::Object(short),
            json!({"type": "template", "template": {"name": "hello_world",
                "language": {"code": "pt_BR"}}})
        );
        let named =
            object(json!({"type": "text", "text": {"body": "oi"}, "name": "x", "language": "y"}));
        assert_eq!(
            template_shorthand(named.clone()),
            named,
            "a typed object stays as it is"
        );
        let unknown = json!({"type": "order_status", "order_status": {"x": 1}});
        assert_eq!(
            filed(unknown),
            (MediaType::Unsupported, String::new(), None)
        );
    }

    #[test]
    fn the_envelope_stays_zaphooks() {
        let m = cloud_message(&object(json!({"type": "text", "text": {"body": "oi"},
            "messaging_product": "whatsapp", "recipient_type": "individual",
            "context": {"message_id": "wamid.X"}})))
        .unwrap();
        assert_eq!(
            Value::Object(m.message),
            json!({"type": "text", "text": {"body": "oi"}, "context": {"message_id": "wamid.X"}})
        );
        let refused = |v: Value| cloud_message(&object(v)).unwrap_err().key;
        assert_eq!(
            refused(json!({"type": "text", "text": {"body": "oi"}, "to": "5511"})),
            "to"
        );
        assert_eq!(
            refused(json!({"type": "text", "text": {"body": "oi"}, "recipient": "BR.1"})),
            "recipient"
        );
        assert_eq!(
            refused(json!({"type": "text", "text": {"body": "oi"}, "messaging_product": "sms"})),
            "messaging_product"
        );
        assert_eq!(
            refused(json!({"type": "text", "text": {"body": "oi"}, "recipient_type": "group"})),
            "recipient_type"
        );
    }

    #[test]
    fn objects_without_a_type_or_its_part_are_refused() {
        let refused = |v: Value| cloud_message(&object(v)).unwrap_err().key;
        assert_eq!(refused(json!({"text": {"body": "oi"}})), "type");
        assert_eq!(refused(json!({"type": "", "text": {"body": "oi"}})), "type");
        assert_eq!(refused(json!({"type": 3})), "type");
        assert_eq!(refused(json!({"type": "interactive"})), "interactive");
        assert_eq!(
            refused(json!({"type": "template", "template": "x"})),
            "template"
        );
        assert_eq!(
            refused(json!({"type": "contacts", "contacts": []})),
            "contacts"
        );
        assert_eq!(
            refused(json!({"type": "reaction", "reaction": {"message_id": "w", "emoji": "👍"}})),
            "type"
        );
    }
}
