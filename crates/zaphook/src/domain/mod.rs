//! Pure domain types and rules of the helpdesk: statuses, media types, event types, ids and
//! the small invariants (status only moves forward, phone numbers are digits). No I/O here.

mod content;
mod ids;
pub mod records;
mod rules;

pub use content::{ContactCard, Location};
pub use ids::{
    new_delivery_id, new_event_id, new_message_id, new_sandbox_message_id, new_send_id, new_uuid,
};
pub use records::*;
pub use rules::{normalize_number, protocol_for, timestamp_to_ms};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Generates `as_str` / `parse` for a fieldless enum whose wire names are fixed strings.
macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
        pub enum $name {
            $(#[serde(rename = $text)] $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub fn parse(text: &str) -> Option<Self> {
                match text { $($text => Some($name::$variant),)+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

wire_enum!(
    /// The channel a connection speaks.
    Channel { Sandbox => "sandbox", Cloud => "cloud" }
);

wire_enum!(
    /// Lifecycle of a ticket.
    TicketStatus { Pending => "pending", Open => "open", Closed => "closed" }
);

wire_enum!(
    /// Status of a message. Inbound messages are `received`; outbound ones move forward
    /// through `pending`, `sended` (WHAZING's spelling), `delivered`, `read`, `played`, or end
    /// in `failed`.
    MessageStatus {
        Received => "received",
        Pending => "pending",
        Sended => "sended",
        Delivered => "delivered",
        Read => "read",
        Played => "played",
        Failed => "failed",
    }
);

wire_enum!(
    /// Kind of content of a message.
    MediaType {
        Chat => "chat",
        Image => "image",
        Video => "video",
        Audio => "audio",
        Document => "document",
        Sticker => "sticker",
        Location => "location",
        Contacts => "contacts",
        Interactive => "interactive",
        Button => "button",
        Reaction => "reaction",
        Unsupported => "unsupported",
    }
);

wire_enum!(
    /// Who sent an outbound message.
    SendType {
        Manual => "manual",
        Bot => "bot",
        Api => "API",
        Campaign => "campaign",
        Schedule => "schedule",
        Phone => "phone",
    }
);

wire_enum!(
    /// The webhook event types of the contract.
    EventType {
        MessageCreated => "message.created",
        MessageUpdated => "message.updated",
        TicketCreated => "ticket.created",
        TicketTransferred => "ticket.transferred",
        TicketClosed => "ticket.closed",
        WebhookTest => "webhook.test",
        HookMessageStatus => "hookMessageStatus",
        HookSessionStatus => "hookSessionStatus",
    }
);

wire_enum!(
    /// The body an endpoint takes: WHAZING's webhook payloads (every endpoint of
    /// `/api/v1/webhooks`), or one of izing's older per-API-config hooks, whose endpoints an
    /// API config owns (its `urlMessageStatus` and `urlServiceStatus`).
    WebhookFormat {
        Whazing => "whazing",
        HookMessageStatus => "hook_message_status",
        HookSessionStatus => "hook_session_status",
    }
);

wire_enum!(
    /// Delivery order an endpoint asks for.
    Ordering { Ticket => "ticket", None => "none" }
);

wire_enum!(
    /// State of one delivery of one event to one endpoint.
    DeliveryStatus {
        Pending => "pending",
        Delivering => "delivering",
        Delivered => "delivered",
        Failed => "failed",
        Dead => "dead",
    }
);

impl MessageStatus {
    /// Position in the forward-only order of outbound statuses; `None` for `received`.
    fn rank(self) -> Option<u8> {
        match self {
            MessageStatus::Received => None,
            MessageStatus::Pending => Some(0),
            MessageStatus::Sended => Some(1),
            MessageStatus::Delivered => Some(2),
            MessageStatus::Read => Some(3),
            MessageStatus::Played => Some(4),
            MessageStatus::Failed => Some(5),
        }
    }

    /// The status as WHAZING/whaticket number a message's ack (whatsapp-web.js `MessageAck`):
    /// -1 failed, 0 pending, 1 sent (the server took it), 2 delivered, 3 read, 4 played; a
    /// received message has no ack and is 0.
    pub fn ack(self) -> i64 {
        match self {
            MessageStatus::Failed => -1,
            MessageStatus::Received | MessageStatus::Pending => 0,
            MessageStatus::Sended => 1,
            MessageStatus::Delivered => 2,
            MessageStatus::Read => 3,
            MessageStatus::Played => 4,
        }
    }

    /// Whether an outbound message in status `self` may move to `next`. Status only moves
    /// forward; `failed` is reachable only before the message was delivered, and is final.
    pub fn can_advance_to(self, next: MessageStatus) -> bool {
        let (Some(from), Some(to)) = (self.rank(), next.rank()) else {
            return false;
        };
        if self == MessageStatus::Failed {
            return false;
        }
        if next == MessageStatus::Failed {
            return from <= 1;
        }
        to > from
    }
}

impl EventType {
    /// The types an endpoint subscribes to when it names none: what WHAZING promises.
    pub const DEFAULT_SUBSCRIPTION: &'static [EventType] = &[EventType::MessageCreated];

    /// The types of izing's per-API-config hooks: sent to an API config's hook URLs only,
    /// never subscribed to.
    pub fn is_hook(self) -> bool {
        matches!(
            self,
            EventType::HookMessageStatus | EventType::HookSessionStatus
        )
    }

    /// The types an endpoint of `/api/v1/webhooks` may subscribe to.
    pub fn subscribable() -> impl Iterator<Item = EventType> {
        EventType::ALL
            .iter()
            .copied()
            .filter(|e| *e != EventType::WebhookTest && !e.is_hook())
    }
}

impl WebhookFormat {
    /// The header an endpoint's token goes in: WHAZING's `X-N8N-API-KEY`, or for izing's
    /// hooks the API config's `authToken` as a raw `authorization` header.
    pub fn token_header(self) -> &'static str {
        match self {
            WebhookFormat::Whazing => "X-N8N-API-KEY",
            WebhookFormat::HookMessageStatus | WebhookFormat::HookSessionStatus => "authorization",
        }
    }

    /// The one event type a hook endpoint receives; `None` for WHAZING endpoints, which
    /// subscribe to the types they name.
    pub fn hook_event(self) -> Option<EventType> {
        match self {
            WebhookFormat::Whazing => None,
            WebhookFormat::HookMessageStatus => Some(EventType::HookMessageStatus),
            WebhookFormat::HookSessionStatus => Some(EventType::HookSessionStatus),
        }
    }
}

/// WHAZING's `Type` discriminator of a ticket event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TicketEventKind {
    NewTicket,
    NewTicketUserCreate,
    TransferTicket,
    ClosedTicket,
}

impl TicketEventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TicketEventKind::NewTicket => "NewTicket",
            TicketEventKind::NewTicketUserCreate => "NewTicketUserCreate",
            TicketEventKind::TransferTicket => "TransferTicket",
            TicketEventKind::ClosedTicket => "ClosedTicket",
        }
    }

    pub fn event_type(self) -> EventType {
        match self {
            TicketEventKind::NewTicket | TicketEventKind::NewTicketUserCreate => {
                EventType::TicketCreated
            }
            TicketEventKind::TransferTicket => EventType::TicketTransferred,
            TicketEventKind::ClosedTicket => EventType::TicketClosed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_round_trip() {
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(*t));
        }
        assert_eq!(SendType::Api.as_str(), "API");
        assert_eq!(MediaType::parse("gif"), None);
        for f in WebhookFormat::ALL {
            assert_eq!(WebhookFormat::parse(f.as_str()), Some(*f));
        }
        assert!(EventType::subscribable().all(|e| !e.is_hook() && e != EventType::WebhookTest));
    }

    #[test]
    fn acks_are_whazings_numbers() {
        use MessageStatus::*;
        let acks: Vec<i64> = [Failed, Pending, Sended, Delivered, Read, Played]
            .iter()
            .map(|s| s.ack())
            .collect();
        assert_eq!(acks, [-1, 0, 1, 2, 3, 4]);
    }

    #[test]
    fn outbound_status_only_moves_forward() {
        use MessageStatus::*;
        assert!(Pending.can_advance_to(Sended));
        assert!(Sended.can_advance_to(Read));
        assert!(!Read.can_advance_to(Delivered));
        assert!(!Read.can_advance_to(Read));
        assert!(Sended.can_advance_to(Failed));
        assert!(!Delivered.can_advance_to(Failed));
        assert!(!Failed.can_advance_to(Read));
        assert!(!Received.can_advance_to(Read));
    }
}
