//! Small domain rules: phone number normalisation, ticket protocols, message timestamps.

use time::OffsetDateTime;
use time::macros::format_description;

/// Normalises a WhatsApp address: a phone number becomes digits only (spaces, dashes,
/// parentheses and a leading `+` are dropped); a group id (`…@g.us`) is kept as it is.
/// Returns `None` when it is neither, with whether it names a group otherwise.
pub fn normalize_number(raw: &str) -> Option<(String, bool)> {
    let raw = raw.trim();
    if let Some(group) = raw.strip_suffix("@g.us") {
        let valid = !group.is_empty()
            && group.len() <= 64
            && group.chars().all(|c| c.is_ascii_digit() || c == '-');
        return valid.then(|| (raw.to_string(), true));
    }
    let mut digits = String::with_capacity(raw.len());
    for (i, c) in raw.chars().enumerate() {
        match c {
            '0'..='9' => digits.push(c),
            '+' if i == 0 => {}
            ' ' | '-' | '(' | ')' | '.' => {}
            _ => return None,
        }
    }
    (6..=20).contains(&digits.len()).then_some((digits, false))
}

/// A ticket's protocol: the creation time in UTC as `YYYYMMDDHHmmss` followed by its id.
pub fn protocol_for(created_at_ms: i64, ticket_id: i64) -> String {
    let when = OffsetDateTime::from_unix_timestamp_nanos(created_at_ms as i128 * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let stamp = when
        .format(format_description!(
            "[year][month][day][hour][minute][second]"
        ))
        .unwrap_or_default();
    format!("{stamp}{ticket_id}")
}

/// Message timestamps arrive as Unix seconds (WhatsApp) or milliseconds (WHAZING); payloads
/// carry milliseconds. Values below 10^11 are taken as seconds (10^11 ms is March 1973).
pub fn timestamp_to_ms(value: i64) -> i64 {
    if value.abs() < 100_000_000_000 {
        value * 1000
    } else {
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_become_digits() {
        assert_eq!(
            normalize_number("+55 (11) 98765-4321"),
            Some(("5511987654321".into(), false))
        );
        assert_eq!(
            normalize_number("120363040000000000@g.us"),
            Some(("120363040000000000@g.us".into(), true))
        );
        assert_eq!(normalize_number("abc"), None);
        assert_eq!(normalize_number("12"), None);
        assert_eq!(normalize_number("5511+9"), None);
        assert_eq!(normalize_number("@g.us"), None);
    }

    #[test]
    fn protocol_is_utc_stamp_and_id() {
        // 2026-11-24T18:35:00Z
        assert_eq!(protocol_for(1_795_545_300_000, 4990), "202611241835004990");
    }

    #[test]
    fn timestamps_in_seconds_become_millis() {
        assert_eq!(timestamp_to_ms(1_749_416_383), 1_749_416_383_000);
        assert_eq!(timestamp_to_ms(1_749_416_383_000), 1_749_416_383_000);
    }
}
