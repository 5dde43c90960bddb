//! The external API's contact routes (create, update, find by number or id) and the state of
//! the API config's connection.

use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Body, Caller, ExternalError, ExternalResult, id_field, text_field};
use crate::api::AppState;
use crate::api::error::Checks;
use crate::domain::{Channel, Contact, ExtraInfo};
use crate::store::{self, NewContact, StoreError};

/// A contact as WHAZING answers it.
pub fn contact_json(contact: &Contact) -> Value {
    json!({
        "id": contact.id,
        "name": contact.name,
        "number": contact.number,
        "email": contact.email.clone().unwrap_or_default(),
        "profilePicUrl": contact.profile_pic_url,
        "pushname": contact.pushname,
        "isGroup": contact.is_group,
        "lid": contact.lid,
        "bsuid": contact.bsuid,
        "username": contact.username,
        "extraInfo": contact.extra_info,
        "createdAt": crate::domain::rfc3339::format(contact.created_at),
    })
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateBody {
    #[serde(default, deserialize_with = "text_field")]
    name: Option<String>,
    #[serde(default, deserialize_with = "text_field")]
    number: Option<String>,
    #[serde(default, deserialize_with = "text_field")]
    email: Option<String>,
    extra_info: Option<Value>,
}

fn check_email(checks: &mut Checks, email: Option<&str>) -> Option<String> {
    let email = checks
        .optional_text("email", email, 254)
        .filter(|e| !e.is_empty());
    if email.as_ref().is_some_and(|e| !e.contains('@')) {
        checks.fail("email", "must be an email address");
    }
    email
}

/// Most custom fields a contact keeps.
const MAX_FIELDS: usize = 50;

/// `extraInfo` as WHAZING sends it, `[{name, value}]` (other keys of an item, such as an
/// `id`, are ignored; a number or boolean value is kept as its text). `None` when absent.
fn extra_info(extra: Option<&Value>) -> ExternalResult<Option<Vec<ExtraInfo>>> {
    let items = match extra {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(items)) => items,
        Some(_) => {
            return Err(ExternalError::bad_request(
                "extraInfo must be a list of {name, value}",
            ));
        }
    };
    if items.len() > MAX_FIELDS {
        return Err(ExternalError::bad_request(format!(
            "extraInfo may have at most {MAX_FIELDS} fields"
        )));
    }
    let mut fields: Vec<ExtraInfo> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let name = match item.get("name") {
            Some(Value::String(name)) if !name.trim().is_empty() => name.trim(),
            _ => {
                return Err(ExternalError::bad_request(format!(
                    "extraInfo[{i}].name must be a text that is not empty"
                )));
            }
        };
        let value = match item.get("value") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(text)) => text.clone(),
            Some(v @ (Value::Number(_) | Value::Bool(_))) => v.to_string(),
            Some(_) => {
                return Err(ExternalError::bad_request(format!(
                    "extraInfo[{i}].value must be a text or a number"
                )));
            }
        };
        if name.chars().count() > 100 || value.chars().count() > 2000 {
            return Err(ExternalError::bad_request(format!(
                "extraInfo[{i}]: a name has at most 100 characters and a value 2000"
            )));
        }
        if value.contains('\0') || name.contains('\0') {
            return Err(ExternalError::bad_request(format!(
                "extraInfo[{i}] must not contain NUL characters"
            )));
        }
        if fields.iter().any(|f| f.name == name) {
            return Err(ExternalError::bad_request(format!(
                "extraInfo has the field {name:?} twice"
            )));
        }
        fields.push(ExtraInfo {
            name: name.to_string(),
            value,
        });
    }
    Ok(Some(fields))
}

/// `POST /createcontact`: a new contact; a number the company has already is refused.
pub async fn create(
    State(state): State<AppState>,
    Caller(config): Caller,
    Body(body): Body<CreateBody>,
) -> ExternalResult<axum::Json<Value>> {
    let fields = extra_info(body.extra_info.as_ref())?;
    let mut checks = Checks::default();
    let (Some(name), Some(number)) = (body.name.as_deref(), body.number.as_deref()) else {
        return Err(ExternalError::bad_request(
            "name and number are required fields",
        ));
    };
    let name = checks.text("name", name, 200);
    let (number, is_group) = checks.number("number", number);
    let email = check_email(&mut checks, body.email.as_deref());
    checks.done()?;
    let now = state.ingest.clock.now_ms();
    let company = config.company_id;
    let created = store::write(&state.ingest.store, move |tx| {
        if tx.contact_by_number(company, &number)?.is_some() {
            return Ok(None);
        }
        let contact = NewContact {
            number: Some(&number),
            name: &name,
            email: email.as_deref(),
            is_group,
            ..NewContact::default()
        };
        let mut contact = tx.insert_contact(company, &contact, now)?;
        if let Some(fields) = &fields {
            contact.extra_info = fields.clone();
            tx.update_contact(&contact)?;
        }
        Ok::<_, StoreError>(Some(contact))
    })
    .await?;
    match created {
        Some(contact) => Ok(axum::Json(contact_json(&contact))),
        None => Err(ExternalError::bad_request("ERR_DUPLICATED_CONTACT")),
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FindBody {
    #[serde(default, deserialize_with = "id_field")]
    contact_id: Option<i64>,
    #[serde(default, deserialize_with = "text_field")]
    number: Option<String>,
}

/// Which contact a body names: `contactId`, else `number` (normalised).
enum Which {
    Id(i64),
    Number(String),
}

fn which(contact_id: Option<i64>, number: Option<&str>) -> ExternalResult<Which> {
    match (contact_id, number) {
        (Some(id), _) => Ok(Which::Id(id)),
        (None, Some(raw)) => {
            let mut checks = Checks::default();
            let (number, _) = checks.number("number", raw);
            checks.done()?;
            Ok(Which::Number(number))
        }
        (None, None) => Err(ExternalError::bad_request("give number or contactId")),
    }
}

fn find(
    tx: &mut dyn store::Tx,
    company: i64,
    which: &Which,
) -> Result<Option<Contact>, StoreError> {
    match which {
        Which::Id(id) => tx.contact(company, *id),
        Which::Number(number) => tx.contact_by_number(company, number),
    }
}

/// `POST /contact`: the contact with that number or id, or 404.
pub async fn show(
    State(state): State<AppState>,
    Caller(config): Caller,
    Body(body): Body<FindBody>,
) -> ExternalResult<axum::Json<Value>> {
    let which = which(body.contact_id, body.number.as_deref())?;
    let company = config.company_id;
    store::read(&state.ingest.store, move |tx| find(tx, company, &which))
        .await?
        .map(|c| axum::Json(contact_json(&c)))
        .ok_or_else(|| ExternalError::not_found("ERR_NO_CONTACT_FOUND"))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateBody {
    #[serde(default, deserialize_with = "id_field")]
    contact_id: Option<i64>,
    #[serde(default, deserialize_with = "text_field")]
    number: Option<String>,
    #[serde(default, deserialize_with = "text_field")]
    name: Option<String>,
    #[serde(default, deserialize_with = "text_field")]
    email: Option<String>,
    extra_info: Option<Value>,
}

/// `POST /updatecontact`: changes the name, email or custom fields of the contact named by
/// `contactId` (or by `number`, which is then its key and not a change).
pub async fn update(
    State(state): State<AppState>,
    Caller(config): Caller,
    Body(body): Body<UpdateBody>,
) -> ExternalResult<axum::Json<Value>> {
    let fields = extra_info(body.extra_info.as_ref())?;
    let which = which(body.contact_id, body.number.as_deref())?;
    let mut checks = Checks::default();
    let name = checks.optional_text("name", body.name.as_deref(), 200);
    if name.as_deref() == Some("") {
        checks.fail("name", "must not be empty");
    }
    let email = check_email(&mut checks, body.email.as_deref());
    checks.done()?;
    let company = config.company_id;
    let updated = store::write(&state.ingest.store, move |tx| {
        let Some(mut contact) = find(tx, company, &which)? else {
            return Ok(None);
        };
        if let Some(name) = &name {
            contact.name = name.clone();
        }
        if email.is_some() {
            contact.email = email.clone();
        }
        // Given, the list replaces the contact's fields, as WHAZING's does.
        if let Some(fields) = &fields {
            contact.extra_info = fields.clone();
        }
        tx.update_contact(&contact)?;
        Ok::<_, StoreError>(Some(contact))
    })
    .await?;
    updated
        .map(|c| axum::Json(contact_json(&c)))
        .ok_or_else(|| ExternalError::not_found("ERR_NO_CONTACT_FOUND"))
}

/// `GET /statuschannel`: the connection's state. A sandbox connection is always connected; a
/// Cloud API one is disconnected while Meta refuses its access token.
pub async fn status_channel(
    State(state): State<AppState>,
    Caller(config): Caller,
) -> ExternalResult<axum::Json<Value>> {
    let (company, id) = (config.company_id, config.connection_id);
    let connection = store::read(&state.ingest.store, move |tx| tx.connection(company, id))
        .await?
        .ok_or_else(|| ExternalError::not_found("ERR_NO_WAPP_FOUND"))?;
    Ok(axum::Json(json!({
        "id": connection.id,
        "name": connection.name,
        "channel": match connection.channel {
            Channel::Sandbox => "sandbox",
            Channel::Cloud => "waba",
        },
        "number": connection.phone_number_id,
        "status": connection.session_status(),
    })))
}
