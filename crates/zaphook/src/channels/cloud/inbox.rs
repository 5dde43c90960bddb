//! Reading the inbox: each verified callback body, kept before Meta got its 200, is claimed
//! under a lease, read into notifications, its media fetched (waiting a bounded time), and
//! applied in one transaction that also marks it processed. A crash anywhere before that
//! commit leaves the body to be read again; reading it twice changes nothing, because a
//! `wamid` already stored on a connection is the same message and statuses only move forward.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::media::{self, Fetched};
use super::notify::{self, CloudMessage, Content, Notification, Party, StatusKind};
use crate::channels::{Channels, lease_token};
use crate::domain::{Channel, CloudConfig, MessageError, MessageStatus};
use crate::ingest::{self, Identity, InboundMessage, IngestError, IngestResult};
use crate::store::{self, Claim, InboxItem, MediaJob, StoredMedia, Tx};

/// Bodies read at once. One waiting for its media does not hold up the others: more are
/// claimed as soon as there is room.
const PARALLEL: usize = 64;

type Tasks = tokio::task::JoinSet<()>;

/// Reads stored callback bodies until `shutdown` turns true; bodies in flight then finish.
pub async fn run_inbox_worker(channels: Channels, mut shutdown: watch::Receiver<bool>) {
    let ingest = &channels.ingest;
    let mut tasks = Tasks::new();
    while !*shutdown.borrow() {
        let room = PARALLEL - tasks.len();
        let claimed = if room == 0 {
            0
        } else {
            match claim_bodies(&channels, &mut tasks, room).await {
                Ok(n) => n,
                Err(e) => {
                    match &e {
                        IngestError::Store(e) => {
                            store::log_failure(e, "reading the callback inbox failed")
                        }
                        e => tracing::error!(error = %e, "reading the callback inbox failed"),
                    }
                    0
                }
            }
        };
        if room > 0 && claimed == room {
            continue;
        }
        let poll = tokio::time::Instant::now() + Duration::from_secs(1);
        let wake_at = match store::read(&ingest.store, |tx| tx.next_inbox_due()).await {
            Ok(Some(due)) => ingest.clock.instant_at(due).min(poll),
            _ => poll,
        };
        tokio::select! {
            _ = channels.inbox_ready.notified() => {}
            _ = tokio::time::sleep_until(wake_at) => {}
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            _ = shutdown.changed() => {}
        }
    }
    while tasks.join_next().await.is_some() {}
}

/// Claims up to `room` due bodies and starts reading each; answers how many.
async fn claim_bodies(channels: &Channels, tasks: &mut Tasks, room: usize) -> IngestResult<usize> {
    let ingest = &channels.ingest;
    let now = ingest.clock.now_ms();
    let claim = Claim {
        now,
        lease_until: now + channels.config.inbox_lease.as_millis() as i64,
        lease: lease_token(),
        limit: room as i64,
    };
    let items = store::write(&ingest.store, move |tx| tx.claim_inbox(claim)).await?;
    let count = items.len();
    for item in items {
        let channels = channels.clone();
        tasks.spawn(async move {
            let id = item.id;
            if let Err(e) = process(&channels, item, claim.lease).await {
                tracing::error!(inbox = id, error = %e, "a callback body could not be applied; it is read again when its lease ends");
            }
        });
    }
    Ok(count)
}

/// How one notification of a body came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Applied,
    /// It names a message or contact zaphook does not know (a status of a message sent by
    /// another system, a reaction to a message from before zaphook): counted and dropped.
    Unknown,
    /// It is for a phone number the company has no connection for.
    OtherNumber,
}

fn kind_of(n: &Notification) -> &'static str {
    match n {
        Notification::Status(_) => "status",
        Notification::Echo(_) => "echo",
        Notification::Message(m) => match m.content {
            Content::Message { .. } => "message",
            Content::Reaction { .. } => "reaction",
            Content::Edit { .. } => "edit",
            Content::Revoke { .. } => "revoke",
            Content::UserIdChanged { .. } => "user_id_changed",
        },
    }
}

/// The connection a phone number id of the body belongs to, with its settings; `None` when
/// the company has no cloud connection for it (an app's callback can carry every number of
/// its WhatsApp Business Account).
type Connections = HashMap<String, Option<(i64, Arc<CloudConfig>)>>;

/// What became of the media of the notification at an index.
enum MediaState {
    Stored(StoredMedia),
    /// Not there in time: a media job goes on trying.
    Pending,
}

/// The message a contact's reaction, edit or revoke changes. (Statuses are of messages sent
/// through the API, which no earlier body brings.)
fn target_of(n: &Notification) -> Option<&str> {
    let Notification::Message(m) = n else {
        return None;
    };
    match &m.content {
        Content::Reaction { target_id, .. }
        | Content::Edit { target_id, .. }
        | Content::Revoke { target_id } => Some(target_id),
        _ => None,
    }
}

/// Bodies are read side by side, and one may wait for its media: a body that changes a
/// message zaphook does not have yet first lets the earlier bodies of its connection finish
/// (for a bounded time), so a reaction is not dropped for arriving before the photo it
/// reacts to is filed.
async fn wait_for_older_bodies(
    channels: &Channels,
    connection_id: i64,
    id: i64,
) -> IngestResult<()> {
    let deadline =
        tokio::time::Instant::now() + channels.config.media_wait + Duration::from_secs(5);
    loop {
        let waiting = store::read(&channels.ingest.store, move |tx| {
            tx.inbox_waiting_before(connection_id, id)
        })
        .await?;
        if !waiting || tokio::time::Instant::now() >= deadline {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn phone_number_of(n: &Notification) -> &str {
    match n {
        Notification::Message(m) | Notification::Echo(m) => &m.phone_number_id,
        Notification::Status(s) => &s.phone_number_id,
    }
}

fn identity(party: &Party) -> Identity {
    // Numbers are kept in one form whatever the channel: Brazil's eight-digit `wa_id` of an
    // old account and the nine-digit number an integration writes are one contact.
    let number = party.wa_id.as_deref().map(|wa_id| {
        crate::domain::normalize_number(wa_id).map_or_else(|| wa_id.to_string(), |(n, _)| n)
    });
    Identity {
        number,
        bsuid: party.user_id.clone(),
        username: party.username.clone(),
    }
}

/// Reads and applies one body.
async fn process(channels: &Channels, item: InboxItem, lease: i64) -> IngestResult<()> {
    let ingest = &channels.ingest;
    let (id, connection_id) = (item.id, item.connection_id);
    let parsed = match notify::parse(&item.body) {
        Ok(parsed) => parsed,
        Err(e) => {
            metrics::counter!("zaphook_cloud_callbacks_unreadable_total").increment(1);
            tracing::warn!(inbox = id, error = %e, "a signed callback body is not a Cloud API notification; kept with the reason");
            let (why, now) = (e.to_string(), ingest.clock.now_ms());
            store::write(&ingest.store, move |tx| {
                tx.finish_inbox(id, lease, now, Some(&why))
            })
            .await?;
            return Ok(());
        }
    };
    for reason in &parsed.skipped {
        metrics::counter!("zaphook_cloud_notifications_total", "kind" => "malformed", "outcome" => "skipped")
            .increment(1);
        tracing::warn!(inbox = id, reason = %reason, "skipped an item of a callback");
    }
    let notifications = parsed.notifications;
    let Resolved {
        company_id,
        connections,
        known,
        missing_target,
        unknown_user,
    } = resolve(channels, connection_id, &notifications).await?;
    let media = fetch_media(channels, company_id, &connections, &known, &notifications).await;
    if missing_target || unknown_user {
        wait_for_older_bodies(channels, connection_id, id).await?;
    }
    let public_url = channels.config.public_url.clone();
    let outcomes = ingest
        .run(company_id, move |tx, company, now| {
            let mut outcomes = Vec::with_capacity(notifications.len());
            for (i, n) in notifications.iter().enumerate() {
                let Some(Some((connection, _))) = connections.get(phone_number_of(n)) else {
                    outcomes.push((kind_of(n), Outcome::OtherNumber));
                    continue;
                };
                let applied = apply(tx, company, now, *connection, n, media.get(&i), &public_url);
                let outcome = match applied {
                    Ok(()) => Outcome::Applied,
                    Err(IngestError::NotFound(_)) => Outcome::Unknown,
                    Err(e) => return Err(e),
                };
                outcomes.push((kind_of(n), outcome));
            }
            tx.finish_inbox(id, lease, now, None)?;
            Ok(outcomes)
        })
        .await?;
    for (kind, outcome) in outcomes {
        let outcome = match outcome {
            Outcome::Applied => "applied",
            Outcome::Unknown => "unknown_target",
            Outcome::OtherNumber => "unknown_number",
        };
        metrics::counter!("zaphook_cloud_notifications_total", "kind" => kind, "outcome" => outcome)
            .increment(1);
    }
    Ok(())
}

/// What a body needs looked up before it is applied.
struct Resolved {
    company_id: i64,
    connections: Connections,
    /// Message ids of the body already stored (redeliveries, whose media is not fetched again).
    known: Vec<String>,
    /// A reaction, edit or revoke of the body names a message neither stored nor in the body.
    missing_target: bool,
    /// A message of the body is from a user known only by a BSUID no contact has: a new
    /// contact, unless an earlier body still being read says the user's BSUID changed.
    unknown_user: bool,
}

async fn resolve(
    channels: &Channels,
    connection_id: i64,
    notifications: &[Notification],
) -> IngestResult<Resolved> {
    let numbers: Vec<String> = notifications
        .iter()
        .map(|n| phone_number_of(n).to_string())
        .collect();
    let ids: Vec<(String, String)> = notifications
        .iter()
        .filter_map(|n| match n {
            Notification::Message(m) | Notification::Echo(m) => {
                Some((m.phone_number_id.clone(), m.id.clone()))
            }
            Notification::Status(_) => None,
        })
        .collect();
    let targets: Vec<(String, String)> = notifications
        .iter()
        .filter_map(|n| Some((phone_number_of(n).to_string(), target_of(n)?.to_string())))
        .filter(|(_, target)| !ids.iter().any(|(_, id)| id == target))
        .collect();
    // A user with a phone number is found by it whatever their BSUID: only those known by
    // BSUID alone can be taken for someone new.
    let bsuids: Vec<String> = notifications
        .iter()
        .filter_map(|n| match n {
            Notification::Message(m) if m.party.wa_id.is_none() => m.party.user_id.clone(),
            _ => None,
        })
        .collect();
    store::read(&channels.ingest.store, move |tx| {
        let (company_id, own) = tx
            .cloud_config(connection_id)?
            .ok_or_else(|| IngestError::NotFound(format!("cloud connection {connection_id}")))?;
        let mut connections = Connections::new();
        connections.insert(
            own.phone_number_id.clone(),
            Some((connection_id, Arc::new(own))),
        );
        for number in numbers {
            if connections.contains_key(&number) {
                continue;
            }
            let other = match tx.connection_by_phone_number_id(company_id, &number)? {
                Some(c) => tx
                    .cloud_config(c.id)?
                    .map(|(_, cloud)| (c.id, Arc::new(cloud))),
                None => None,
            };
            connections.insert(number, other);
        }
        let stored = |tx: &mut dyn Tx, number: &str, id: &str| -> IngestResult<bool> {
            Ok(match connections.get(number) {
                Some(Some((connection, _))) => tx.message_by_channel_id(*connection, id)?.is_some(),
                _ => false,
            })
        };
        let mut known = Vec::new();
        for (number, id) in ids {
            if stored(tx, &number, &id)? {
                known.push(id);
            }
        }
        let mut missing_target = false;
        for (number, target) in targets {
            missing_target |= !stored(tx, &number, &target)?;
        }
        let mut unknown_user = false;
        for bsuid in bsuids {
            unknown_user |= tx.contact_by_bsuid(company_id, &bsuid)?.is_none();
        }
        Ok(Resolved {
            company_id,
            connections,
            known,
            missing_target,
            unknown_user,
        })
    })
    .await
}

/// Fetches the media of the body's new messages at once, each waiting at most the
/// configured time.
async fn fetch_media(
    channels: &Channels,
    company_id: i64,
    connections: &Connections,
    known: &[String],
    notifications: &[Notification],
) -> HashMap<usize, MediaState> {
    let deadline = tokio::time::Instant::now() + channels.config.media_wait;
    let mut tasks = tokio::task::JoinSet::new();
    for (i, n) in notifications.iter().enumerate() {
        let (Notification::Message(m) | Notification::Echo(m)) = n else {
            continue;
        };
        let Content::Message {
            media: Some(media), ..
        } = &m.content
        else {
            continue;
        };
        let Some(Some((_, cloud))) = connections.get(&m.phone_number_id) else {
            continue;
        };
        if known.contains(&m.id) {
            continue;
        }
        let (channels, cloud, media) = (channels.clone(), Arc::clone(cloud), media.clone());
        tasks.spawn(async move {
            let fetched = media::fetch_within(
                &channels,
                company_id,
                &cloud,
                &media.id,
                media.sha256.as_deref(),
                deadline,
            )
            .await;
            (i, fetched)
        });
    }
    let mut states = HashMap::new();
    while let Some(joined) = tasks.join_next().await {
        if let Ok((i, fetched)) = joined {
            let state = match fetched {
                Fetched::Stored(stored) => MediaState::Stored(stored),
                Fetched::Failed(_) => MediaState::Pending,
            };
            states.insert(i, state);
        }
    }
    states
}

fn status_of(kind: StatusKind) -> MessageStatus {
    match kind {
        StatusKind::Sent => MessageStatus::Sended,
        StatusKind::Delivered => MessageStatus::Delivered,
        StatusKind::Read => MessageStatus::Read,
        StatusKind::Played => MessageStatus::Played,
        StatusKind::Failed => MessageStatus::Failed,
    }
}

/// Applies one notification on `connection_id`. A media job it queues is announced by the
/// store when the transaction commits.
fn apply(
    tx: &mut dyn Tx,
    company_id: i64,
    now: i64,
    connection_id: i64,
    n: &Notification,
    media: Option<&MediaState>,
    public_url: &str,
) -> IngestResult<()> {
    let (m, echo) = match n {
        Notification::Status(s) => {
            let error = s.error.as_ref().map(|e| MessageError {
                code: e.code,
                title: e.title.clone(),
                source: "whatsapp".to_string(),
            });
            let status = status_of(s.status);
            ingest::status_update(
                tx,
                company_id,
                now,
                connection_id,
                &s.message_id,
                status,
                error,
            )?;
            return Ok(());
        }
        Notification::Message(m) => (m, false),
        Notification::Echo(m) => (m, true),
    };
    let who = identity(&m.party);
    match &m.content {
        Content::Message { .. } => inbound(
            tx,
            company_id,
            now,
            connection_id,
            m,
            echo,
            media,
            public_url,
        ),
        // What the business does from its phone to existing messages is not mapped yet.
        _ if echo => Err(IngestError::NotFound("an echo of a change".into())),
        Content::Reaction { target_id, emoji } => {
            ingest::contact_reaction(tx, company_id, now, connection_id, &who, target_id, emoji)?;
            Ok(())
        }
        Content::Edit {
            target_id,
            media_type,
            body,
        } => {
            let body =
                (*media_type != crate::domain::MediaType::Unsupported).then_some(body.as_str());
            ingest::contact_edit(tx, company_id, now, connection_id, &who, target_id, body)?;
            Ok(())
        }
        Content::Revoke { target_id } => {
            ingest::contact_revoke(tx, company_id, now, connection_id, &who, target_id)?;
            Ok(())
        }
        Content::UserIdChanged { new_user_id } => {
            ingest::change_user_id(tx, company_id, &who, new_user_id)?
                .ok_or_else(|| IngestError::NotFound("the user whose id changed".into()))?;
            Ok(())
        }
    }
}

/// Files a message (or an echo) with its media as far as it arrived, or queues the media.
#[allow(clippy::too_many_arguments)]
fn inbound(
    tx: &mut dyn Tx,
    company_id: i64,
    now: i64,
    connection_id: i64,
    m: &CloudMessage,
    echo: bool,
    media: Option<&MediaState>,
    public_url: &str,
) -> IngestResult<()> {
    let Content::Message {
        media_type,
        body,
        media: media_ref,
    } = &m.content
    else {
        return Ok(());
    };
    if tx.message_by_channel_id(connection_id, &m.id)?.is_some() {
        return Ok(());
    }
    let media_url = match media {
        Some(MediaState::Stored(stored)) => {
            tx.insert_media(stored)?;
            Some(media::media_url(public_url, &stored.key))
        }
        _ => None,
    };
    let cmd = InboundMessage {
        connection_id,
        channel: Channel::Cloud,
        contact: identity(&m.party),
        echo,
        is_group: false,
        name: m.party.name.clone(),
        body: body.clone(),
        media_type: *media_type,
        media_url: media_url.clone(),
        message_id: m.id.clone(),
        timestamp: if m.timestamp_ms > 0 {
            m.timestamp_ms
        } else {
            now
        },
        quoted_message_id: m.context_id.clone(),
        original: Some(m.raw.clone()),
        participant: None,
    };
    let message = ingest::inbound(tx, company_id, now, &cmd)?;
    let Some(media_ref) = media_ref.as_ref().filter(|_| media_url.is_none()) else {
        return Ok(());
    };
    tx.insert_media_job(
        &MediaJob {
            message_id: message.id,
            company_id,
            connection_id,
            media_id: media_ref.id.clone(),
            sha256: media_ref.sha256.clone(),
            mime_type: media_ref.mime_type.clone(),
            attempts: 0,
            lease: 0,
        },
        now,
    )?;
    Ok(())
}
