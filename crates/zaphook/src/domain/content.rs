//! What a message can carry besides text and media by link: a location pin and contact
//! cards, as zaphook stores them for its send jobs.

use serde::{Deserialize, Serialize};

/// A location pin: coordinates in degrees, and optionally the place's name and address.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Location {
    pub latitude: f64,
    pub longitude: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

/// A contact card: a name and one telephone, with the WhatsApp id of that telephone when it
/// reads as a phone number (the recipient then gets a "Message" button on the card).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContactCard {
    pub name: String,
    /// The telephone as given, shown on the card.
    pub phone: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wa_id: Option<String>,
}

impl ContactCard {
    /// A card of `name` and `phone`; `wa_id` is the phone normalised as every number is
    /// (digits with country code) when it is one.
    pub fn new(name: impl Into<String>, phone: impl Into<String>) -> Self {
        let phone = phone.into();
        let wa_id = match super::normalize_number(&phone) {
            Some((digits, false)) => Some(digits),
            _ => None,
        };
        ContactCard {
            name: name.into(),
            phone,
            wa_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_card_has_a_wa_id_only_when_its_phone_is_a_number() {
        let card = ContactCard::new("Ana", "+55 11 98765-4321");
        assert_eq!(card.phone, "+55 11 98765-4321");
        assert_eq!(card.wa_id.as_deref(), Some("5511987654321"));
        assert_eq!(
            ContactCard::new("Ana", "5511987654321").wa_id.as_deref(),
            Some("5511987654321")
        );
        assert_eq!(ContactCard::new("Recepção", "ramal 20").wa_id, None);
        assert_eq!(ContactCard::new("Grupo", "1203630-1@g.us").wa_id, None);
    }
}
