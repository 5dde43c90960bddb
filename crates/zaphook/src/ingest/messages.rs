//! The commands about messages: inbound from a contact, sends and their acceptance by the
//! channel, delivery statuses, reactions, an agent's edits and deletes.

use super::*;

fn summary(body: &str, media_type: MediaType) -> String {
    if body.is_empty() && media_type != MediaType::Chat {
        format!("[{media_type}]")
    } else {
        body.to_string()
    }
}

/// Files a message of a conversation that came through the channel: sent by the contact, or
/// (an echo) by the business from its own phone. The same channel id twice on one connection
/// is one message.
pub fn inbound(
    tx: &mut dyn Tx,
    company_id: i64,
    now: i64,
    cmd: &InboundMessage,
) -> IngestResult<Message> {
    let connection = tx
        .connection(company_id, cmd.connection_id)?
        .ok_or_else(|| not_found(format!("connection {}", cmd.connection_id)))?;
    if connection.channel != cmd.channel {
        return Err(IngestError::Conflict(format!(
            "connection {} is a {} connection, not {}",
            connection.id, connection.channel, cmd.channel
        )));
    }
    if let Some(existing) = tx.message_by_channel_id(connection.id, &cmd.message_id)? {
        return Ok(existing);
    }
    // An echo's profile name is not the contact's (the business's phone sent it).
    let name = if cmd.echo { None } else { cmd.name.as_deref() };
    let contact = find_or_create_contact(tx, company_id, now, &cmd.contact, cmd.is_group, name)?;
    let participant = match cmd.participant.as_ref().filter(|_| cmd.is_group) {
        Some(p) => {
            Some(find_or_create_contact(tx, company_id, now, &p.who, false, p.name.as_deref())?.id)
        }
        None => None,
    };
    let (mut ticket, created) =
        find_or_create_ticket(tx, company_id, now, connection.id, &contact)?;
    ticket.last_message = summary(&cmd.body, cmd.media_type);
    ticket.updated_at = now;
    tx.update_ticket(&ticket)?;
    let message = Message {
        id: domain::new_message_id(),
        message_id: Some(cmd.message_id.clone()),
        connection_id: connection.id,
        ticket_id: ticket.id,
        contact_id: contact.id,
        body: cmd.body.clone(),
        timestamp: cmd.timestamp,
        status: if cmd.echo {
            MessageStatus::Sended
        } else {
            MessageStatus::Received
        },
        from_me: cmd.echo,
        media_type: cmd.media_type,
        media_url: cmd.media_url.clone(),
        is_deleted: false,
        send_type: cmd.echo.then_some(SendType::Phone),
        edited: false,
        reactions: Vec::new(),
        quoted_message_id: cmd.quoted_message_id.clone(),
        user_id: None,
        error: None,
        original: cmd.original.clone(),
        participant_id: participant,
        created_at: now,
    };
    tx.insert_message(company_id, &message)?;
    let known = Known {
        contact: Some(&contact),
        connection: Some(&connection),
    };
    if created {
        emit_ticket(
            tx,
            company_id,
            now,
            TicketEventKind::NewTicket,
            &ticket,
            None,
            known,
        )?;
    }
    emit_message(
        tx,
        company_id,
        now,
        EventType::MessageCreated,
        &message,
        &ticket,
        known,
    )?;
    Ok(message)
}

/// Accepts a message to send: stores it `pending` and queues it for its channel. The ticket is
/// found or created; `message.created` follows when the channel accepts the message.
pub fn send(
    tx: &mut dyn Tx,
    company_id: i64,
    now: i64,
    cmd: &SendMessage,
) -> IngestResult<Message> {
    require_user(tx, company_id, cmd.user_id)?;
    let (mut ticket, created) = match &cmd.to {
        Recipient::Ticket { id, connection_id } => {
            let ticket = tx
                .ticket(company_id, *id)?
                .ok_or_else(|| not_found(format!("ticket {id}")))?;
            if connection_id.is_some_and(|c| c != ticket.connection_id) {
                return Err(invalid(
                    "connectionId",
                    format!("ticket {id} is on connection {}", ticket.connection_id),
                ));
            }
            if ticket.status == TicketStatus::Closed {
                return Err(IngestError::Conflict(format!(
                    "ticket {id} is closed; send to the number to open a new ticket"
                )));
            }
            (ticket, false)
        }
        Recipient::Number {
            connection_id,
            number,
            is_group,
        } => {
            if tx.connection(company_id, *connection_id)?.is_none() {
                return Err(invalid(
                    "connectionId",
                    format!("connection {connection_id} does not exist"),
                ));
            }
            let who = Identity::number(number.clone());
            let contact = find_or_create_contact(tx, company_id, now, &who, *is_group, None)?;
            find_or_create_ticket(tx, company_id, now, *connection_id, &contact)?
        }
    };
    let channel = tx
        .connection(company_id, ticket.connection_id)?
        .map(|c| c.channel);
    if cmd.template.is_some() && channel != Some(Channel::Cloud) {
        return Err(invalid(
            "template",
            "templates are sent through Cloud API connections only",
        ));
    }
    if cmd.cloud_message.is_some() && channel != Some(Channel::Cloud) {
        return Err(invalid(
            "contents",
            "a Cloud API message object needs a Cloud API (cloud) connection; this one is not",
        ));
    }
    if cmd.external_key.is_some() {
        ticket.external_key = cmd.external_key.clone();
    }
    if cmd.api_config_id.is_some() {
        ticket.api_config_id = cmd.api_config_id.clone();
    }
    ticket.last_message = summary(&cmd.body, cmd.media_type);
    ticket.updated_at = now;
    tx.update_ticket(&ticket)?;
    let message = Message {
        id: domain::new_message_id(),
        message_id: None,
        connection_id: ticket.connection_id,
        ticket_id: ticket.id,
        contact_id: ticket.contact_id,
        body: cmd.body.clone(),
        timestamp: now,
        status: MessageStatus::Pending,
        from_me: true,
        media_type: cmd.media_type,
        media_url: cmd.media_url.clone(),
        is_deleted: false,
        send_type: Some(cmd.send_type),
        edited: false,
        reactions: Vec::new(),
        quoted_message_id: cmd.quoted_message_id.clone(),
        user_id: cmd.user_id,
        error: None,
        original: None,
        participant_id: None,
        created_at: now,
    };
    tx.insert_message(company_id, &message)?;
    let request = SendRequest {
        template: cmd.template.clone(),
        file_name: cmd.file_name.clone(),
        emoji: None,
        location: cmd.location.clone(),
        contacts: cmd.contacts.clone(),
        cloud_message: cmd.cloud_message.clone(),
    };
    tx.insert_send_job(
        &SendJob {
            id: message.id.clone(),
            message_id: message.id.clone(),
            company_id,
            connection_id: ticket.connection_id,
            kind: SendKind::Message,
            request: request.to_json(),
            attempts: 0,
            lease: 0,
        },
        now,
    )?;
    if created {
        emit_ticket(
            tx,
            company_id,
            now,
            TicketEventKind::NewTicketUserCreate,
            &ticket,
            None,
            Known::default(),
        )?;
    }
    Ok(message)
}

/// The channel accepted the message of send job `job` under `channel_id`: it becomes
/// `sended` and `message.created` (fromMe) is appended. Answers `None`, changing nothing, when
/// the lease the job was claimed under is no longer its own (another worker holds it now).
pub fn accept_outbound(
    tx: &mut dyn Tx,
    company_id: i64,
    now: i64,
    job: &SendJob,
    channel_id: &str,
) -> IngestResult<Option<Message>> {
    if !tx.finish_send_job(&job.id, job.lease)? {
        return Ok(None);
    }
    let mut message = tx
        .message(company_id, &job.message_id)?
        .ok_or_else(|| not_found(format!("message {}", job.message_id)))?;
    if job.kind == SendKind::Reaction {
        return Ok(Some(message));
    }
    let ticket = ticket_of(tx, company_id, &message)?;
    message.message_id = Some(channel_id.to_string());
    let sent = message.status.can_advance_to(MessageStatus::Sended);
    if sent {
        message.status = MessageStatus::Sended;
    }
    tx.update_message(&message)?;
    emit_message(
        tx,
        company_id,
        now,
        EventType::MessageCreated,
        &message,
        &ticket,
        Known::default(),
    )?;
    if sent {
        emit_ack(tx, company_id, now, &message, &ticket)?;
    }
    Ok(Some(message))
}

/// The channel refused the message of send job `job` for good: it becomes `failed` with the
/// channel's reason and `message.updated` is appended. `None` when the lease is not ours.
pub fn fail_outbound(
    tx: &mut dyn Tx,
    company_id: i64,
    now: i64,
    job: &SendJob,
    error: MessageError,
) -> IngestResult<Option<Message>> {
    if !tx.finish_send_job(&job.id, job.lease)? {
        return Ok(None);
    }
    let mut message = tx
        .message(company_id, &job.message_id)?
        .ok_or_else(|| not_found(format!("message {}", job.message_id)))?;
    if job.kind == SendKind::Reaction || !message.status.can_advance_to(MessageStatus::Failed) {
        return Ok(Some(message));
    }
    message.status = MessageStatus::Failed;
    message.error = Some(error);
    tx.update_message(&message)?;
    announce_status(tx, company_id, now, &message)?;
    Ok(Some(message))
}

/// What a send job sends beyond the message's own fields.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SendRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<Template>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_name: Option<String>,
    /// A reaction job's emoji (empty removes ours).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emoji: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contacts: Option<Vec<ContactCard>>,
    /// A Cloud API message object sent as it is (`type` and its part, `context`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_message: Option<serde_json::Map<String, serde_json::Value>>,
}

impl SendRequest {
    fn to_json(&self) -> Option<String> {
        (*self != SendRequest::default()).then(|| serde_json::to_string(self).unwrap_or_default())
    }

    /// The request of a job as stored; an unreadable one is an empty request.
    pub fn of(job: &SendJob) -> SendRequest {
        job.request
            .as_deref()
            .and_then(|text| serde_json::from_str(text).ok())
            .unwrap_or_default()
    }
}

/// The media of an inbound message arrived: its URL is set and `message.updated` appended.
pub fn set_media(
    tx: &mut dyn Tx,
    company_id: i64,
    now: i64,
    message_id: &str,
    media_url: &str,
) -> IngestResult<Message> {
    let mut message = tx
        .message(company_id, message_id)?
        .ok_or_else(|| not_found(format!("message {message_id}")))?;
    message.media_url = Some(media_url.to_string());
    tx.update_message(&message)?;
    announce_update(tx, company_id, now, &message)?;
    Ok(message)
}

/// Appends `message.updated` for a message that changed; answers its ticket.
fn announce_update(
    tx: &mut dyn Tx,
    company_id: i64,
    now: i64,
    message: &Message,
) -> IngestResult<Ticket> {
    let ticket = ticket_of(tx, company_id, message)?;
    emit_message(
        tx,
        company_id,
        now,
        EventType::MessageUpdated,
        message,
        &ticket,
        Known::default(),
    )?;
    Ok(ticket)
}

/// Appends `message.updated` for a message whose status changed, and its ack for the hook of
/// the API config that last used its ticket.
fn announce_status(
    tx: &mut dyn Tx,
    company_id: i64,
    now: i64,
    message: &Message,
) -> IngestResult<()> {
    let ticket = announce_update(tx, company_id, now, message)?;
    emit_ack(tx, company_id, now, message, &ticket)
}

fn ticket_of(tx: &mut dyn Tx, company_id: i64, message: &Message) -> IngestResult<Ticket> {
    tx.ticket(company_id, message.ticket_id)?
        .ok_or_else(|| not_found(format!("ticket {}", message.ticket_id)))
}

/// A delivery status from the channel for a message we sent. Moves only forward; a status that
/// would move it back changes nothing and emits nothing.
pub fn status_update(
    tx: &mut dyn Tx,
    company_id: i64,
    now: i64,
    connection_id: i64,
    channel_id: &str,
    status: MessageStatus,
    error: Option<MessageError>,
) -> IngestResult<Message> {
    let mut message = tx
        .message_by_channel_id(connection_id, channel_id)?
        .filter(|m| m.from_me)
        .ok_or_else(|| not_found(format!("sent message {channel_id}")))?;
    if !message.status.can_advance_to(status) {
        return Ok(message);
    }
    message.status = status;
    if status == MessageStatus::Failed {
        message.error = error;
    }
    tx.update_message(&message)?;
    announce_status(tx, company_id, now, &message)?;
    Ok(message)
}

/// Sets or (with an empty emoji) removes one reactor's reaction on a message.
pub fn react(
    tx: &mut dyn Tx,
    company_id: i64,
    now: i64,
    mut message: Message,
    reactor: Reactor,
    emoji: &str,
) -> IngestResult<Message> {
    let reaction = (!emoji.is_empty()).then(|| Reaction {
        emoji: emoji.to_string(),
        from_me: matches!(reactor, Reactor::User(_)),
        user_id: match reactor {
            Reactor::User(id) => Some(id),
            Reactor::Contact(_) => None,
        },
        contact_id: match reactor {
            Reactor::Contact(id) => Some(id),
            Reactor::User(_) => None,
        },
        timestamp: now,
    });
    tx.set_reaction(&message.id, reactor, reaction.as_ref())?;
    message.reactions = tx
        .message(company_id, &message.id)?
        .map(|m| m.reactions)
        .unwrap_or_default();
    announce_update(tx, company_id, now, &message)?;
    Ok(message)
}

/// A contact of a connection reacts to one of the connection's messages.
pub fn contact_reaction(
    tx: &mut dyn Tx,
    company_id: i64,
    now: i64,
    connection_id: i64,
    from: &Identity,
    channel_id: &str,
    emoji: &str,
) -> IngestResult<Message> {
    let message = tx
        .message_by_channel_id(connection_id, channel_id)?
        .ok_or_else(|| not_found(format!("message {channel_id}")))?;
    let contact = known_contact(tx, company_id, from)?;
    react(
        tx,
        company_id,
        now,
        message,
        Reactor::Contact(contact.id),
        emoji,
    )
}

/// The existing contact of an identity.
fn known_contact(tx: &mut dyn Tx, company_id: i64, who: &Identity) -> IngestResult<Contact> {
    if let Some(bsuid) = &who.bsuid
        && let Some(contact) = tx.contact_by_bsuid(company_id, bsuid)?
    {
        return Ok(contact);
    }
    if let Some(number) = &who.number
        && let Some(contact) = tx.contact_by_number(company_id, number)?
    {
        return Ok(contact);
    }
    Err(not_found(format!("contact {}", who.describe())))
}

/// A received message of the contact `from` on the connection, by its channel id.
fn contacts_message(
    tx: &mut dyn Tx,
    company_id: i64,
    connection_id: i64,
    from: &Identity,
    channel_id: &str,
) -> IngestResult<Message> {
    let contact = known_contact(tx, company_id, from)?;
    tx.message_by_channel_id(connection_id, channel_id)?
        .filter(|m| !m.from_me && m.contact_id == contact.id)
        .ok_or_else(|| not_found(format!("message {channel_id} of {}", from.describe())))
}

/// The contact edited a message they sent: its new text, `edited: true`, `message.updated`.
/// An edit to content zaphook cannot read (`body: None`) still marks the message edited.
pub fn contact_edit(
    tx: &mut dyn Tx,
    company_id: i64,
    now: i64,
    connection_id: i64,
    from: &Identity,
    channel_id: &str,
    body: Option<&str>,
) -> IngestResult<Message> {
    let message = contacts_message(tx, company_id, connection_id, from, channel_id)?;
    set_edited(tx, company_id, now, message, body)
}

/// Marks a message edited, with its new text when known, and announces it.
fn set_edited(
    tx: &mut dyn Tx,
    company_id: i64,
    now: i64,
    mut message: Message,
    body: Option<&str>,
) -> IngestResult<Message> {
    if let Some(body) = body {
        message.body = body.to_string();
    }
    message.edited = true;
    tx.update_message(&message)?;
    announce_update(tx, company_id, now, &message)?;
    Ok(message)
}

/// The contact deleted a message they sent, for everyone → `isDeleted: true`.
pub fn contact_revoke(
    tx: &mut dyn Tx,
    company_id: i64,
    now: i64,
    connection_id: i64,
    from: &Identity,
    channel_id: &str,
) -> IngestResult<Message> {
    let mut message = contacts_message(tx, company_id, connection_id, from, channel_id)?;
    if message.is_deleted {
        return Ok(message);
    }
    message.is_deleted = true;
    tx.update_message(&message)?;
    announce_update(tx, company_id, now, &message)?;
    Ok(message)
}

/// The user's business-scoped id changed: their contact moves to the new one. Answers the
/// contact, if zaphook knew them.
pub fn change_user_id(
    tx: &mut dyn Tx,
    company_id: i64,
    from: &Identity,
    new_bsuid: &str,
) -> IngestResult<Option<Contact>> {
    if tx.contact_by_bsuid(company_id, new_bsuid)?.is_some() {
        return Ok(None);
    }
    let mut contact = match known_contact(tx, company_id, from) {
        Ok(contact) => contact,
        Err(IngestError::NotFound(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    contact.bsuid = Some(new_bsuid.to_string());
    tx.update_contact(&contact)?;
    Ok(Some(contact))
}

/// Finds a message by zaphook's id (`msg_…`) or by the channel's id; a channel id used on
/// two connections is ambiguous.
pub fn resolve_message(tx: &mut dyn Tx, company_id: i64, id: &str) -> IngestResult<Message> {
    if let Some(m) = tx.message(company_id, id)? {
        return Ok(m);
    }
    let mut found = tx.messages_by_channel_id(company_id, id)?;
    match found.len() {
        0 => Err(not_found(format!("message {id}"))),
        1 => Ok(found.remove(0)),
        _ => Err(IngestError::Conflict(format!(
            "messageId {id} names messages on {} connections; use the message's id (msg_…)",
            found.len()
        ))),
    }
}

/// An agent reacts to a message.
pub fn agent_reaction(
    tx: &mut dyn Tx,
    company_id: i64,
    now: i64,
    id: &str,
    user_id: i64,
    emoji: &str,
) -> IngestResult<Message> {
    require_user(tx, company_id, Some(user_id))?;
    let message = resolve_message(tx, company_id, id)?;
    let message = react(tx, company_id, now, message, Reactor::User(user_id), emoji)?;
    // On the Cloud API the contact sees the reaction too: it goes out as a send job.
    if channel_of(tx, company_id, &message)? == Some(Channel::Cloud) && message.message_id.is_some()
    {
        let request = SendRequest {
            emoji: Some(emoji.to_string()),
            ..SendRequest::default()
        };
        tx.insert_send_job(
            &SendJob {
                id: domain::new_send_id(),
                message_id: message.id.clone(),
                company_id,
                connection_id: message.connection_id,
                kind: SendKind::Reaction,
                request: request.to_json(),
                attempts: 0,
                lease: 0,
            },
            now,
        )?;
    }
    Ok(message)
}

fn channel_of(
    tx: &mut dyn Tx,
    company_id: i64,
    message: &Message,
) -> IngestResult<Option<Channel>> {
    Ok(tx
        .connection(company_id, message.connection_id)?
        .map(|c| c.channel))
}

fn own_live_message(tx: &mut dyn Tx, company_id: i64, id: &str) -> IngestResult<Message> {
    let message = resolve_message(tx, company_id, id)?;
    if !message.from_me {
        return Err(IngestError::Conflict(format!(
            "message {} was received; only messages we sent can be changed",
            message.id
        )));
    }
    if message.is_deleted {
        return Err(IngestError::Conflict(format!(
            "message {} was deleted",
            message.id
        )));
    }
    if channel_of(tx, company_id, &message)? == Some(Channel::Cloud) {
        return Err(IngestError::Conflict(format!(
            "message {} went through the Cloud API, which cannot edit or delete a sent message",
            message.id
        )));
    }
    Ok(message)
}

/// An agent edits the text of a message we sent.
pub fn edit_message(
    tx: &mut dyn Tx,
    company_id: i64,
    now: i64,
    id: &str,
    body: &str,
) -> IngestResult<Message> {
    let message = own_live_message(tx, company_id, id)?;
    set_edited(tx, company_id, now, message, Some(body))
}

/// An agent deletes a message we sent, for everyone.
pub fn delete_message(
    tx: &mut dyn Tx,
    company_id: i64,
    now: i64,
    id: &str,
) -> IngestResult<Message> {
    let mut message = own_live_message(tx, company_id, id)?;
    message.is_deleted = true;
    tx.update_message(&message)?;
    announce_update(tx, company_id, now, &message)?;
    Ok(message)
}
