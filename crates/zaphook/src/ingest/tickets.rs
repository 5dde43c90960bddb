//! The commands about tickets: opening one through the API, and changing its status, queue or
//! agent.

use super::*;

/// Opens a ticket through the API, or answers the contact's open or pending one on that
/// connection (with its key updated). Answers whether a ticket was created.
pub fn create_ticket(
    tx: &mut dyn Tx,
    company_id: i64,
    now: i64,
    cmd: &CreateTicket,
) -> IngestResult<(Ticket, bool)> {
    if tx.connection(company_id, cmd.connection_id)?.is_none() {
        return Err(invalid(
            "connectionId",
            format!("connection {} does not exist", cmd.connection_id),
        ));
    }
    require_queue(tx, company_id, cmd.queue_id)?;
    require_user(tx, company_id, cmd.user_id)?;
    let contact = match &cmd.contact {
        ContactRef::Id(id) => tx
            .contact(company_id, *id)?
            .ok_or_else(|| invalid("contactId", format!("contact {id} does not exist")))?,
        ContactRef::Number { number, is_group } => find_or_create_contact(
            tx,
            company_id,
            now,
            &Identity::number(number),
            *is_group,
            None,
        )?,
    };
    if let Some(mut ticket) = tx.active_ticket(cmd.connection_id, contact.id)? {
        let new_key = cmd.external_key.is_some() && cmd.external_key != ticket.external_key;
        let new_config = cmd.api_config_id.is_some() && cmd.api_config_id != ticket.api_config_id;
        if new_key {
            ticket.external_key = cmd.external_key.clone();
        }
        if new_config {
            ticket.api_config_id = cmd.api_config_id.clone();
        }
        if new_key || new_config {
            ticket.updated_at = now;
            tx.update_ticket(&ticket)?;
        }
        return Ok((ticket, false));
    }
    let ticket = tx.insert_ticket(
        company_id,
        &NewTicket {
            connection_id: cmd.connection_id,
            contact_id: contact.id,
            status: cmd.status,
            queue_id: cmd.queue_id,
            user_id: cmd.user_id,
            is_group: contact.is_group,
            external_key: cmd.external_key.clone(),
            api_config_id: cmd.api_config_id.clone(),
        },
        now,
    )?;
    emit_ticket(
        tx,
        company_id,
        now,
        TicketEventKind::NewTicketUserCreate,
        &ticket,
        None,
        Known {
            contact: Some(&contact),
            connection: None,
        },
    )?;
    Ok((ticket, true))
}

/// Changes status, queue or agent of a ticket: `ticket.transferred` when queue or agent
/// changed, `ticket.closed` when it became closed.
pub fn update_ticket(
    tx: &mut dyn Tx,
    company_id: i64,
    now: i64,
    id: i64,
    patch: &PatchTicket,
) -> IngestResult<Ticket> {
    let mut ticket = tx
        .ticket(company_id, id)?
        .ok_or_else(|| not_found(format!("ticket {id}")))?;
    if let Some(queue_id) = patch.queue_id {
        require_queue(tx, company_id, queue_id)?;
    }
    if let Some(user_id) = patch.user_id {
        require_user(tx, company_id, user_id)?;
    }
    let previous = Previous {
        queue_id: ticket.queue_id,
        user_id: ticket.user_id,
    };
    let was = ticket.status;
    if let Some(status) = patch.status {
        if was == TicketStatus::Closed
            && status != TicketStatus::Closed
            && let Some(active) = tx.active_ticket(ticket.connection_id, ticket.contact_id)?
        {
            return Err(IngestError::Conflict(format!(
                "the contact already has ticket {} open on this connection",
                active.id
            )));
        }
        ticket.status = status;
    }
    if let Some(queue_id) = patch.queue_id {
        ticket.queue_id = queue_id;
    }
    if let Some(user_id) = patch.user_id {
        ticket.user_id = user_id;
    }
    ticket.updated_at = now;
    tx.update_ticket(&ticket)?;
    if previous.queue_id != ticket.queue_id || previous.user_id != ticket.user_id {
        emit_ticket(
            tx,
            company_id,
            now,
            TicketEventKind::TransferTicket,
            &ticket,
            Some(previous),
            Known::default(),
        )?;
    }
    if previous.queue_id != ticket.queue_id && ticket.status != TicketStatus::Closed {
        emit_transfer_start(tx, company_id, now, &ticket)?;
    }
    if was != TicketStatus::Closed && ticket.status == TicketStatus::Closed {
        emit_ticket(
            tx,
            company_id,
            now,
            TicketEventKind::ClosedTicket,
            &ticket,
            None,
            Known::default(),
        )?;
    }
    Ok(ticket)
}
