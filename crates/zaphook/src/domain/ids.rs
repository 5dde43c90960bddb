//! Prefixed, time-ordered string ids for messages, events and deliveries. Ids made in the same
//! millisecond still sort in the order they were made (a monotonic generator), so lists that
//! page by id, like a ticket's messages, keep the order of a callback's batch.

use std::sync::Mutex;

use ulid::{Generator, Ulid};

static GENERATOR: Mutex<Generator> = Mutex::new(Generator::new());

fn next() -> Ulid {
    match GENERATOR.lock().ok().and_then(|mut g| g.generate().ok()) {
        Some(id) => id,
        // Only after a panic poisoned the lock, or 2^80 ids in one millisecond: an id that is
        // merely time-ordered. (`Ulid::default()` would be the nil id.)
        None => Ulid::new(),
    }
}

pub fn new_message_id() -> String {
    format!("msg_{}", next())
}

pub fn new_event_id() -> String {
    format!("evt_{}", next())
}

pub fn new_delivery_id() -> String {
    format!("dlv_{}", next())
}

/// The id of a send job that is not a message's own (a reaction).
pub fn new_send_id() -> String {
    format!("snd_{}", next())
}

/// A random (version 4) UUID, the `apiId` of an external API config: WHAZING's ids have this
/// form, and integrations may check it.
pub fn new_uuid() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|byte| format!("{byte:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// The channel id the sandbox gives a message when the caller does not choose one.
pub fn new_sandbox_message_id() -> String {
    format!("sandbox.{}", next())
}

#[cfg(test)]
mod tests {
    #[test]
    fn uuids_are_random_version_4() {
        let id = super::new_uuid();
        let parts: Vec<&str> = id.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(id.chars().all(|c| c == '-' || c.is_ascii_hexdigit()));
        assert!(parts[2].starts_with('4'), "{id}");
        assert!(matches!(&parts[3][..1], "8" | "9" | "a" | "b"), "{id}");
        assert_ne!(id, super::new_uuid());
    }

    #[test]
    fn ids_made_in_one_millisecond_keep_their_order() {
        let ids: Vec<String> = (0..1000).map(|_| super::new_message_id()).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted);
    }
}
