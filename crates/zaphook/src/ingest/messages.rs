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

/// Files a message a contact sent. The same channel id twice on one connection is one message.
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
    let mut contact = find_or_create_contact(
        tx,
        company_id,
        now,
        &cmd.from,
        cmd.is_group,
        cmd.name.as_deref(),
    )?;
    if let Some(name) = &cmd.name
        && contact.pushname.as_deref() != Some(name)
    {
        tx.set_contact_pushname(contact.id, name)?;
        contact.pushname = Some(name.clone());
    }
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
        status: MessageStatus::Received,
        from_me: false,
        media_type: cmd.media_type,
        media_url: cmd.media_url.clone(),
        is_deleted: false,
        send_type: None,
        edited: false,
        reactions: Vec::new(),
        quoted_message_id: cmd.quoted_message_id.clone(),
        user_id: None,
        created_at: now,
    };
    tx.insert_message(company_id, &message)?;
    if created {
        emit_ticket(
            tx,
            company_id,
            now,
            TicketEventKind::NewTicket,
            &ticket,
            None,
            Known {
                contact: Some(&contact),
                connection: Some(&connection),
            },
        )?;
    }
    emit_message(
        tx,
        company_id,
        now,
        EventType::MessageCreated,
        &message,
        &ticket,
        Known {
            contact: Some(&contact),
            connection: Some(&connection),
        },
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
            let contact = find_or_create_contact(tx, company_id, now, number, *is_group, None)?;
            find_or_create_ticket(tx, company_id, now, *connection_id, &contact)?
        }
    };
    let channel = tx
        .connection(company_id, ticket.connection_id)?
        .map(|c| c.channel);
    if channel == Some(Channel::Cloud) {
        return Err(IngestError::Conflict(
            "sending through Cloud API connections is not available yet; use a sandbox connection"
                .into(),
        ));
    }
    if cmd.external_key.is_some() {
        ticket.external_key = cmd.external_key.clone();
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
        created_at: now,
    };
    tx.insert_message(company_id, &message)?;
    tx.insert_send_job(
        &SendJob {
            message_id: message.id.clone(),
            company_id,
            connection_id: ticket.connection_id,
            attempts: 0,
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

/// The channel accepted an outbound message under `channel_id`: it becomes `sended` and
/// `message.created` (fromMe) is appended.
pub fn accept_outbound(
    tx: &mut dyn Tx,
    company_id: i64,
    now: i64,
    id: &str,
    channel_id: &str,
) -> IngestResult<Message> {
    tx.finish_send_job(id)?;
    let mut message = tx
        .message(company_id, id)?
        .ok_or_else(|| not_found(format!("message {id}")))?;
    let ticket = tx
        .ticket(company_id, message.ticket_id)?
        .ok_or_else(|| not_found(format!("ticket {}", message.ticket_id)))?;
    message.message_id = Some(channel_id.to_string());
    if message.status.can_advance_to(MessageStatus::Sended) {
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
    Ok(message)
}

/// Appends `message.updated` for a message that changed.
fn announce_update(
    tx: &mut dyn Tx,
    company_id: i64,
    now: i64,
    message: &Message,
) -> IngestResult<()> {
    let ticket = ticket_of(tx, company_id, message)?;
    emit_message(
        tx,
        company_id,
        now,
        EventType::MessageUpdated,
        message,
        &ticket,
        Known::default(),
    )
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
) -> IngestResult<Message> {
    let mut message = tx
        .message_by_channel_id(connection_id, channel_id)?
        .filter(|m| m.from_me)
        .ok_or_else(|| not_found(format!("sent message {channel_id}")))?;
    if !message.status.can_advance_to(status) {
        return Ok(message);
    }
    message.status = status;
    tx.update_message(&message)?;
    announce_update(tx, company_id, now, &message)?;
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
    from: &str,
    channel_id: &str,
    emoji: &str,
) -> IngestResult<Message> {
    let message = tx
        .message_by_channel_id(connection_id, channel_id)?
        .ok_or_else(|| not_found(format!("message {channel_id}")))?;
    let contact = tx
        .contact_by_number(company_id, from)?
        .ok_or_else(|| not_found(format!("contact {from}")))?;
    react(
        tx,
        company_id,
        now,
        message,
        Reactor::Contact(contact.id),
        emoji,
    )
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
    react(tx, company_id, now, message, Reactor::User(user_id), emoji)
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
    let mut message = own_live_message(tx, company_id, id)?;
    message.body = body.to_string();
    message.edited = true;
    tx.update_message(&message)?;
    announce_update(tx, company_id, now, &message)?;
    Ok(message)
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
