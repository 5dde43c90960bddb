//! The Cloud API callback parser never panics: not on arbitrary bytes, and not on arbitrary
//! JSON placed where Meta's notifications put their content.

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use zaphook::channels::cloud::notify::parse;

/// Key names of Meta's notification bodies, so random objects reach the deep code paths.
const KEYS: &[&str] = &[
    "object",
    "entry",
    "changes",
    "field",
    "value",
    "metadata",
    "phone_number_id",
    "contacts",
    "profile",
    "name",
    "username",
    "wa_id",
    "user_id",
    "messages",
    "message_echoes",
    "statuses",
    "id",
    "from",
    "from_user_id",
    "to",
    "to_user_id",
    "timestamp",
    "type",
    "text",
    "body",
    "context",
    "image",
    "audio",
    "voice",
    "document",
    "sticker",
    "caption",
    "mime_type",
    "sha256",
    "filename",
    "location",
    "latitude",
    "longitude",
    "address",
    "formatted_name",
    "phones",
    "phone",
    "interactive",
    "button_reply",
    "list_reply",
    "nfm_reply",
    "response_json",
    "title",
    "button",
    "payload",
    "reaction",
    "message_id",
    "emoji",
    "edit",
    "original_message_id",
    "message",
    "revoke",
    "system",
    "status",
    "recipient_id",
    "recipient_user_id",
    "errors",
    "code",
    "error_data",
    "details",
    "conversation",
    "pricing",
];

/// String values Meta uses, so `type`, `field` and `status` often take a real branch.
const WORDS: &[&str] = &[
    "whatsapp_business_account",
    "messages",
    "smb_message_echoes",
    "account_update",
    "text",
    "image",
    "video",
    "audio",
    "document",
    "sticker",
    "location",
    "contacts",
    "interactive",
    "button_reply",
    "list_reply",
    "nfm_reply",
    "button",
    "reaction",
    "edit",
    "revoke",
    "system",
    "user_changed_user_id",
    "user_changed_number",
    "User X changed from A to B",
    " changed from  to ",
    "unsupported",
    "sent",
    "delivered",
    "read",
    "played",
    "failed",
    "deleted",
    "16505551234",
    "+16505551234",
    "+",
    "BR.1502576394655843",
    "1749416383",
    "-1",
    "99999999999999999999",
    "",
    "é👍\u{0}",
];

/// Members of a message's type-specific part (`text`, `reaction`, `edit`, …).
const PART_KEYS: &[&str] = &[
    "id",
    "body",
    "caption",
    "message_id",
    "emoji",
    "original_message_id",
    "message",
    "type",
    "title",
    "payload",
    "text",
    "user_id",
    "name",
    "address",
    "latitude",
    "longitude",
    "response_json",
    "button_reply",
    "list_reply",
    "nfm_reply",
    "mime_type",
    "filename",
];

/// Message `type`s the parser has a branch for, and some it has not.
const TYPES: &[&str] = &[
    "text",
    "image",
    "video",
    "audio",
    "voice",
    "document",
    "sticker",
    "location",
    "contacts",
    "interactive",
    "button",
    "reaction",
    "edit",
    "revoke",
    "system",
    "unsupported",
    "order",
];

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::sample::select(KEYS).prop_map(str::to_string),
        1 => "[a-z_]{0,8}",
    ]
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::Bool),
        1 => any::<i64>().prop_map(Value::from),
        1 => any::<u64>().prop_map(Value::from),
        1 => any::<f64>().prop_map(Value::from),
        3 => proptest::sample::select(WORDS).prop_map(Value::from),
        2 => ".{0,12}".prop_map(Value::String),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    nested(6, 96)
}

fn nested(depth: u32, size: u32) -> impl Strategy<Value = Value> {
    scalar().prop_recursive(depth, size, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..7)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// `value` placed at one of the levels of a valid envelope.
fn enveloped(value: Value, field: &str, level: u8) -> Value {
    let change = |value: Value| json!({"field": field, "value": value});
    let metadata = json!({"phone_number_id": "106540352242922"});
    match level {
        0 => value,
        1 => json!({"object": "whatsapp_business_account", "entry": value}),
        2 => json!({"object": "whatsapp_business_account", "entry": [{"changes": value}]}),
        3 => {
            json!({"object": "whatsapp_business_account", "entry": [{"changes": [change(value)]}]})
        }
        _ => {
            let value = json!({
                "metadata": metadata,
                "contacts": value.clone(),
                "messages": [value.clone()],
                "message_echoes": [value.clone()],
                "statuses": [value],
            });
            json!({"object": "whatsapp_business_account", "entry": [{"changes": [change(value)]}]})
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse(&bytes);
    }

    #[test]
    fn arbitrary_json_in_an_envelope_never_panics(
        value in json_value(),
        field in proptest::sample::select(&["messages", "smb_message_echoes", "other"][..]),
        level in 0u8..6,
    ) {
        let body = enveloped(value, field, level).to_string();
        if let Ok(parsed) = parse(body.as_bytes()) {
            for reason in &parsed.skipped {
                prop_assert!(!reason.is_empty());
            }
        }
    }

    #[test]
    fn arbitrary_messages_never_panic(
        members in prop::collection::vec((key(), nested(4, 24)), 0..6),
        part in prop::collection::vec(
            (
                proptest::sample::select(PART_KEYS),
                prop_oneof![3 => scalar(), 1 => nested(3, 16)],
            ),
            0..6,
        ),
        kind in prop_oneof![
            4 => proptest::sample::select(TYPES),
            1 => proptest::sample::select(WORDS),
        ],
        subtype in proptest::option::of(proptest::sample::select(
            &["button_reply", "list_reply", "nfm_reply", "user_changed_user_id", "other"][..],
        )),
    ) {
        // A message object whose `type` names a real branch, with a random part of that name
        // and random other members.
        let mut message: Map<String, Value> = members.into_iter().collect();
        let mut part: Map<String, Value> =
            part.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        if let Some(subtype) = subtype {
            part.insert("type".into(), Value::from(subtype));
        }
        message.insert(kind.to_string(), Value::Object(part));
        message.insert("type".into(), Value::from(kind));
        message.entry("id").or_insert_with(|| Value::from("wamid.X"));
        message.entry("from").or_insert_with(|| Value::from("16505551234"));
        let message = Value::Object(message);
        let body = enveloped(message, "messages", 5).to_string();
        prop_assert!(parse(body.as_bytes()).is_ok());
    }
}
