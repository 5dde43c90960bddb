//! The bodies of izing's older per-API-config hooks, as izing's `WebHooksAPI` job builds them:
//! a message's ack for `urlMessageStatus`, a connection's state for `urlServiceStatus`. Their
//! keys are izing's, fixed; nothing of zaphook's own is added.

use serde::Serialize;

use super::to_json;
use crate::domain::{Connection, EventType, Message, Ticket};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MessageStatusBody<'a> {
    ack: i64,
    /// The channel's id of the message; `""` for one the channel never took (izing's too).
    message_id: &'a str,
    external_key: Option<&'a str>,
    r#type: EventType,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SessionStatusBody<'a> {
    name: &'a str,
    /// The connection's number: a Cloud API connection's phone number id (what
    /// `/statuschannel` shows), `null` for the sandbox.
    number: Option<&'a str>,
    status: &'a str,
    /// izing's QR code of a WhatsApp Web session; no channel of zaphook's has one.
    qrcode: Option<&'a str>,
    /// Unix milliseconds of the change.
    timestamp: i64,
    r#type: EventType,
}

/// `hookMessageStatus`: the ack of `message`, on `ticket` (whose `externalKey` it carries).
pub fn message_status(message: &Message, ticket: &Ticket) -> String {
    to_json(&MessageStatusBody {
        ack: message.status.ack(),
        message_id: message.message_id.as_deref().unwrap_or(""),
        external_key: ticket.external_key.as_deref(),
        r#type: EventType::HookMessageStatus,
    })
}

/// `hookSessionStatus`: the state of `connection` as of `now_ms`.
pub fn session_status(connection: &Connection, now_ms: i64) -> String {
    to_json(&SessionStatusBody {
        name: &connection.name,
        number: connection.phone_number_id.as_deref(),
        status: connection.session_status(),
        qrcode: None,
        timestamp: now_ms,
        r#type: EventType::HookSessionStatus,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::domain::{Channel, CloudState, MessageStatus};
    use crate::payload::tests::{a_ticket, inbound};

    fn parse(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn an_ack_is_izings_four_keys() {
        let ticket = a_ticket();
        let mut message = Message {
            message_id: Some("wamid.X".into()),
            status: MessageStatus::Read,
            from_me: true,
            ..inbound()
        };
        assert_eq!(
            parse(&message_status(&message, &ticket)),
            json!({"ack": 3, "messageId": "wamid.X", "externalKey": "PEDIDO-123",
                   "type": "hookMessageStatus"})
        );
        message.status = MessageStatus::Failed;
        message.message_id = None;
        let no_key = Ticket {
            external_key: None,
            ..ticket
        };
        assert_eq!(
            parse(&message_status(&message, &no_key)),
            json!({"ack": -1, "messageId": "", "externalKey": null, "type": "hookMessageStatus"})
        );
    }

    #[test]
    fn a_session_status_names_the_connection_and_its_state() {
        let mut connection = Connection {
            id: 1,
            name: "Comercial".into(),
            channel: Channel::Cloud,
            phone_number_id: Some("106540352242922".into()),
            cloud: Some(CloudState {
                phone_number_id: "106540352242922".into(),
                graph_base_url: String::new(),
                graph_version: String::new(),
                callback_path: String::new(),
                last_callback_at: None,
                last_send_error: None,
                last_send_error_at: None,
                token_refused: true,
            }),
            created_at: 0,
        };
        assert_eq!(
            parse(&session_status(&connection, 1_749_416_383_000)),
            json!({"name": "Comercial", "number": "106540352242922", "status": "DISCONNECTED",
                   "qrcode": null, "timestamp": 1_749_416_383_000_i64, "type": "hookSessionStatus"})
        );
        connection.cloud = None;
        connection.phone_number_id = None;
        assert_eq!(
            parse(&session_status(&connection, 5))["status"],
            "CONNECTED"
        );
    }
}
