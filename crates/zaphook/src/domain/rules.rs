//! Small domain rules: phone number normalisation, ticket protocols, message timestamps.

use time::OffsetDateTime;
use time::macros::format_description;

/// Normalises a WhatsApp address, the one place every number passes through: a phone number
/// becomes digits only (spaces, dashes, dots, parentheses and a leading `+` are dropped, as is
/// a `@s.whatsapp.net` or `@c.us` suffix), with Brazil's ninth digit (see
/// [`with_brazil_ninth_digit`]); a group id (`…@g.us`) is kept as it is. Returns `None` when
/// it is neither, with whether it names a group otherwise.
pub fn normalize_number(raw: &str) -> Option<(String, bool)> {
    let raw = raw.trim();
    if let Some(group) = raw.strip_suffix("@g.us") {
        let valid = !group.is_empty()
            && group.len() <= 64
            && group.chars().all(|c| c.is_ascii_digit() || c == '-');
        return valid.then(|| (raw.to_string(), true));
    }
    let raw = raw
        .strip_suffix("@s.whatsapp.net")
        .or_else(|| raw.strip_suffix("@c.us"))
        .unwrap_or(raw);
    let mut digits = String::with_capacity(raw.len());
    for (i, c) in raw.chars().enumerate() {
        match c {
            '0'..='9' => digits.push(c),
            '+' if i == 0 => {}
            ' ' | '-' | '(' | ')' | '.' => {}
            _ => return None,
        }
    }
    (6..=20)
        .contains(&digits.len())
        .then(|| (with_brazil_ninth_digit(digits), false))
}

/// Brazil's mobile numbers gained a ninth digit (a leading 9) between 2012 and 2016, but
/// WhatsApp still knows many accounts by the eight-digit form, and integrations write either:
/// `55 11 8765-4321` and `55 11 98765-4321` are one person. A twelve-digit Brazilian number
/// whose subscriber part starts with 6 to 9 (a mobile; landlines start with 2 to 5) becomes
/// the thirteen-digit form, which WhatsApp takes for sending too.
fn with_brazil_ninth_digit(digits: String) -> String {
    let d = digits.as_bytes();
    let area = |b: u8| (b'1'..=b'9').contains(&b);
    if d.len() == 12
        && d.starts_with(b"55")
        && area(d[2])
        && area(d[3])
        && (b'6'..=b'9').contains(&d[4])
    {
        format!("{}9{}", &digits[..4], &digits[4..])
    } else {
        digits
    }
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
    fn a_brazilian_mobile_with_and_without_the_ninth_digit_is_one_number() {
        for written in [
            "5511987654321",
            "551187654321",
            "+55 (11) 8765-4321",
            "55 11 9 8765 4321",
        ] {
            assert_eq!(
                normalize_number(written),
                Some(("5511987654321".into(), false)),
                "{written}"
            );
        }
        // Old mobiles started with 6 to 9 too.
        assert_eq!(normalize_number("552161234567").unwrap().0, "5521961234567");
        // Landlines (2 to 5) keep their eight digits.
        assert_eq!(normalize_number("551133334444").unwrap().0, "551133334444");
        assert_eq!(normalize_number("554732105555").unwrap().0, "554732105555");
        // Not Brazil, or not the length of a Brazilian number.
        assert_eq!(normalize_number("351912345678").unwrap().0, "351912345678");
        assert_eq!(normalize_number("55118765432").unwrap().0, "55118765432");
        // An area code never has a 0.
        assert_eq!(normalize_number("550187654321").unwrap().0, "550187654321");
    }

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
        assert_eq!(
            normalize_number("5511987654321@s.whatsapp.net"),
            Some(("5511987654321".into(), false))
        );
        assert_eq!(
            normalize_number("16505551234@c.us"),
            Some(("16505551234".into(), false))
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
