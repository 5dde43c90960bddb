//! WhatsApp Cloud API callbacks as Meta posts them: the JSON of one notification body
//! carrying a few text messages (each with its `contacts` entry) and as many statuses of
//! messages zaphook never sent, and its `X-Hub-Signature-256` (HMAC-SHA256 of the raw bytes
//! under the app secret). Each message's `text.body` is `"<seq> <send time µs>"`, as the
//! sandbox load's `body`, so the receiver reads the webhooks the same way.

use std::fmt::Write;
use std::ops::Range;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::load::FIRST_NUMBER;

/// The app secret of the benchmark's cloud connection.
pub const APP_SECRET: &str = "bench_app_secret";
/// The phone number id of the benchmark's cloud connection, named in every body's metadata.
pub const PHONE_NUMBER_ID: &str = "106540352242922";
/// The WhatsApp Business Account id of the body's entry.
pub const WABA_ID: &str = "102290129340398";
/// The business number shown in the metadata.
pub const DISPLAY_NUMBER: &str = "15550783881";
/// Text messages per callback body (the same number of statuses ride along).
pub const MESSAGES_PER_BODY: u64 = 4;

/// The connection settings to create it with: the Graph API base points at a closed port,
/// since the benchmark only receives.
pub fn connection_settings() -> serde_json::Value {
    serde_json::json!({
        "phoneNumberId": PHONE_NUMBER_ID,
        "accessToken": "t",
        "appSecret": APP_SECRET,
        "verifyToken": "v",
        "graphBaseUrl": "http://127.0.0.1:9",
    })
}

/// The callback path of cloud connection `id` (no bearer token: the signature is the proof).
pub fn callback_path(connection_id: i64) -> String {
    format!("/channels/cloud/{connection_id}")
}

/// The number of the contact that sends message `seq` (as the sandbox load's `from`).
pub fn contact_number(seq: u64, contacts: u64) -> u64 {
    FIRST_NUMBER + seq % contacts.max(1)
}

/// One notification body with the messages `seqs`, sent at `sent_us`, stamped `unix_s`:
/// for each message its contact (name and `wa_id`), the text message (`wamid.bench.<seq>`,
/// body `"<seq> <sent_us>"`) and, with `with_statuses`, a `delivered` status of a message
/// zaphook did not send (`wamid.unknown.<seq>`, to the same contact).
pub fn body(
    seqs: Range<u64>,
    contacts: u64,
    sent_us: u64,
    unix_s: u64,
    with_statuses: bool,
) -> String {
    let mut people = String::new();
    let mut messages = String::new();
    let mut statuses = String::from(r#","statuses":["#);
    for (i, seq) in seqs.enumerate() {
        let sep = if i == 0 { "" } else { "," };
        let from = contact_number(seq, contacts);
        let contact = seq % contacts.max(1);
        // Writing to a String cannot fail.
        let _ = write!(
            people,
            r#"{sep}{{"profile":{{"name":"Contact {contact}"}},"wa_id":"{from}"}}"#
        );
        let _ = write!(
            messages,
            r#"{sep}{{"from":"{from}","id":"wamid.bench.{seq}","timestamp":"{unix_s}","type":"text","text":{{"body":"{seq} {sent_us}"}}}}"#
        );
        if !with_statuses {
            continue;
        }
        let _ = write!(
            statuses,
            r#"{sep}{{"id":"wamid.unknown.{seq}","status":"delivered","timestamp":"{unix_s}","recipient_id":"{from}"}}"#
        );
    }
    if with_statuses {
        statuses.push(']');
    } else {
        statuses.clear();
    }
    format!(
        concat!(
            r#"{{"object":"whatsapp_business_account","entry":[{{"id":"{waba}","changes":[{{"field":"messages","value":{{"#,
            r#""messaging_product":"whatsapp","metadata":{{"display_phone_number":"{display}","phone_number_id":"{number}"}},"#,
            r#""contacts":[{people}],"messages":[{messages}]{statuses}}}}}]}}]}}"#
        ),
        waba = WABA_ID,
        display = DISPLAY_NUMBER,
        number = PHONE_NUMBER_ID,
        people = people,
        messages = messages,
        statuses = statuses,
    )
}

/// The `X-Hub-Signature-256` value of `body`: `sha256=` and the lowercase hex HMAC-SHA256.
pub fn signature(app_secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(app_secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut out = String::with_capacity(7 + 2 * digest.len());
    out.push_str("sha256=");
    for byte in digest {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// Seconds since the Unix epoch, for the notifications' `timestamp`.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
