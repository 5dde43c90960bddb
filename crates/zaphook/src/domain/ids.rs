//! Prefixed, time-ordered string ids for messages, events and deliveries.

use ulid::Ulid;

pub fn new_message_id() -> String {
    format!("msg_{}", Ulid::new())
}

pub fn new_event_id() -> String {
    format!("evt_{}", Ulid::new())
}

pub fn new_delivery_id() -> String {
    format!("dlv_{}", Ulid::new())
}

/// The id of a send job that is not a message's own (a reaction).
pub fn new_send_id() -> String {
    format!("snd_{}", Ulid::new())
}

/// The channel id the sandbox gives a message when the caller does not choose one.
pub fn new_sandbox_message_id() -> String {
    format!("sandbox.{}", Ulid::new())
}
