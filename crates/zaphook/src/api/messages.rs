//! Messages: send one (found-or-created ticket, queued for its channel), read one, and the
//! agent's changes to a sent message: edit, delete for everyone, react.

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::{ApiResult, Checks};
use super::extract::{Company, Json, Path};
use serde_json::Value;

use super::external::text_field;
use crate::channels::cloud::content;
use crate::domain::{ContactCard, Location, MediaType, Message, SendType};
use crate::ingest::{self, Recipient, SendMessage, Template};
use crate::store;

/// Longest text WhatsApp carries in one message.
pub const MAX_TEXT: usize = 4096;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(send_message))
        .routes(routes!(get_message, edit_message, delete_message))
        .routes(routes!(react))
}

/// Checks a media type and URL pair; answers the media type.
pub fn media(
    checks: &mut Checks,
    media_type: Option<MediaType>,
    media_url: Option<&str>,
) -> MediaType {
    if let Some(url) = media_url {
        checks.url("mediaUrl", url);
    }
    match (media_type, media_url) {
        (Some(t), _) => {
            let needs_url = matches!(
                t,
                MediaType::Image
                    | MediaType::Video
                    | MediaType::Audio
                    | MediaType::Document
                    | MediaType::Sticker
            );
            if needs_url && media_url.is_none() {
                checks.fail("mediaUrl", format!("a {t} message needs a mediaUrl"));
            }
            t
        }
        (None, Some(_)) => {
            checks.fail("mediaType", "say which kind of media mediaUrl points to");
            MediaType::Chat
        }
        (None, None) => MediaType::Chat,
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SendBody {
    /// Required with `number`; with `ticketId` the ticket's connection is used.
    connection_id: Option<i64>,
    /// The recipient's number; give this or `ticketId`.
    number: Option<String>,
    ticket_id: Option<i64>,
    /// Text, or the caption of a media message.
    #[serde(default)]
    body: String,
    media_url: Option<String>,
    media_type: Option<MediaType>,
    /// `messageId` of the message this one replies to.
    quoted_message_id: Option<String>,
    /// Sets `apiConfig.externalKey` on the ticket.
    external_key: Option<String>,
    /// The agent sending; makes `sendType` default to `manual`.
    user_id: Option<i64>,
    /// Defaults to `manual` with `userId`, else `API`.
    send_type: Option<SendType>,
    /// A document's file name, as the recipient sees it.
    file_name: Option<String>,
    /// A message template (`{name, language, components?}` as the Cloud API takes it; cloud
    /// connections only): the only kind of message Meta delivers outside the 24-hour
    /// customer-service window.
    #[schema(value_type = Option<Object>)]
    template: Option<Template>,
    /// A location pin; the message's body is its text (the lines name, address and
    /// `latitude,longitude`), so `body` stays out.
    location: Option<LocationBody>,
    /// A contact card; the message's body is its text (`displayName: telephone`), so `body`
    /// stays out.
    contacts: Option<ContactBody>,
}

/// A location pin to send.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LocationBody {
    /// Degrees from -90 to 90: a number, or a string of one.
    #[schema(value_type = f64)]
    latitude: Option<Value>,
    /// Degrees from -180 to 180: a number, or a string of one.
    #[schema(value_type = f64)]
    longitude: Option<Value>,
    /// The place's name.
    name: Option<String>,
    /// The place's address.
    address: Option<String>,
}

/// The keys of a [`LocationBody`].
pub const LOCATION_KEYS: &[&str] = &["latitude", "longitude", "name", "address"];

/// A contact card to send: a name and one telephone.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContactBody {
    /// The name on the card.
    #[serde(default, deserialize_with = "text_field")]
    #[schema(value_type = String, required = true)]
    display_name: Option<String>,
    /// The telephone on the card (a string, or a number); when it is a phone number the card
    /// also carries its WhatsApp id, so the recipient can write to it.
    #[serde(default, deserialize_with = "text_field")]
    #[schema(value_type = String, required = true)]
    telephone: Option<String>,
}

/// The keys of a [`ContactBody`].
pub const CONTACT_KEYS: &[&str] = &["displayName", "telephone"];

/// Longest name or address of a location pin.
const MAX_PLACE: usize = 1000;

/// Checks a location pin; `field` names it in the answer (`location`, `contents`).
pub fn check_location(checks: &mut Checks, field: &str, body: LocationBody) -> Location {
    let latitude = coordinate(checks, &format!("{field}.latitude"), body.latitude, 90.0);
    let longitude = coordinate(checks, &format!("{field}.longitude"), body.longitude, 180.0);
    let name = checks.optional_text(&format!("{field}.name"), body.name.as_deref(), MAX_PLACE);
    let address = checks.optional_text(
        &format!("{field}.address"),
        body.address.as_deref(),
        MAX_PLACE,
    );
    Location {
        latitude,
        longitude,
        name,
        address,
    }
}

/// A coordinate in degrees from `-max` to `max`, written as a number or a string of one.
fn coordinate(checks: &mut Checks, field: &str, value: Option<Value>, max: f64) -> f64 {
    let degrees = match &value {
        None | Some(Value::Null) => {
            checks.fail(field, "is required");
            return 0.0;
        }
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
        Some(_) => None,
    };
    match degrees {
        Some(d) if d.is_finite() && d.abs() <= max => d,
        Some(_) => {
            checks.fail(field, format!("must be from -{max} to {max} degrees"));
            0.0
        }
        None => {
            checks.fail(field, "must be a number of degrees (like -23.5505)");
            0.0
        }
    }
}

/// Checks a contact card; `field` names it in the answer (`contacts`, `contents`).
pub fn check_contact(checks: &mut Checks, field: &str, body: ContactBody) -> ContactCard {
    let name = checks.text(
        &format!("{field}.displayName"),
        body.display_name.as_deref().unwrap_or_default(),
        255,
    );
    let phone = checks.text(
        &format!("{field}.telephone"),
        body.telephone.as_deref().unwrap_or_default(),
        64,
    );
    ContactCard::new(name, phone)
}

/// Sends a message. The ticket is found or created; the answer comes once the message is
/// stored and queued (`status: pending`, `messageId: null`); `message.created` follows when the
/// channel accepts it.
#[utoipa::path(post, path = "/api/v1/messages", tag = "messages", request_body = SendBody,
    responses((status = 202, body = Message), (status = 404, body = super::Problem),
        (status = 409, body = super::Problem), (status = 422, body = super::Problem)))]
async fn send_message(
    State(state): State<AppState>,
    Company(company): Company,
    Json(body): Json<SendBody>,
) -> ApiResult<(StatusCode, axum::Json<Message>)> {
    let mut checks = Checks::default();
    let to = match (&body.number, body.ticket_id) {
        (Some(number), None) => {
            let (number, is_group) = checks.number("number", number);
            match body.connection_id {
                Some(connection_id) => Recipient::Number {
                    connection_id,
                    number,
                    is_group,
                },
                None => {
                    checks.fail("connectionId", "required when sending to a number");
                    Recipient::Ticket {
                        id: 0,
                        connection_id: None,
                    }
                }
            }
        }
        (None, Some(ticket_id)) => Recipient::Ticket {
            id: ticket_id,
            connection_id: body.connection_id,
        },
        _ => {
            checks.fail("number", "give exactly one of number and ticketId");
            Recipient::Ticket {
                id: 0,
                connection_id: None,
            }
        }
    };
    let mut media_type = media(&mut checks, body.media_type, body.media_url.as_deref());
    let location = body
        .location
        .map(|l| check_location(&mut checks, "location", l));
    let contacts = body
        .contacts
        .map(|c| vec![check_contact(&mut checks, "contacts", c)]);
    // A location pin or a contact card is its own body.
    let mut text = body.body;
    let rich = [
        (
            "location",
            MediaType::Location,
            location.as_ref().map(content::location_body),
        ),
        (
            "contacts",
            MediaType::Contacts,
            contacts.as_deref().map(content::contacts_body),
        ),
    ];
    let mut given = rich
        .into_iter()
        .filter_map(|(field, kind, rendered)| Some((field, kind, rendered?)));
    if let Some((field, kind, rendered)) = given.next() {
        if given.next().is_some() {
            checks.fail("contacts", "give location or contacts, not both");
        }
        if body.template.is_some() {
            checks.fail(field, format!("give a template or {field}, not both"));
        }
        if body.media_url.is_some() {
            checks.fail(field, format!("a {kind} message has no mediaUrl"));
        }
        if body.media_type.is_some_and(|t| t != kind) {
            checks.fail(
                "mediaType",
                format!("must be {kind} (or left out) with {field}"),
            );
        }
        if !text.trim().is_empty() {
            checks.fail(
                "body",
                format!("a {kind} message's body is the text of its {field}"),
            );
        }
        media_type = kind;
        text = rendered;
    } else if matches!(media_type, MediaType::Location | MediaType::Contacts) {
        let field = media_type.as_str();
        checks.fail(field, format!("a {field} message needs its {field} object"));
    }
    if text.trim().is_empty() && media_type == MediaType::Chat && body.template.is_none() {
        checks.fail("body", "a text message needs a body");
    }
    checks.text_at_most("body", &text, MAX_TEXT);
    let template = body.template.map(|t| check_template(&mut checks, t));
    if template.is_some() && body.media_url.is_some() {
        checks.fail("template", "a template carries its media in its components");
    }
    let file_name = checks.optional_text("fileName", body.file_name.as_deref(), 240);
    if file_name.is_some() && media_type != MediaType::Document {
        checks.fail("fileName", "only a document has a file name");
    }
    if body.send_type == Some(SendType::Phone) {
        checks.fail(
            "sendType",
            "phone is for messages typed on the WhatsApp Business app",
        );
    }
    let send_type = body.send_type.unwrap_or(if body.user_id.is_some() {
        SendType::Manual
    } else {
        SendType::Api
    });
    if send_type == SendType::Manual && body.user_id.is_none() {
        checks.fail("userId", "a manual send names the agent sending it");
    }
    let external_key = checks.optional_text("externalKey", body.external_key.as_deref(), 255);
    let quoted = checks.optional_text("quotedMessageId", body.quoted_message_id.as_deref(), 255);
    checks.done()?;
    let cmd = SendMessage {
        to,
        body: text,
        media_type,
        media_url: body.media_url.map(|u| u.trim().to_string()),
        quoted_message_id: quoted,
        external_key,
        api_config_id: None,
        user_id: body.user_id,
        send_type,
        file_name,
        template,
        location,
        contacts,
        cloud_message: None,
    };
    let message = state.ingest.send(company, cmd).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(message)))
}

/// Checks a template: a name as Meta allows (lowercase letters, digits, underscores), a
/// language code, and components as a list.
fn check_template(checks: &mut Checks, t: Template) -> Template {
    let name = checks.text("template.name", &t.name, 512);
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        checks.fail(
            "template.name",
            "must be lowercase letters, digits and underscores, as in Meta's template manager",
        );
    }
    let language = checks.text("template.language", &t.language, 16);
    if !language
        .chars()
        .all(|c| c.is_ascii_alphabetic() || c == '_' || c == '-')
    {
        checks.fail(
            "template.language",
            "must be a language code like pt_BR or en_US",
        );
    }
    if t.components.as_ref().is_some_and(|c| !c.is_array()) {
        checks.fail(
            "template.components",
            "must be a list, as the Cloud API takes it",
        );
    }
    Template {
        name,
        language,
        components: t.components,
    }
}

/// One message, by its `id` (`msg_…`) or the channel's `messageId`.
#[utoipa::path(get, path = "/api/v1/messages/{id}", tag = "messages", params(("id" = String, Path)),
    responses((status = 200, body = Message), (status = 404, body = super::Problem),
        (status = 409, body = super::Problem)))]
async fn get_message(
    State(state): State<AppState>,
    Company(company): Company,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Message>> {
    let message = store::read(&state.ingest.store, move |tx| {
        ingest::resolve_message(tx, company, &id)
    })
    .await?;
    Ok(axum::Json(message))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EditBody {
    body: String,
}

/// An agent edits a message we sent → `message.updated` with `edited: true`.
#[utoipa::path(patch, path = "/api/v1/messages/{id}", tag = "messages", params(("id" = String, Path)),
    request_body = EditBody,
    responses((status = 200, body = Message), (status = 404, body = super::Problem),
        (status = 409, body = super::Problem)))]
async fn edit_message(
    State(state): State<AppState>,
    Company(company): Company,
    Path(id): Path<String>,
    Json(body): Json<EditBody>,
) -> ApiResult<axum::Json<Message>> {
    let mut checks = Checks::default();
    let text = checks.text("body", &body.body, MAX_TEXT);
    checks.done()?;
    let message = state
        .ingest
        .run(company, move |tx, company, now| {
            ingest::edit_message(tx, company, now, &id, &text)
        })
        .await?;
    Ok(axum::Json(message))
}

/// Deletes a message we sent, for everyone → `message.updated` with `isDeleted: true`.
#[utoipa::path(delete, path = "/api/v1/messages/{id}", tag = "messages", params(("id" = String, Path)),
    responses((status = 200, body = Message), (status = 404, body = super::Problem),
        (status = 409, body = super::Problem)))]
async fn delete_message(
    State(state): State<AppState>,
    Company(company): Company,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Message>> {
    let message = state
        .ingest
        .run(company, move |tx, company, now| {
            ingest::delete_message(tx, company, now, &id)
        })
        .await?;
    Ok(axum::Json(message))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReactionBody {
    /// One emoji; empty removes the agent's reaction.
    emoji: String,
    user_id: i64,
}

/// Checks a reaction emoji: empty (removal) or one short grapheme sequence.
pub fn emoji(checks: &mut Checks, value: &str) -> String {
    let value = value.trim();
    if value.chars().count() > 16 {
        checks.fail(
            "emoji",
            "must be one emoji, or empty to remove the reaction",
        );
    }
    value.to_string()
}

/// An agent reacts to a message → `message.updated`.
#[utoipa::path(post, path = "/api/v1/messages/{id}/reactions", tag = "messages",
    params(("id" = String, Path)), request_body = ReactionBody,
    responses((status = 200, body = Message), (status = 404, body = super::Problem),
        (status = 422, body = super::Problem)))]
async fn react(
    State(state): State<AppState>,
    Company(company): Company,
    Path(id): Path<String>,
    Json(body): Json<ReactionBody>,
) -> ApiResult<axum::Json<Message>> {
    let mut checks = Checks::default();
    let emoji = emoji(&mut checks, &body.emoji);
    checks.done()?;
    let user_id = body.user_id;
    let message = state
        .ingest
        .run(company, move |tx, company, now| {
            ingest::agent_reaction(tx, company, now, &id, user_id, &emoji)
        })
        .await?;
    Ok(axum::Json(message))
}
