//! Sending a claimed send job through the Graph API: the request built from the stored
//! message (text, media by link, template, location, contact cards, a message object sent as
//! it is, reply, reaction), then, in one transaction, what
//! came of it: `sended` with Meta's id and `message.created`, a retry later for a transient
//! error, or `failed` with Meta's code and title and `message.updated` for a permanent one.
//! The connection's health keeps the last error and whether Meta refused the token; a refusal,
//! and the first send that succeeds after one, change the connection's state, which izing's
//! `hookSessionStatus` reports.

use super::graph::{ErrorKind, GraphError, GraphTarget, Outbound, OutboundMessage, To};
use crate::channels::Channels;
use crate::domain::{CloudConfig, MediaType, Message, MessageError};
use crate::ingest::{self, IngestError, IngestResult, SendRequest};
use crate::store::{self, NextStep, SendJob, SendKind};

/// Where and as whom a cloud connection talks to the Graph API.
pub fn graph_target(cloud: &CloudConfig) -> GraphTarget {
    GraphTarget {
        base_url: cloud
            .graph_base_url
            .clone()
            .unwrap_or_else(|| super::graph::DEFAULT_BASE_URL.to_string()),
        version: cloud
            .graph_version
            .clone()
            .unwrap_or_else(|| super::graph::DEFAULT_VERSION.to_string()),
        phone_number_id: cloud.phone_number_id.clone(),
        access_token: cloud.access_token.clone(),
    }
}

/// The Graph request for a message, from what the store holds of it.
fn request(
    message: &Message,
    to: To,
    kind: SendKind,
    extra: SendRequest,
) -> Result<OutboundMessage, String> {
    let content = match kind {
        SendKind::Reaction => Outbound::Reaction {
            message_id: message
                .message_id
                .clone()
                .ok_or("the message has no WhatsApp id to react to")?,
            emoji: extra.emoji.unwrap_or_default(),
        },
        SendKind::Message => match extra {
            SendRequest {
                cloud_message: Some(object),
                ..
            } => Outbound::Raw(object),
            SendRequest {
                location: Some(location),
                ..
            } => Outbound::Location(location),
            SendRequest {
                contacts: Some(cards),
                ..
            } => Outbound::Contacts(cards),
            extra => plain(message, extra)?,
        },
    };
    let reply_to = match kind {
        SendKind::Message => message.quoted_message_id.clone(),
        SendKind::Reaction => None,
    };
    Ok(OutboundMessage {
        to,
        content,
        reply_to,
    })
}

/// A text, media by link, or a template.
fn plain(message: &Message, extra: SendRequest) -> Result<Outbound, String> {
    Ok(
        match (extra.template, message.media_type, &message.media_url) {
            (Some(t), _, _) => Outbound::Template {
                name: t.name,
                language: t.language,
                components: t.components,
            },
            (
                None,
                media_type @ (MediaType::Image
                | MediaType::Video
                | MediaType::Audio
                | MediaType::Document
                | MediaType::Sticker),
                Some(link),
            ) => Outbound::Media {
                media_type,
                link: link.clone(),
                caption: (!message.body.is_empty()).then(|| message.body.clone()),
                filename: extra.file_name,
            },
            (None, MediaType::Chat, _) => Outbound::Text {
                body: message.body.clone(),
            },
            (None, other, _) => {
                return Err(format!(
                    "a {other} message cannot be sent through the Cloud API from here"
                ));
            }
        },
    )
}

fn describe(e: &GraphError) -> String {
    match e.code {
        Some(code) => format!("{code}: {}", e.title),
        None => e.title.clone(),
    }
}

/// Sends one job and records what came of it.
pub async fn send(channels: &Channels, job: SendJob) -> IngestResult<()> {
    let ingest = &channels.ingest;
    let (company_id, message_id, connection_id) =
        (job.company_id, job.message_id.clone(), job.connection_id);
    let loaded = store::read(&ingest.store, move |tx| {
        let Some((_, cloud)) = tx.cloud_config(connection_id)? else {
            return Ok::<_, IngestError>(None);
        };
        let Some(message) = tx.message(company_id, &message_id)? else {
            return Ok(None);
        };
        let contact = tx.contact(company_id, message.contact_id)?;
        Ok(Some((cloud, message, contact)))
    })
    .await?;
    let Some((cloud, message, contact)) = loaded else {
        return Err(IngestError::NotFound(format!(
            "message {} or its cloud connection",
            job.message_id
        )));
    };
    let to = match contact {
        Some(c) if c.number.is_some() => To::Phone(c.number.unwrap_or_default()),
        Some(c) if c.bsuid.is_some() => To::UserId(c.bsuid.unwrap_or_default()),
        _ => {
            return fail(
                channels,
                job,
                local_error("the contact has no number or user id"),
            )
            .await;
        }
    };
    let outbound = match request(&message, to, job.kind, SendRequest::of(&job)) {
        Ok(outbound) => outbound,
        Err(why) => return fail(channels, job, local_error(&why)).await,
    };
    let result = channels.graph.send(&graph_target(&cloud), &outbound).await;
    match result {
        Ok(wamid) => {
            metrics::counter!("zaphook_cloud_sends_total", "outcome" => "sent").increment(1);
            ingest
                .run(company_id, move |tx, company, now| {
                    if tx.set_token_refused(connection_id, None)? {
                        ingest::connection_state_changed(tx, company, now, connection_id)?;
                    }
                    tx.record_send_outcome(connection_id, now, None, false)?;
                    ingest::accept_outbound(tx, company, now, &job, &wamid)
                })
                .await?;
            Ok(())
        }
        Err(e) if e.kind == ErrorKind::Transient => {
            let now = ingest.clock.now_ms();
            // `attempts` counts this claim: the tries before it are one fewer.
            match channels.config.send_retry.after_failure(
                job.attempts - 1,
                now,
                None,
                ingest.jitter.unit(),
            ) {
                NextStep::RetryAt(due) => {
                    metrics::counter!("zaphook_cloud_sends_total", "outcome" => "retry")
                        .increment(1);
                    tracing::info!(message = %job.message_id, error = %describe(&e), "send failed on the way; trying again");
                    let text = describe(&e);
                    store::write(&ingest.store, move |tx| {
                        tx.record_send_outcome(connection_id, now, Some(&text), false)?;
                        tx.retry_send_job(&job.id, job.lease, due)
                    })
                    .await?;
                    Ok(())
                }
                _ => fail(channels, job, e).await,
            }
        }
        Err(e) => fail(channels, job, e).await,
    }
}

/// An error found before reaching Meta: permanent, with no code of Meta's.
fn local_error(title: &str) -> GraphError {
    GraphError {
        kind: ErrorKind::Permanent,
        code: None,
        title: title.to_string(),
        http_status: None,
        token_refused: false,
    }
}

/// The send failed for good: the message becomes `failed` with Meta's code and title.
async fn fail(channels: &Channels, job: SendJob, e: GraphError) -> IngestResult<()> {
    metrics::counter!("zaphook_cloud_sends_total", "outcome" => "failed").increment(1);
    tracing::warn!(message = %job.message_id, error = %describe(&e), "send failed for good");
    let (company_id, connection_id) = (job.company_id, job.connection_id);
    let error = MessageError {
        code: e.code.unwrap_or(0),
        title: e.title.clone(),
        // An error that never reached Meta (a refused address, a timeout, a contact without
        // a number) is zaphook's own.
        source: if e.code.is_some() {
            "whatsapp"
        } else {
            "zaphook"
        }
        .to_string(),
    };
    let text = describe(&e);
    channels
        .ingest
        .run(company_id, move |tx, company, now| {
            if e.token_refused && tx.set_token_refused(connection_id, Some(now))? {
                ingest::connection_state_changed(tx, company, now, connection_id)?;
            }
            tx.record_send_outcome(connection_id, now, Some(&text), e.token_refused)?;
            ingest::fail_outbound(tx, company, now, &job, error.clone())
        })
        .await?;
    Ok(())
}
