//! The dashboard's live updates: `GET /ui/live`, a server-sent event stream that says
//! `change` when a commit was announced (at most once a second), so an open page reloads its
//! changing part only when something changed. The store's commit counter is the source: every
//! commit of this process, and another process's when it made work ready; the pages also look
//! again now and then for what no announcement carries. The stream ends when the server stops.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use tokio::sync::watch;

use super::session::Signed;
use crate::api::AppState;

/// Least time between two `change` events of one stream.
const AT_MOST_EVERY: Duration = Duration::from_secs(1);

struct Live {
    changes: watch::Receiver<u64>,
    closing: watch::Receiver<bool>,
    /// An event was just sent: the next waits [`AT_MOST_EVERY`] (changes meanwhile are not
    /// lost: the counter shows them as unseen).
    sent: bool,
}

/// `GET /ui/live`, for a signed-in page.
pub async fn live(
    State(state): State<AppState>,
    _signed: Signed,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let live = Live {
        changes: state.ingest.store.announcements().changes.subscribe(),
        closing: state.closing.clone(),
        sent: false,
    };
    let stream = futures_util::stream::unfold(live, |mut live| async move {
        if live.sent {
            tokio::select! {
                _ = tokio::time::sleep(AT_MOST_EVERY) => {}
                _ = live.closing.wait_for(|closing| *closing) => return None,
            }
        }
        live.sent = true;
        tokio::select! {
            changed = live.changes.changed() => changed.ok()?,
            _ = live.closing.wait_for(|closing| *closing) => return None,
        }
        Some((Ok(Event::default().event("change").data("")), live))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}
