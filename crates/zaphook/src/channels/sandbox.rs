//! The sandbox channel: a WhatsApp that lives inside zaphook, for development and tests. The
//! API plays the contact's side (`sandbox/inbound`, `sandbox/status`, `sandbox/reaction`);
//! outbound messages are accepted at once, as WhatsApp accepting them.

/// Accepts an outbound message and answers the channel id it now has.
pub fn accept() -> String {
    crate::domain::new_sandbox_message_id()
}
