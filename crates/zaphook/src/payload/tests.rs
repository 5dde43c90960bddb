//! Golden tests: every key of every payload, with its exact value.

use serde_json::{Value, json};

use super::*;
use crate::domain::{MediaType, Reaction};

fn contact() -> Contact {
    Contact {
        id: 321,
        name: "Sheena Nelson".into(),
        number: Some("16505551234".into()),
        bsuid: None,
        username: None,
        profile_pic_url: None,
        email: None,
        is_group: false,
        pushname: Some("Sheena Nelson".into()),
        lid: None,
        kanban_id: None,
        followup_id: None,
        extra_info: Vec::new(),
        created_at: 0,
    }
}

pub(super) fn a_ticket() -> Ticket {
    Ticket {
        id: 4990,
        connection_id: 35,
        contact_id: 321,
        status: TicketStatus::Pending,
        protocol: "202611241835004990".into(),
        queue_id: Some(3),
        user_id: None,
        is_group: false,
        external_key: Some("PEDIDO-123".into()),
        api_config_id: None,
        last_message: "Does it come in another color?".into(),
        created_at: 0,
        updated_at: 0,
    }
}

pub(super) fn inbound() -> Message {
    Message {
        id: "msg_01JDV6N4R8T2Y5K7M9P0Q3S6W".into(),
        message_id: Some("wamid.HBgL".into()),
        connection_id: 35,
        ticket_id: 4990,
        contact_id: 321,
        body: "Does it come in another color?".into(),
        timestamp: 1_749_416_383_000,
        status: MessageStatus::Received,
        from_me: false,
        media_type: MediaType::Chat,
        media_url: None,
        is_deleted: false,
        send_type: None,
        edited: false,
        reactions: vec![],
        quoted_message_id: None,
        user_id: None,
        error: None,
        original: None,
        participant_id: None,
        created_at: 0,
    }
}

fn agent() -> User {
    User {
        id: 7,
        name: "Ana".into(),
        email: "ana@example.com".into(),
        created_at: 0,
    }
}

fn parse(body: &str) -> Value {
    serde_json::from_str(body).expect("payload is JSON")
}

#[test]
fn inbound_message_has_every_key_of_the_contract() {
    let (t, c) = (a_ticket(), contact());
    let snap = Snapshot {
        ticket: &t,
        contact: Some(&c),
        user: None,
        participant: None,
        connection_id: 35,
        connection_name: "Comercial",
    };
    let body = message(EventType::MessageCreated, &inbound(), &snap);
    assert_eq!(
        parse(&body),
        json!({
            "event": "message.created",
            "id": "msg_01JDV6N4R8T2Y5K7M9P0Q3S6W",
            "messageId": "wamid.HBgL",
            "messageBody": "Does it come in another color?",
            "timestamp": 1_749_416_383_000_i64,
            "status": "received",
            "fromMe": false,
            "mediaType": "chat",
            "mediaUrl": null,
            "isDeleted": false,
            "sendType": null,
            "edited": false,
            "reactions": [],
            "quotedMessageId": null,
            "error": null,
            "mediaBase64": null,
            "ticket": {
                "id": 4990, "status": "pending", "protocol": "202611241835004990", "queueId": 3,
                "userId": null, "isGroup": false, "apiConfig": {"externalKey": "PEDIDO-123"}
            },
            "contact": {
                "id": 321, "name": "Sheena Nelson", "phoneNumber": "16505551234",
                "profilePicUrl": null, "email": null, "isGroup": false,
                "pushname": "Sheena Nelson", "lid": null, "bsuid": null, "username": null,
                "kanbanId": null, "followupId": null
            },
            "contactmessage": null,
            "user": null,
            "whatsapp": {"id": 35, "name": "Comercial"}
        })
    );
    // Keys keep the contract's order, which makes logs easy to read.
    assert!(body.starts_with(r#"{"event":"message.created","id":"msg_"#));
}

#[test]
fn manual_outbound_message_names_its_agent_and_reactions() {
    let (mut t, c, u) = (a_ticket(), contact(), agent());
    t.external_key = None;
    t.user_id = Some(7);
    let mut m = inbound();
    m.from_me = true;
    m.status = MessageStatus::Read;
    m.send_type = Some(SendType::Manual);
    m.user_id = Some(7);
    m.edited = true;
    m.reactions = vec![Reaction {
        emoji: "👍".into(),
        from_me: false,
        user_id: None,
        contact_id: Some(321),
        timestamp: 1_749_419_544_000,
    }];
    let snap = Snapshot {
        ticket: &t,
        contact: Some(&c),
        user: Some(&u),
        participant: None,
        connection_id: 35,
        connection_name: "Comercial",
    };
    let v = parse(&message(EventType::MessageUpdated, &m, &snap));
    assert_eq!(v["event"], "message.updated");
    assert_eq!(v["status"], "read");
    assert_eq!(v["sendType"], "manual");
    assert_eq!(v["edited"], true);
    assert_eq!(v["ticket"]["apiConfig"], Value::Null);
    assert_eq!(v["ticket"]["userId"], 7);
    assert_eq!(
        v["user"],
        json!({"id": 7, "name": "Ana", "email": "ana@example.com"})
    );
    assert_eq!(
        v["reactions"],
        json!([{"emoji": "👍", "fromMe": false, "userId": null, "contactId": 321,
                "timestamp": 1_749_419_544_000_i64}])
    );
    assert!(v.get("Type").is_none());

    // A failed message says why, as the channel reported it.
    m.status = MessageStatus::Failed;
    m.error = Some(crate::domain::MessageError {
        code: 131047,
        title: "Re-engagement message".into(),
        source: "whatsapp".into(),
    });
    let v = parse(&message(EventType::MessageUpdated, &m, &snap));
    assert_eq!(
        v["error"],
        json!({"code": 131047, "title": "Re-engagement message", "source": "whatsapp"})
    );

    // A bot's message names no agent even when the ticket has one.
    m.send_type = Some(SendType::Bot);
    let v = parse(&message(EventType::MessageUpdated, &m, &snap));
    assert_eq!(v["user"], Value::Null);
}

#[test]
fn ticket_events_carry_type_and_previous_only_on_transfer() {
    let (mut t, c, u) = (a_ticket(), contact(), agent());
    t.user_id = Some(7);
    let snap = Snapshot {
        ticket: &t,
        contact: Some(&c),
        user: Some(&u),
        participant: None,
        connection_id: 35,
        connection_name: "Comercial",
    };
    let previous = Some(Previous {
        queue_id: Some(2),
        user_id: None,
    });
    let v = parse(&ticket(TicketEventKind::TransferTicket, &snap, previous));
    assert_eq!(
        v,
        json!({
            "event": "ticket.transferred",
            "Type": "TransferTicket",
            "messageBody": "Does it come in another color?",
            "ticket": {
                "id": 4990, "status": "pending", "protocol": "202611241835004990", "queueId": 3,
                "userId": 7, "isGroup": false, "apiConfig": {"externalKey": "PEDIDO-123"}
            },
            "contact": {
                "id": 321, "name": "Sheena Nelson", "phoneNumber": "16505551234",
                "profilePicUrl": null, "email": null, "isGroup": false,
                "pushname": "Sheena Nelson", "lid": null, "bsuid": null, "username": null,
                "kanbanId": null, "followupId": null
            },
            "whatsapp": {"id": 35, "name": "Comercial"},
            "user": {"id": 7, "name": "Ana", "email": "ana@example.com"},
            "previous": {"queueId": 2, "userId": null}
        })
    );

    let v = parse(&ticket(TicketEventKind::NewTicket, &snap, previous));
    assert_eq!(v["event"], "ticket.created");
    assert_eq!(v["Type"], "NewTicket");
    assert_eq!(v["messageBody"], "Does it come in another color?");
    assert!(v.get("previous").is_none());

    let v = parse(&ticket(TicketEventKind::NewTicketUserCreate, &snap, None));
    assert_eq!(v["event"], "ticket.created");
    assert_eq!(v["Type"], "NewTicketUserCreate");
    assert_eq!(v["messageBody"], "");

    let v = parse(&ticket(TicketEventKind::ClosedTicket, &snap, None));
    assert_eq!(v["event"], "ticket.closed");
    assert_eq!(v["Type"], "ClosedTicket");
    assert_eq!(v["messageBody"], "Does it come in another color?");
}

#[test]
fn test_event_is_the_documented_object() {
    let v = parse(&webhook_test(1_795_545_300_000));
    assert_eq!(
        v,
        json!({"event": "webhook.test", "origin": "webhook-config",
               "timestamp": "2026-11-24T18:35:00Z"})
    );
}

#[test]
fn a_user_known_only_by_bsuid_has_no_phone_number() {
    let t = a_ticket();
    let mut c = contact();
    c.number = None;
    c.bsuid = Some("BR.1502576394655843".into());
    c.username = Some("sheena.n".into());
    let snap = Snapshot {
        ticket: &t,
        contact: Some(&c),
        user: None,
        participant: None,
        connection_id: 35,
        connection_name: "Comercial",
    };
    let v = parse(&message(EventType::MessageCreated, &inbound(), &snap));
    assert_eq!(v["contact"]["phoneNumber"], Value::Null);
    assert_eq!(v["contact"]["bsuid"], "BR.1502576394655843");
    assert_eq!(v["contact"]["username"], "sheena.n");
}

#[test]
fn media_base64_fills_the_payloads_own_key_only() {
    let (t, c) = (a_ticket(), contact());
    let snap = Snapshot {
        ticket: &t,
        contact: Some(&c),
        user: None,
        participant: None,
        connection_id: 35,
        connection_name: "Comercial",
    };
    let mut m = inbound();
    // A contact's text that looks like the key, rendered before it.
    m.body = r#""mediaBase64":null"#.into();
    m.media_type = MediaType::Image;
    let body = message(EventType::MessageCreated, &m, &snap);
    let filled = parse(&with_media_base64(&body, b"\x89PNG\r\n"));
    assert_eq!(filled["mediaBase64"], "iVBORw0K");
    assert_eq!(filled["messageBody"], r#""mediaBase64":null"#);
    let mut expected = parse(&body);
    expected["mediaBase64"] = json!("iVBORw0K");
    assert_eq!(filled, expected);
}
