//! Store conformance: the repository operations the layers above rely on, run directly
//! against a store through the trait. Every test runs on SQLite, and on PostgreSQL when
//! `ZAPHOOK_TEST_DATABASE_URL` is set (in a scratch schema).

#[path = "common/backend.rs"]
mod backend;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};

use zaphook::domain::{
    Channel, DeliveryStatus, EventType, Filters, Ordering, TicketStatus, WebhookFormat, WebhookSpec,
};
use zaphook::store::sqlite::Durability;
use zaphook::store::{
    self, AttemptRecord, AttemptTally, Claimed, EventScope, MessageScope, NewDelivery, NextLease,
    NextStep, Store, StoreError, Tx, WriteJob,
};

/// Each conformance test, once per backend: `sqlite::name` and `postgres::name`.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test]
            async fn $name() {
                super::$name(super::backend::TestDb::sqlite()).await
            })*
        }
        mod postgres {
            $(#[tokio::test]
            async fn $name() {
                if let Some(db) = super::backend::TestDb::postgres() {
                    super::$name(db).await
                }
            })*
        }
    };
}

conformance!(
    claims_follow_ticket_order_and_leases,
    unordered_endpoints_do_not_wait_and_dead_unblocks,
    release_recover_and_prune,
    a_failing_job_rolls_back_alone_in_a_shared_commit,
    company_scoped_lookups_see_nothing_of_another_company,
    deleting_an_endpoint_or_pruning_leaves_no_attempts_behind,
    backlogs_count_blocked_and_due_and_orphans_are_freed,
    a_delivery_is_retried_only_by_its_own_company,
    channel_jobs_are_finished_only_under_their_lease,
    a_taken_unique_key_is_a_conflict,
    a_read_job_sees_one_snapshot,
    a_second_active_ticket_of_a_contact_is_a_conflict,
    conversations_read_back_what_was_written,
    api_configs_are_found_by_token_until_revoked,
    subscribers_follow_scope_and_filters,
    housekeeping_on_two_nodes_at_once_takes_each_row_once,
    api_config_hooks_are_endpoints_of_their_config,
    a_refused_token_changes_state_once,
    attempts_are_counted_per_endpoint_and_minute,
    the_delivery_log_is_the_companys_own_narrowed_and_paged_by_key,
    a_recovery_counts_the_deliveries_it_queued_again,
    attempts_recorded_together_move_each_delivery_as_one_at_a_time_would,
    a_finish_can_lease_its_tickets_next_delivery,
    deliveries_handed_off_in_a_shared_commit_keep_their_tickets_order,
    inbound_jobs_sharing_a_commit_see_what_one_at_a_time_would,
);

fn spec(url: &str, ordering: Ordering) -> WebhookSpec {
    WebhookSpec {
        url: url.to_string(),
        events: vec![EventType::MessageCreated],
        format: WebhookFormat::Whazing,
        api_config_id: None,
        connection_id: None,
        queue_id: None,
        start_on_transfer: false,
        filters: Filters::default(),
        ordering,
        token: None,
        secret: zaphook::delivery::sign::generate_secret(),
        description: None,
        enabled: true,
        rate_limit: None,
    }
}

/// Company 1 with one endpoint per ordering given; answers the endpoint ids.
fn setup(tx: &mut dyn Tx, orderings: &[Ordering]) -> Result<Vec<i64>, StoreError> {
    let company = tx.insert_company("Acme", 0)?;
    tx.insert_connection(company, "A", Channel::Sandbox, None, 0)?;
    orderings
        .iter()
        .map(|o| {
            Ok(tx
                .insert_webhook(company, &spec("http://example.com/", *o), 0)?
                .id)
        })
        .collect()
}

/// Appends one message.created event of `ticket` for every subscriber, at `now`.
fn event(tx: &mut dyn Tx, ticket: i64, now: i64) -> Result<String, StoreError> {
    let scope = EventScope {
        company_id: 1,
        event_type: EventType::MessageCreated,
        connection_id: Some(1),
        queue_id: None,
        is_group: false,
        ticket_id: Some(ticket),
        message: None,
        previous_queue_id: None,
        transfer_start: false,
        api_config: None,
    };
    let id = zaphook::domain::new_event_id();
    tx.insert_event(
        &id,
        &scope,
        &format!("{{\"ticket\":{ticket},\"at\":{now}}}"),
        None,
        now,
    )?;
    for s in tx.subscribers(&scope, now)? {
        let key = (s.ordering == Ordering::Ticket).then_some(ticket);
        tx.insert_delivery(
            &NewDelivery {
                id: &zaphook::domain::new_delivery_id(),
                event_id: &id,
                event_type: EventType::MessageCreated,
                webhook_id: s.target.webhook_id,
                company_id: 1,
                ticket_id: Some(ticket),
                ordering_key: key,
            },
            now,
            None,
        )?;
    }
    Ok(id)
}

fn claim_all(tx: &mut dyn Tx, now: i64, lease_until: i64) -> Result<Vec<Claimed>, StoreError> {
    let mut all = Vec::new();
    for w in tx.due_webhooks(now)? {
        all.extend(tx.claim_deliveries(now, lease_until, w.id, 100)?);
    }
    Ok(all)
}

fn record(c: &Claimed, at: i64, next: NextStep) -> AttemptRecord {
    AttemptRecord {
        seq: c.seq,
        ordering_key: c.ordering_key,
        webhook_id: c.target.webhook_id,
        lease: c.lease,
        at,
        status_code: Some(if next == NextStep::Delivered {
            200
        } else {
            500
        }),
        latency_ms: 1,
        error: None,
        response_body: None,
        request_headers: Some("webhook-id: evt_x".into()),
        next,
        disable_webhook: false,
        disable_after_ms: i64::MAX / 2,
    }
}

async fn run<R: Send + 'static>(
    store: &Arc<dyn Store>,
    f: impl FnMut(&mut dyn Tx) -> Result<R, StoreError> + Send + 'static,
) -> R {
    store::write(store, f).await.unwrap()
}

async fn claims_follow_ticket_order_and_leases(db: backend::TestDb) {
    let store = db.open();
    run(&store, |tx| {
        setup(tx, &[Ordering::Ticket])?;
        for (ticket, at) in [(1, 10), (1, 11), (2, 12)] {
            event(tx, ticket, at)?;
        }
        // The first event of each ticket is claimable; ticket 1's second waits.
        let first = claim_all(tx, 100, 1_000)?;
        let tickets: Vec<&str> = first.iter().map(|c| &*c.payload).collect();
        assert_eq!(tickets.len(), 2, "{tickets:?}");
        assert!(tickets[0].contains("\"ticket\":1") && tickets[1].contains("\"ticket\":2"));
        // Leased: nothing more now; the lease expires at 1000.
        assert!(claim_all(tx, 500, 1_500)?.is_empty());
        // A failure keeps the next event of the ticket waiting, until the retry succeeds.
        assert!(
            tx.record_attempt(&record(&first[0], 600, NextStep::RetryAt(700)))?
                .applied
        );
        assert!(
            claim_all(tx, 650, 2_000)?
                .iter()
                .all(|c| !c.payload.contains("\"ticket\":1"))
        );
        let retry = claim_all(tx, 700, 2_000)?;
        assert_eq!(retry.len(), 1);
        assert_eq!(retry[0].seq, first[0].seq);
        assert_eq!(retry[0].attempts, 1);
        tx.record_attempt(&record(&retry[0], 710, NextStep::Delivered))?;
        let next = claim_all(tx, 720, 2_000)?;
        assert_eq!(next.len(), 1);
        assert!(next[0].payload.contains("\"at\":11"));
        // The old lease of ticket 2's event expired: it is claimed again, and the first
        // worker's late record is ignored.
        let again = claim_all(tx, 1_000, 3_000)?;
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].seq, first[1].seq);
        assert!(
            !tx.record_attempt(&record(&first[1], 1_001, NextStep::Delivered))?
                .applied
        );
        assert!(
            tx.record_attempt(&record(&again[0], 1_002, NextStep::Delivered))?
                .applied
        );
        Ok(())
    })
    .await;
}

async fn unordered_endpoints_do_not_wait_and_dead_unblocks(db: backend::TestDb) {
    let store = db.open();
    run(&store, |tx| {
        let hooks = setup(tx, &[Ordering::None, Ordering::Ticket])?;
        event(tx, 1, 10)?;
        event(tx, 1, 11)?;
        let claimed = claim_all(tx, 100, 1_000)?;
        let per = |w: i64| claimed.iter().filter(|c| c.target.webhook_id == w).count();
        assert_eq!(per(hooks[0]), 2, "no ordering: both at once");
        assert_eq!(per(hooks[1]), 1, "ticket ordering: one at a time");
        let ordered = claimed
            .iter()
            .find(|c| c.target.webhook_id == hooks[1])
            .unwrap();
        tx.record_attempt(&record(ordered, 200, NextStep::Dead))?;
        let next = claim_all(tx, 300, 1_000)?;
        assert_eq!(
            next.len(),
            1,
            "a dead event no longer holds its ticket back"
        );
        Ok(())
    })
    .await;
}

async fn release_recover_and_prune(db: backend::TestDb) {
    let store = db.open();
    run(&store, |tx| {
        let hook = setup(tx, &[Ordering::None])?[0];
        for at in [10, 11, 12] {
            event(tx, 1, at)?;
        }
        let c = claim_all(tx, 100, 10_000)?;
        assert_eq!(c.len(), 3);
        // Given back at shutdown: due again at once.
        assert_eq!(tx.release_deliveries(&[(c[0].seq, c[0].lease)], 150)?, 1);
        assert_eq!(tx.next_delivery_due()?, Some(150));
        tx.record_attempt(&record(&c[1], 160, NextStep::Delivered))?;
        tx.record_attempt(&record(&c[2], 160, NextStep::Dead))?;
        // Recovery queues the dead one again and marks it.
        assert_eq!(tx.recover_deliveries(hook, 0, 200)?, 1);
        let progress = tx.recovery_progress(hook, 200)?;
        assert_eq!((progress.waiting, progress.total()), (1, 1));
        // Pruning takes only finished deliveries older than the cutoff.
        assert_eq!(tx.prune(5, 100)?, 0);
        let pruned = tx.prune(1_000, 100)?;
        assert_eq!(
            pruned, 2,
            "the delivered delivery and its event, which nothing else needs"
        );
        let left = tx.deliveries(hook, None, None, 10)?;
        assert_eq!(left.len(), 2);
        assert!(left.iter().all(|d| d.status == DeliveryStatus::Pending));
        Ok(())
    })
    .await;
}

/// A job for the tests of shared commits: inserts queue `name`, then fails or panics as told;
/// counts its runs and reports its answer.
struct QueueJob {
    name: &'static str,
    then: Then,
    /// For the first job: says it holds the writer, then waits to be let go.
    gate: Option<(std::sync::mpsc::Sender<()>, std::sync::mpsc::Receiver<()>)>,
    runs: Arc<AtomicUsize>,
    answer: std::sync::mpsc::Sender<(&'static str, Result<(), StoreError>)>,
}

#[derive(Clone, Copy, PartialEq)]
enum Then {
    Succeed,
    /// Fails, without writing, when queue "failed" exists.
    FailIfFailedIsSeen,
    Fail,
    FailBeforeWriting,
    Panic,
}

impl WriteJob for QueueJob {
    fn run(&mut self, tx: &mut dyn Tx) -> bool {
        if let Some((holding, gate)) = self.gate.take() {
            // Holds the writer until the other jobs are queued, so they share the next commit.
            holding.send(()).unwrap();
            gate.recv().unwrap();
        }
        self.runs.fetch_add(1, AtomicOrdering::SeqCst);
        if self.then == Then::FailIfFailedIsSeen
            && tx.queues(1).unwrap().iter().any(|q| q.name == "failed")
        {
            return false;
        }
        if self.then != Then::FailBeforeWriting {
            tx.insert_queue(1, self.name, 0).unwrap();
        }
        match self.then {
            Then::Panic => panic!("the job panics after writing"),
            Then::Succeed | Then::FailIfFailedIsSeen => true,
            Then::Fail | Then::FailBeforeWriting => false,
        }
    }

    fn reply(self: Box<Self>, committed: Result<(), StoreError>) {
        let answer = match self.then {
            Then::Succeed | Then::FailIfFailedIsSeen => committed,
            _ => Err(StoreError::Corrupt("failed".into())),
        };
        self.answer.send((self.name, answer)).unwrap();
    }
}

async fn a_failing_job_rolls_back_alone_in_a_shared_commit(db: backend::TestDb) {
    let store = db.open();
    run(&store, |tx| tx.insert_company("Acme", 0)).await;
    let (answer, answers) = std::sync::mpsc::channel();
    let (open_gate, gate) = std::sync::mpsc::channel();
    let (holding, writer_held) = std::sync::mpsc::channel();
    let runs: Vec<Arc<AtomicUsize>> = (0..7).map(|_| Arc::default()).collect();
    let jobs = [
        ("gate", Then::Succeed),
        ("kept", Then::Succeed),
        ("failed", Then::Fail),
        ("after failed", Then::FailIfFailedIsSeen),
        ("refused", Then::FailBeforeWriting),
        ("panicked", Then::Panic),
        ("also kept", Then::Succeed),
    ];
    let mut gate = Some((holding, gate));
    for ((name, then), runs) in jobs.into_iter().zip(&runs) {
        store.submit_write(Box::new(QueueJob {
            name,
            then,
            gate: gate.take(),
            runs: Arc::clone(runs),
            answer: answer.clone(),
        }));
        if name == "gate" {
            writer_held.recv().unwrap();
        }
    }
    drop(answer);
    open_gate.send(()).unwrap();
    let answered: Vec<(&str, bool)> = tokio::task::spawn_blocking(move || {
        answers.iter().map(|(name, r)| (name, r.is_ok())).collect()
    })
    .await
    .unwrap();
    let mut answered = answered;
    answered.sort();
    assert_eq!(
        answered,
        vec![
            ("after failed", true),
            ("also kept", true),
            ("failed", false),
            ("gate", true),
            ("kept", true),
            ("refused", false)
        ],
        "the panicked job is dropped unanswered"
    );
    let names: Vec<String> = store::read(&store, |tx| tx.queues(1))
        .await
        .unwrap()
        .into_iter()
        .map(|q| q.name)
        .collect();
    assert_eq!(names, vec!["gate", "kept", "after failed", "also kept"]);
    let counts: Vec<usize> = runs
        .iter()
        .map(|r| r.load(AtomicOrdering::SeqCst))
        .collect();
    // The gate committed alone. In the next batch the failure after writing rolled it back
    // and the others ran again without it (the job after it, which had not run yet, never
    // saw its writes), then the panic after writing did the same; a failure without writes
    // cost nothing.
    assert_eq!(counts, vec![1, 3, 1, 2, 1, 1, 1]);
}

async fn company_scoped_lookups_see_nothing_of_another_company(db: backend::TestDb) {
    let store = db.open();
    run(&store, |tx| {
        let a = tx.insert_company("A", 0)?;
        let b = tx.insert_company("B", 0)?;
        let conn = tx.insert_connection(a, "A", Channel::Sandbox, None, 0)?;
        let hook = tx.insert_webhook(a, &spec("http://example.com/", Ordering::Ticket), 0)?;
        assert!(tx.connection(b, conn.id)?.is_none());
        assert!(tx.webhook(b, hook.id)?.is_none());
        assert!(tx.target(b, hook.id, 0)?.is_none());
        assert!(!tx.delete_webhook(b, hook.id)?);
        assert!(tx.connection(a, conn.id)?.is_some());
        Ok(())
    })
    .await;
}

async fn deleting_an_endpoint_or_pruning_leaves_no_attempts_behind(db: backend::TestDb) {
    let store = db.open();
    let hooks = run(&store, |tx| {
        let hooks = setup(tx, &[Ordering::None, Ordering::None])?;
        for at in [10, 11] {
            event(tx, 1, at)?;
        }
        for c in claim_all(tx, 100, 10_000)? {
            tx.record_attempt(&record(&c, 160, NextStep::Delivered))?;
        }
        Ok(hooks)
    })
    .await;
    assert_eq!((db.count("deliveries"), db.count("attempts")), (4, 4));
    assert!(run(&store, move |tx| tx.delete_webhook(1, hooks[0])).await);
    assert_eq!((db.count("deliveries"), db.count("attempts")), (2, 2));
    assert_eq!(run(&store, |tx| tx.prune(1_000, 100)).await, 4);
    assert_eq!(
        (
            db.count("deliveries"),
            db.count("attempts"),
            db.count("events")
        ),
        (0, 0, 0)
    );
}

async fn backlogs_count_blocked_and_due_and_orphans_are_freed(db: backend::TestDb) {
    let store = db.open();
    let (ordered, unordered) = run(&store, |tx| {
        let hooks = setup(tx, &[Ordering::Ticket, Ordering::None])?;
        for at in [10, 11, 12] {
            event(tx, 1, at)?;
        }
        Ok((hooks[0], hooks[1]))
    })
    .await;
    let mut backlogs = store::read(&store, |tx| tx.backlogs()).await.unwrap();
    backlogs.sort_by_key(|b| b.webhook_id);
    let counts: Vec<_> = backlogs
        .iter()
        .map(|b| (b.webhook_id, b.pending, b.oldest_created_at))
        .collect();
    assert_eq!(
        counts,
        vec![(ordered, 3, 10), (unordered, 3, 10)],
        "two of the ordered endpoint's three wait blocked behind the first"
    );
    // Nothing is orphaned while the first is unfinished.
    assert_eq!(run(&store, |tx| tx.free_orphaned()).await, 0);
    // The head finishes without unblocking the next (as a crash between the two could leave
    // it): the next, and only the next, is freed.
    db.sql(&format!(
        "UPDATE deliveries SET state = 'delivered'
         WHERE seq = (SELECT min(seq) FROM deliveries WHERE webhook_id = {ordered})"
    ));
    assert_eq!(run(&store, |tx| tx.free_orphaned()).await, 1);
    let claimed = run(&store, |tx| claim_all(tx, 100, 10_000)).await;
    let per_endpoint = |id: i64| claimed.iter().filter(|c| c.target.webhook_id == id).count();
    assert_eq!((per_endpoint(ordered), per_endpoint(unordered)), (1, 3));
}

async fn a_delivery_is_retried_only_by_its_own_company(db: backend::TestDb) {
    let store = db.open();
    let id = run(&store, |tx| {
        setup(tx, &[Ordering::None])?;
        tx.insert_company("Other", 0)?;
        event(tx, 1, 10)?;
        let c = claim_all(tx, 100, 10_000)?;
        tx.record_attempt(&record(&c[0], 160, NextStep::Dead))?;
        Ok(c[0].id.clone())
    })
    .await;
    let other = id.clone();
    assert!(!run(&store, move |tx| tx.retry_delivery(2, &other, 200)).await);
    assert!(run(&store, move |tx| tx.retry_delivery(1, &id, 200)).await);
    assert_eq!(run(&store, |tx| claim_all(tx, 300, 10_000)).await.len(), 1);
}

/// A job table's lease: only the claim that holds a job may finish or reschedule it, so a
/// worker whose lease ran out cannot record what another worker is now doing.
async fn channel_jobs_are_finished_only_under_their_lease(db: backend::TestDb) {
    use zaphook::store::{Claim, MediaJob, SendJob, SendKind};
    let store = db.open();
    let claim = |now: i64, lease: i64| Claim {
        now,
        lease_until: now + 1_000,
        lease,
        limit: 10,
    };
    let (first, second, inbox) = store::write(&store, move |tx| {
        let company = tx.insert_company("Acme", 0)?;
        let conn = tx
            .insert_connection(company, "A", Channel::Sandbox, None, 0)?
            .id;
        let job = SendJob {
            id: "snd_1".into(),
            message_id: "msg_1".into(),
            company_id: company,
            connection_id: conn,
            kind: SendKind::Message,
            request: None,
            attempts: 0,
            lease: 0,
        };
        tx.insert_send_job(&job, 0)?;
        tx.insert_media_job(
            &MediaJob {
                message_id: "msg_1".into(),
                company_id: company,
                connection_id: conn,
                media_id: "m1".into(),
                sha256: None,
                mime_type: None,
                attempts: 0,
                lease: 0,
            },
            0,
        )?;
        let inbox = tx.insert_inbox(company, conn, b"{}", 0)?;
        // Claimed at 0 under lease 1; the lease runs out at 1000 and lease 2 takes it.
        let first = tx.claim_send_jobs(claim(0, 1), &[])?;
        assert!(
            tx.claim_send_jobs(claim(500, 9), &[])?.is_empty(),
            "still leased"
        );
        let second = tx.claim_send_jobs(claim(1_000, 2), &[])?;
        assert_eq!(tx.claim_media_jobs(claim(0, 1))?.len(), 1);
        assert_eq!(tx.claim_media_jobs(claim(1_000, 2))?.len(), 1);
        assert_eq!(tx.claim_inbox(claim(0, 1))?.len(), 1);
        assert!(tx.inbox_waiting_before(conn, inbox + 1)?);
        assert_eq!(tx.claim_inbox(claim(1_000, 2))?[0].attempts, 2);
        Ok::<_, StoreError>((first, second, inbox))
    })
    .await
    .unwrap();
    assert_eq!((first[0].lease, first[0].attempts), (1, 1));
    assert_eq!((second[0].lease, second[0].attempts), (2, 2));
    store::write(&store, move |tx| {
        assert!(!tx.finish_send_job("snd_1", 1)?, "the old lease");
        assert!(!tx.retry_send_job("snd_1", 1, 5_000)?);
        assert!(tx.retry_send_job("snd_1", 2, 5_000)?);
        assert_eq!(tx.next_send_job_due()?, Some(5_000));
        assert!(
            tx.claim_send_jobs(claim(5_000, 3), &[1])?.is_empty(),
            "connection 1 is busy"
        );
        let again = tx.claim_send_jobs(claim(5_000, 3), &[])?;
        assert_eq!(again[0].attempts, 3);
        assert!(tx.release_send_job("snd_1", 3, 5_000)?);
        let again = tx.claim_send_jobs(claim(5_000, 3), &[7])?;
        assert_eq!(
            again[0].attempts, 3,
            "a release does not count as an attempt"
        );
        assert!(tx.finish_send_job("snd_1", 3)?);
        assert_eq!(tx.next_send_job_due()?, None);
        assert!(!tx.finish_media_job("msg_1", 1)?);
        assert!(tx.retry_media_job("msg_1", 2, 9_000, "503")?);
        assert_eq!(tx.next_media_job_due()?, Some(9_000));
        assert!(!tx.finish_inbox(inbox, 1, 2_000, None)?);
        assert!(tx.finish_inbox(inbox, 2, 2_000, None)?);
        assert!(!tx.finish_inbox(inbox, 2, 2_000, None)?, "once");
        assert_eq!(tx.next_inbox_due()?, None);
        assert_eq!(tx.prune_inbox(2_000, 10)?, 0, "kept until the retention");
        assert_eq!(tx.prune_inbox(2_001, 10)?, 1);
        Ok::<_, StoreError>(())
    })
    .await
    .unwrap();
}

/// A unique key taken twice is a conflict the caller can answer with 409, not a failure.
async fn a_taken_unique_key_is_a_conflict(db: backend::TestDb) {
    use zaphook::store::NewContact;
    let store = db.open();
    let result = store::write(&store, |tx| {
        let company = tx.insert_company("Acme", 0)?;
        let contact = NewContact {
            number: Some("5511900000001"),
            name: "A",
            ..NewContact::default()
        };
        tx.insert_contact(company, &contact, 0)?;
        tx.insert_contact(company, &contact, 0)
    })
    .await;
    assert!(matches!(result, Err(StoreError::Conflict(_))), "{result:?}");
    // The job's writes were rolled back with it.
    let count = store::read(&store, |tx| tx.company_count()).await.unwrap();
    assert_eq!(count, 0);
}

/// A read job sees one snapshot: a commit made while it runs does not show up half-way.
async fn a_read_job_sees_one_snapshot(db: backend::TestDb) {
    let store = db.open();
    store::write(&store, |tx| tx.insert_company("A", 0))
        .await
        .unwrap();
    let (started, resume) = (
        Arc::new(std::sync::Barrier::new(2)),
        Arc::new(std::sync::Barrier::new(2)),
    );
    let (s, r, reader) = (
        Arc::clone(&started),
        Arc::clone(&resume),
        Arc::clone(&store),
    );
    let reading = tokio::spawn(async move {
        store::read(&reader, move |tx| {
            let before = tx.company_count()?;
            s.wait();
            r.wait();
            Ok::<_, StoreError>((before, tx.company_count()?))
        })
        .await
    });
    tokio::task::spawn_blocking(move || started.wait())
        .await
        .unwrap();
    store::write(&store, |tx| tx.insert_company("B", 0))
        .await
        .unwrap();
    tokio::task::spawn_blocking(move || resume.wait())
        .await
        .unwrap();
    assert_eq!(reading.await.unwrap().unwrap(), (1, 1));
    assert_eq!(
        store::read(&store, |tx| tx.company_count()).await.unwrap(),
        2
    );
}

/// One open or pending ticket per contact and connection, held by a unique index.
async fn a_second_active_ticket_of_a_contact_is_a_conflict(db: backend::TestDb) {
    use zaphook::domain::TicketStatus;
    use zaphook::store::{NewContact, NewTicket};
    let store = db.open();
    let ticket = |status| NewTicket {
        connection_id: 1,
        contact_id: 1,
        status,
        queue_id: None,
        user_id: None,
        is_group: false,
        external_key: None,
        api_config_id: None,
    };
    store::write(&store, move |tx| {
        let company = tx.insert_company("Acme", 0)?;
        tx.insert_connection(company, "A", Channel::Sandbox, None, 0)?;
        let contact = NewContact {
            number: Some("5511900000001"),
            name: "A",
            ..NewContact::default()
        };
        tx.insert_contact(company, &contact, 0)?;
        tx.insert_ticket(company, &ticket(TicketStatus::Closed), 0)?;
        tx.insert_ticket(company, &ticket(TicketStatus::Pending), 0)?;
        Ok::<_, StoreError>(())
    })
    .await
    .unwrap();
    let second = store::write(&store, move |tx| {
        tx.insert_ticket(1, &ticket(TicketStatus::Open), 0)
    })
    .await;
    assert!(matches!(second, Err(StoreError::Conflict(_))), "{second:?}");
}

/// An older database holding two active tickets of one contact keeps the newer active.
#[test]
fn the_one_active_ticket_migration_closes_older_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    {
        let conn = rusqlite::Connection::open(dir.path().join("zaphook.db")).unwrap();
        for sql in [
            include_str!("../migrations/sqlite/0001_init.sql"),
            include_str!("../migrations/sqlite/0002_cheaper_delivery_indexes.sql"),
            include_str!("../migrations/sqlite/0003_cloud_channel.sql"),
        ] {
            conn.execute_batch(sql).unwrap();
        }
        conn.execute_batch(
            "PRAGMA foreign_keys = OFF;
             CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL);
             INSERT INTO schema_migrations VALUES (1, 0), (2, 0), (3, 0);
             INSERT INTO companies VALUES (1, 'Acme', 0);
             INSERT INTO tickets (id, company_id, connection_id, contact_id, status, protocol, created_at, updated_at)
               VALUES (1, 1, 1, 1, 'open', '1', 0, 0), (2, 1, 1, 1, 'pending', '2', 0, 0),
                      (3, 1, 1, 2, 'pending', '3', 0, 0);",
        )
        .unwrap();
    }
    drop(zaphook::app::open_store(dir.path(), None, 2, Durability::Full, None).unwrap());
    let conn = rusqlite::Connection::open(dir.path().join("zaphook.db")).unwrap();
    let statuses: Vec<String> = conn
        .prepare("SELECT status FROM tickets ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(statuses, ["closed", "pending", "pending"]);
}

/// Contacts, tickets, messages and reactions read back as they were written, found by each
/// of their keys, paged and filtered alike on every backend.
async fn conversations_read_back_what_was_written(db: backend::TestDb) {
    use zaphook::domain::{
        MediaType, Message, MessageError, MessageStatus, Reaction, SendType, TicketStatus,
    };
    use zaphook::store::{NewContact, NewTicket, Reactor, TicketFilter};
    let store = db.open();
    store::write(&store, |tx| {
        let company = tx.insert_company("Acme", 0)?;
        let other = tx.insert_company("Other", 0)?;
        let conn = tx
            .insert_connection(company, "A", Channel::Sandbox, None, 0)?
            .id;
        let user = tx.insert_user(company, "Ana", "ana@example.com", 0)?.id;
        let queue = tx.insert_queue(company, "Vendas", 0)?.id;
        let mut contact = tx.insert_contact(
            company,
            &NewContact {
                bsuid: Some("BR.123"),
                username: Some("sheena"),
                name: "Sheena",
                pushname: Some("Sheena N."),
                ..NewContact::default()
            },
            5,
        )?;
        assert_eq!(contact.number, None);
        assert_eq!(
            tx.contact_by_bsuid(company, "BR.123")?,
            Some(contact.clone())
        );
        assert_eq!(tx.contact_by_bsuid(other, "BR.123")?, None);
        // It learns its number.
        contact.number = Some("5511900000001".into());
        tx.update_contact(&contact)?;
        assert_eq!(
            tx.contact_by_number(company, "5511900000001")?,
            Some(contact.clone())
        );
        assert_eq!(
            tx.contacts(company, Some("5511900000001"))?,
            vec![contact.clone()]
        );
        assert_eq!(tx.contact(company, contact.id)?, Some(contact.clone()));

        let mut ticket = tx.insert_ticket(
            company,
            &NewTicket {
                connection_id: conn,
                contact_id: contact.id,
                status: TicketStatus::Pending,
                queue_id: None,
                user_id: None,
                is_group: false,
                external_key: Some("PEDIDO-1".into()),
                api_config_id: Some("cfg-1".into()),
            },
            10,
        )?;
        assert_eq!(
            ticket.protocol,
            zaphook::domain::protocol_for(10, ticket.id)
        );
        assert_eq!(tx.active_ticket(conn, contact.id)?, Some(ticket.clone()));
        ticket.status = TicketStatus::Open;
        ticket.queue_id = Some(queue);
        ticket.user_id = Some(user);
        ticket.last_message = "oi".into();
        ticket.updated_at = 20;
        ticket.api_config_id = Some("cfg-2".into());
        tx.update_ticket(&ticket)?;
        assert_eq!(tx.ticket(company, ticket.id)?, Some(ticket.clone()));
        assert_eq!(tx.ticket(other, ticket.id)?, None);
        let filter = |status| TicketFilter {
            status: Some(status),
            limit: 10,
            ..TicketFilter::default()
        };
        assert_eq!(
            tx.tickets(company, &filter(TicketStatus::Open))?,
            vec![ticket.clone()]
        );
        assert!(
            tx.tickets(company, &filter(TicketStatus::Pending))?
                .is_empty()
        );
        let of_contact = |contact_id| TicketFilter {
            contact_id: Some(contact_id),
            limit: 10,
            ..TicketFilter::default()
        };
        assert_eq!(
            tx.tickets(company, &of_contact(contact.id))?,
            vec![ticket.clone()]
        );
        assert!(
            tx.tickets(company, &of_contact(contact.id + 1000))?
                .is_empty()
        );

        let message = |id: &str, wamid: Option<&str>, at: i64| Message {
            id: id.to_string(),
            message_id: wamid.map(str::to_string),
            connection_id: conn,
            ticket_id: ticket.id,
            contact_id: contact.id,
            body: format!("body of {id}"),
            timestamp: at,
            status: MessageStatus::Received,
            from_me: false,
            media_type: MediaType::Chat,
            media_url: None,
            is_deleted: false,
            send_type: None,
            edited: false,
            reactions: Vec::new(),
            quoted_message_id: None,
            user_id: None,
            error: None,
            original: Some(serde_json::json!({"type": "text"})),
            participant_id: None,
            created_at: at,
        };
        let first = message("msg_01", Some("wamid.1"), 30);
        let mut second = message("msg_02", None, 31);
        second.from_me = true;
        second.status = MessageStatus::Pending;
        second.send_type = Some(SendType::Api);
        second.participant_id = Some(1);
        second.user_id = Some(user);
        second.quoted_message_id = Some("msg_01".into());
        tx.insert_message(company, &first)?;
        tx.insert_message(company, &second)?;
        // Accepted by the channel, then failed with Meta's error.
        second.message_id = Some("wamid.2".into());
        second.status = MessageStatus::Failed;
        second.error = Some(MessageError {
            code: 131_026,
            title: "Message undeliverable".into(),
            source: "whatsapp".into(),
        });
        tx.update_message(&second)?;
        assert_eq!(tx.message(company, "msg_02")?, Some(second.clone()));
        assert_eq!(tx.message(other, "msg_02")?, None);
        assert_eq!(
            tx.message_by_channel_id(conn, "wamid.1")?,
            Some(first.clone())
        );
        assert_eq!(
            tx.messages_by_channel_id(company, "wamid.2")?,
            vec![second.clone()]
        );

        let reaction = |emoji: &str, at| Reaction {
            emoji: emoji.to_string(),
            from_me: false,
            user_id: None,
            contact_id: Some(contact.id),
            timestamp: at,
        };
        let who = Reactor::Contact(contact.id);
        tx.set_reaction("msg_01", who, Some(&reaction("👍", 40)))?;
        tx.set_reaction("msg_01", who, Some(&reaction("❤️", 41)))?;
        let mut with_reaction = first.clone();
        with_reaction.reactions = vec![reaction("❤️", 41)];
        assert_eq!(
            tx.ticket_messages(ticket.id, None, 10)?,
            vec![with_reaction, second.clone()],
            "one reaction per reactor, the latest"
        );
        tx.set_reaction("msg_01", who, None)?;
        assert_eq!(
            tx.ticket_messages(ticket.id, Some("msg_01"), 10)?,
            vec![second.clone()],
            "pages after a message id"
        );
        assert_eq!(tx.ticket_messages(ticket.id, None, 1)?, vec![first.clone()]);
        Ok::<_, StoreError>(())
    })
    .await
    .unwrap();
}

async fn api_configs_are_found_by_token_until_revoked(db: backend::TestDb) {
    use zaphook::domain::ApiConfig;
    let store = db.open();
    let config = |id: &str, company_id: i64, at: i64| ApiConfig {
        id: id.to_string(),
        company_id,
        connection_id: 1,
        name: format!("n8n {id}"),
        token_prefix: format!("zx_{id}"),
        created_at: at,
        auth_token: (id == "b").then(|| "Bearer of b".to_string()),
    };
    let (a, b, other) = (config("a", 1, 10), config("b", 1, 20), config("c", 2, 30));
    let stored = (a.clone(), b.clone(), other.clone());
    run(&store, move |tx| {
        tx.insert_company("Acme", 0)?;
        tx.insert_company("Other", 0)?;
        tx.insert_api_config(&stored.0, "hash-a")?;
        tx.insert_api_config(&stored.1, "hash-b")?;
        tx.insert_api_config(&stored.2, "hash-c")
    })
    .await;
    let (listed, found, missing) = store::read(&store, |tx| {
        Ok::<_, StoreError>((
            tx.api_configs(1, 1)?,
            tx.api_config_by_token("hash-b")?,
            tx.api_config_by_token("hash-z")?,
        ))
    })
    .await
    .unwrap();
    assert_eq!(listed, [a.clone(), b.clone()]);
    assert_eq!(found, Some(b.clone()));
    assert_eq!(missing, None);
    // A token hash is unique.
    let again = a.clone();
    let taken = store::write(&store, move |tx| {
        tx.insert_api_config(
            &ApiConfig {
                id: "d".into(),
                ..again.clone()
            },
            "hash-a",
        )
    })
    .await;
    assert!(matches!(taken, Err(StoreError::Conflict(_))), "{taken:?}");
    // Revoked only by its own company, and only once.
    let revoked = run(&store, |tx| {
        Ok((
            tx.revoke_api_config(2, "b", 40)?,
            tx.revoke_api_config(1, "b", 40)?,
            tx.revoke_api_config(1, "b", 50)?,
        ))
    })
    .await;
    assert_eq!(revoked, (false, true, false));
    let (listed, found) = store::read(&store, |tx| {
        Ok::<_, StoreError>((tx.api_configs(1, 1)?, tx.api_config_by_token("hash-b")?))
    })
    .await
    .unwrap();
    assert_eq!(listed, [a]);
    assert_eq!(found, None);
}

async fn subscribers_follow_scope_and_filters(db: backend::TestDb) {
    let store = db.open();
    // Each endpoint named by what sets it apart from the defaults.
    let names = [
        "all",
        "no_received",
        "no_sent",
        "no_groups",
        "open_only",
        "pending_only",
        "neither",
        "queue_a",
        "queue_a_start",
        "media",
    ];
    let (ids, stored) = run(&store, move |tx| {
        tx.insert_company("Acme", 0)?;
        tx.insert_connection(1, "A", Channel::Sandbox, None, 0)?;
        let queue_a = tx.insert_queue(1, "A", 0)?.id;
        let mut ids = Vec::new();
        for name in names {
            let mut w = spec("http://example.com/", Ordering::Ticket);
            w.events = vec![EventType::MessageCreated, EventType::TicketTransferred];
            let f = &mut w.filters;
            match name {
                "no_received" => f.received = false,
                "no_sent" => f.sent = false,
                "no_groups" => f.include_groups = false,
                "open_only" => f.ticket_pending = false,
                "pending_only" => f.ticket_open = false,
                "neither" => (f.ticket_open, f.ticket_pending) = (false, false),
                "queue_a" => w.queue_id = Some(queue_a),
                "queue_a_start" => (w.queue_id, w.start_on_transfer) = (Some(queue_a), true),
                "media" => f.media_base64 = true,
                _ => {}
            }
            ids.push(tx.insert_webhook(1, &w, 0)?.id);
        }
        let stored = tx.webhook_view(1, ids[9])?.unwrap();
        Ok((ids, stored))
    })
    .await;
    assert!(stored.filters.media_base64 && stored.filters.received && stored.include_groups);
    let queue_a = 1;
    let base = EventScope {
        company_id: 1,
        event_type: EventType::MessageCreated,
        connection_id: Some(1),
        queue_id: None,
        is_group: false,
        ticket_id: Some(1),
        message: Some(MessageScope {
            from_me: false,
            ticket_status: TicketStatus::Open,
        }),
        previous_queue_id: None,
        transfer_start: false,
        api_config: None,
    };
    let message = |from_me: bool, ticket_status: TicketStatus| EventScope {
        message: Some(MessageScope {
            from_me,
            ticket_status,
        }),
        ..base
    };
    let cases: Vec<(&str, EventScope, Vec<&str>)> = vec![
        (
            "received, open ticket",
            message(false, TicketStatus::Open),
            vec!["all", "no_sent", "no_groups", "open_only", "media"],
        ),
        (
            "sent, pending ticket",
            message(true, TicketStatus::Pending),
            vec!["all", "no_received", "no_groups", "pending_only", "media"],
        ),
        (
            "received in a group",
            EventScope {
                is_group: true,
                ..message(false, TicketStatus::Open)
            },
            vec!["all", "no_sent", "open_only", "media"],
        ),
        (
            "received, closed ticket",
            message(false, TicketStatus::Closed),
            vec![
                "all",
                "no_sent",
                "no_groups",
                "open_only",
                "pending_only",
                "media",
            ],
        ),
        (
            "received in queue A",
            EventScope {
                queue_id: Some(queue_a),
                ..message(false, TicketStatus::Open)
            },
            vec![
                "all",
                "no_sent",
                "no_groups",
                "open_only",
                "queue_a",
                "queue_a_start",
                "media",
            ],
        ),
        (
            "a transfer out of queue A: ticket events ignore the message filters",
            EventScope {
                event_type: EventType::TicketTransferred,
                queue_id: None,
                previous_queue_id: Some(queue_a),
                message: None,
                ..base
            },
            names.to_vec(),
        ),
        (
            "a ticket event in no queue",
            EventScope {
                event_type: EventType::TicketTransferred,
                message: None,
                ..base
            },
            names
                .iter()
                .copied()
                .filter(|n| !n.starts_with("queue_a"))
                .collect(),
        ),
        (
            "the last message as the ticket enters queue A",
            EventScope {
                queue_id: Some(queue_a),
                transfer_start: true,
                ..message(false, TicketStatus::Pending)
            },
            vec!["queue_a_start"],
        ),
    ];
    for (case, scope, expected) in cases {
        let subscribers = store::read(&store, move |tx| tx.subscribers(&scope, 0))
            .await
            .unwrap();
        let got: Vec<&str> = subscribers
            .iter()
            .map(|s| {
                names[ids
                    .iter()
                    .position(|id| *id == s.target.webhook_id)
                    .unwrap()]
            })
            .collect();
        assert_eq!(got, expected, "{case}");
        for s in &subscribers {
            let media = names[ids
                .iter()
                .position(|id| *id == s.target.webhook_id)
                .unwrap()]
                == "media";
            assert_eq!(s.media_base64, media, "{case}");
        }
    }
}

/// Housekeeping runs on every node: two stores on one database prune and free orphans at the
/// same time, and between them each row goes exactly once, with nothing unfinished touched.
async fn housekeeping_on_two_nodes_at_once_takes_each_row_once(db: backend::TestDb) {
    use zaphook::clock::Clock;
    use zaphook::delivery::housekeeping::{self, HousekeepingConfig};
    const OLD: i64 = 600;
    const ORPHANS: i64 = 10;
    const PENDING: i64 = 50;
    let first = db.open();
    run(&first, |tx| {
        let hook = setup(tx, &[Ordering::None])?[0];
        for i in 0..OLD {
            event(tx, 1_000 + i, 10)?;
        }
        loop {
            let claimed = claim_all(tx, 100, 10_000)?;
            if claimed.is_empty() {
                break;
            }
            for c in &claimed {
                tx.record_attempt(&record(c, 20, NextStep::Delivered))?;
            }
        }
        for i in 0..PENDING {
            event(tx, 5_000 + i, 20_000)?;
        }
        // Ticket-ordered deliveries, each the only one of its ticket, to be left blocked.
        let ordered = tx.insert_webhook(1, &spec("http://example.com/o", Ordering::Ticket), 0)?;
        assert!(ordered.id > hook);
        Ok(())
    })
    .await;
    run(&first, |tx| {
        // Only the ticket-ordered endpoint takes these (the other one is disabled for them).
        tx.update_webhook(
            1,
            1,
            &WebhookSpec {
                enabled: false,
                ..spec("http://example.com/", Ordering::None)
            },
            0,
        )?;
        for i in 0..ORPHANS {
            event(tx, 9_000 + i, 30_000)?;
        }
        Ok(())
    })
    .await;
    db.sql("UPDATE deliveries SET blocked = (1 = 1) WHERE webhook_id = 2 AND ordering_key >= 9000");
    assert_eq!(db.count("deliveries"), OLD + PENDING + ORPHANS);

    let second = db.open();
    let config = HousekeepingConfig {
        retention: std::time::Duration::from_secs(3600),
        interval: std::time::Duration::from_secs(3600),
        batch: 25,
    };
    let (_stop, shutdown) = tokio::sync::watch::channel(false);
    let clock = Clock::System;
    let node = |store: Arc<dyn Store>| {
        let (clock, config, shutdown) = (clock.clone(), config.clone(), shutdown.clone());
        tokio::spawn(async move {
            let pruned = housekeeping::prune(&store, &clock, &config, &shutdown)
                .await
                .unwrap();
            let freed = store::write(&store, |tx| tx.free_orphaned()).await.unwrap();
            (pruned, freed)
        })
    };
    let (a, b) = (node(Arc::clone(&first)), node(Arc::clone(&second)));
    let ((pruned_a, freed_a), (pruned_b, freed_b)) = (a.await.unwrap(), b.await.unwrap());
    assert_eq!(
        pruned_a + pruned_b,
        2 * OLD as usize + 1,
        "every old delivery and its event, and the old minute's attempt counts, once: \
         {pruned_a} + {pruned_b}"
    );
    assert_eq!(freed_a + freed_b, ORPHANS as usize, "{freed_a} + {freed_b}");
    assert_eq!(db.count("deliveries"), PENDING + ORPHANS);
    assert_eq!(db.count("events"), PENDING + ORPHANS);
    assert_eq!(db.count("attempts"), 0);
    let due = store::read(&first, |tx| tx.due_webhooks(40_000))
        .await
        .unwrap();
    assert_eq!(due.len(), 1, "the orphans can be claimed again: {due:?}");
}

/// An API config keeps its `authToken` and changes it; its hook endpoints carry their format
/// and owner, take only their config's hook events (and the token in the header of their
/// format), and one config has at most one endpoint of each hook.
async fn api_config_hooks_are_endpoints_of_their_config(db: backend::TestDb) {
    use zaphook::domain::ApiConfig;
    let store = db.open();
    let config = |id: &str| ApiConfig {
        id: id.to_string(),
        company_id: 1,
        connection_id: 1,
        name: format!("n8n {id}"),
        token_prefix: format!("zx_{id}"),
        created_at: 10,
        auth_token: Some(format!("secret of {id}")),
    };
    let hook = |api_config: &str, format: WebhookFormat| WebhookSpec {
        events: format.hook_event().into_iter().collect(),
        format,
        api_config_id: Some(api_config.to_string()),
        connection_id: Some(1),
        token: Some(format!("secret of {api_config}")),
        ..spec(
            &format!("http://example.com/{api_config}"),
            Ordering::Ticket,
        )
    };
    let (a, b) = (config("a"), config("b"));
    let stored = (a.clone(), b.clone());
    let ids = run(&store, move |tx| {
        tx.insert_company("Acme", 0)?;
        tx.insert_connection(1, "A", Channel::Sandbox, None, 0)?;
        tx.insert_api_config(&stored.0, "hash-a")?;
        tx.insert_api_config(&stored.1, "hash-b")?;
        let plain = tx.insert_webhook(1, &spec("http://example.com/", Ordering::Ticket), 0)?;
        let a_acks = tx.insert_webhook(1, &hook("a", WebhookFormat::HookMessageStatus), 0)?;
        let b_acks = tx.insert_webhook(1, &hook("b", WebhookFormat::HookMessageStatus), 0)?;
        let a_state = tx.insert_webhook(1, &hook("a", WebhookFormat::HookSessionStatus), 0)?;
        Ok((plain.id, a_acks.id, b_acks.id, a_state.id))
    })
    .await;
    let (plain, a_acks, b_acks, a_state) = ids;
    let (found, view, spec_of, target) = store::read(&store, move |tx| {
        Ok::<_, StoreError>((
            tx.api_config(1, "a")?,
            tx.webhook_view(1, a_acks)?,
            tx.webhook(1, a_state)?,
            tx.target(1, a_acks, 0)?,
        ))
    })
    .await
    .unwrap();
    assert_eq!(found, Some(a.clone()));
    let view = view.unwrap();
    assert_eq!(
        (view.format, view.api_config_id.as_deref(), view.has_token),
        (WebhookFormat::HookMessageStatus, Some("a"), true)
    );
    let spec_of = spec_of.unwrap();
    assert_eq!(
        (spec_of.format, spec_of.api_config_id.as_deref()),
        (WebhookFormat::HookSessionStatus, Some("a"))
    );
    let target = target.unwrap();
    assert_eq!(target.format, WebhookFormat::HookMessageStatus);
    assert_eq!(target.token.as_deref(), Some("secret of a"));

    // Who hears what: a ticket's ack reaches its own config's hook only, a connection's
    // state its configs' session hooks, and the plain endpoint neither.
    let scope = |event_type, api_config| EventScope {
        company_id: 1,
        event_type,
        connection_id: Some(1),
        queue_id: None,
        is_group: false,
        ticket_id: Some(1),
        message: None,
        previous_queue_id: None,
        transfer_start: false,
        api_config,
    };
    let heard = |scope: EventScope<'static>| {
        let store = Arc::clone(&store);
        async move {
            store::read(&store, move |tx| tx.subscribers(&scope, 0))
                .await
                .unwrap()
                .into_iter()
                .map(|s| (s.target.webhook_id, s.target.format))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        heard(scope(EventType::HookMessageStatus, Some("b"))).await,
        [(b_acks, WebhookFormat::HookMessageStatus)]
    );
    assert_eq!(
        heard(scope(EventType::HookMessageStatus, Some("z"))).await,
        []
    );
    assert_eq!(
        heard(scope(EventType::HookSessionStatus, None)).await,
        [(a_state, WebhookFormat::HookSessionStatus)]
    );
    assert_eq!(
        heard(scope(EventType::MessageCreated, None)).await,
        [(plain, WebhookFormat::Whazing)]
    );

    // A second hook of one kind for a config is a conflict; its name and token change.
    let taken = store::write(&store, move |tx| {
        tx.insert_webhook(1, &hook("a", WebhookFormat::HookMessageStatus), 0)
    })
    .await;
    assert!(matches!(taken, Err(StoreError::Conflict(_))), "{taken:?}");
    let (changed, missing, after) = run(&store, |tx| {
        Ok((
            tx.update_api_config(1, "a", "renamed", None)?,
            tx.update_api_config(2, "a", "intruder", Some("x"))?,
            tx.api_config(1, "a")?,
        ))
    })
    .await;
    assert!(changed && !missing);
    let after = after.unwrap();
    assert_eq!((after.name.as_str(), after.auth_token), ("renamed", None));
    run(&store, |tx| {
        tx.revoke_api_config(1, "b", 20)?;
        Ok(())
    })
    .await;
    let revoked = store::read(&store, |tx| tx.api_config(1, "b"))
        .await
        .unwrap();
    assert_eq!(revoked, None, "a revoked config is not found");
}

/// A cloud connection's refused token is set and cleared once each, however often the same
/// change is asked for; a sandbox connection has no token to refuse.
async fn a_refused_token_changes_state_once(db: backend::TestDb) {
    use zaphook::domain::CloudConfig;
    let store = db.open();
    let cloud = CloudConfig {
        phone_number_id: "106540352242922".into(),
        access_token: "EAAG".into(),
        app_secret: "app-secret".into(),
        verify_token: "verify".into(),
        graph_base_url: None,
        graph_version: None,
    };
    let (cloud_id, sandbox_id) = run(&store, move |tx| {
        let company = tx.insert_company("Acme", 0)?;
        let c = tx.insert_connection(company, "Cloud", Channel::Cloud, Some(&cloud), 0)?;
        let s = tx.insert_connection(company, "Sandbox", Channel::Sandbox, None, 0)?;
        Ok((c.id, s.id))
    })
    .await;
    let changes = run(&store, move |tx| {
        Ok(vec![
            tx.set_token_refused(cloud_id, Some(10))?,
            tx.set_token_refused(cloud_id, Some(20))?,
            tx.set_token_refused(sandbox_id, Some(10))?,
        ])
    })
    .await;
    assert_eq!(changes, [true, false, false]);
    let refused = store::read(&store, move |tx| tx.connection(1, cloud_id))
        .await
        .unwrap()
        .unwrap();
    assert!(refused.cloud.unwrap().token_refused);
    let changes = run(&store, move |tx| {
        Ok(vec![
            tx.set_token_refused(cloud_id, None)?,
            tx.set_token_refused(cloud_id, None)?,
        ])
    })
    .await;
    assert_eq!(changes, [true, false]);
    let cleared = store::read(&store, move |tx| tx.connection(1, cloud_id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cleared.session_status(), "CONNECTED");
}

async fn attempts_are_counted_per_endpoint_and_minute(db: backend::TestDb) {
    const MINUTE: i64 = 60_000;
    let store = db.open();
    let (a, b, other) = run(&store, |tx| {
        let hooks = setup(tx, &[Ordering::None, Ordering::None])?;
        let other = tx.insert_company("Other", 0)?;
        let theirs = tx.insert_webhook(other, &spec("http://example.com/x", Ordering::None), 0)?;
        for ticket in 0..6 {
            event(tx, ticket, 10)?;
        }
        Ok((hooks[0], hooks[1], theirs.id))
    })
    .await;
    let claimed = run(&store, |tx| claim_all(tx, 100, 10 * MINUTE)).await;
    assert_eq!(claimed.len(), 12);
    let of = |hook: i64| -> Vec<Claimed> {
        claimed
            .iter()
            .filter(|c| c.target.webhook_id == hook)
            .cloned()
            .collect()
    };
    let (of_a, of_b) = (of(a), of(b));
    // Endpoint a, minute 1: three in one commit and one in another; minute 2: one dead.
    let attempt = |c: &Claimed, at: i64, next: NextStep, latency_ms: i64| AttemptRecord {
        latency_ms,
        ..record(c, at, next)
    };
    let first: Vec<AttemptRecord> = vec![
        attempt(&of_a[0], MINUTE + 1, NextStep::Delivered, 40),
        attempt(&of_a[1], MINUTE + 2, NextStep::Delivered, 120),
        attempt(&of_a[2], MINUTE + 3, NextStep::RetryAt(9 * MINUTE), 3_000),
    ];
    run(&store, move |tx| {
        for r in &first {
            assert!(tx.record_attempt(r)?.applied);
        }
        Ok(())
    })
    .await;
    let (late, dead, stolen) = (
        attempt(&of_a[3], 2 * MINUTE - 1, NextStep::Delivered, 60),
        attempt(&of_a[4], 2 * MINUTE + 5, NextStep::Dead, 20_000),
        AttemptRecord {
            lease: of_a[5].lease + 1,
            ..attempt(&of_a[5], 2 * MINUTE + 6, NextStep::Delivered, 1)
        },
    );
    let on_b = attempt(&of_b[0], MINUTE + 30, NextStep::Delivered, 10);
    run(&store, move |tx| {
        tx.record_attempt(&late)?;
        tx.record_attempt(&dead)?;
        assert!(
            !tx.record_attempt(&stolen)?.applied,
            "not our lease: not counted"
        );
        tx.record_attempt(&on_b)?;
        Ok(())
    })
    .await;

    let (whole, recent, minutes, of_b_only, theirs, backlog) = store::read(&store, move |tx| {
        Ok::<_, StoreError>((
            tx.attempt_tally(a, 0)?,
            tx.attempt_tally(a, 2)?,
            tx.attempt_minutes(1, None, 0)?,
            tx.attempt_minutes(1, Some(b), 0)?,
            tx.attempt_minutes(2, None, 0)?,
            tx.backlog(a)?,
        ))
    })
    .await
    .unwrap();
    assert_eq!(
        (whole.delivered, whole.failed, whole.dead, whole.attempts()),
        (3, 1, 1, 5)
    );
    assert_eq!(whole.latency_ms_sum, 40 + 120 + 3_000 + 60 + 20_000);
    assert_eq!(whole.latency, [1, 1, 1, 0, 0, 0, 1, 0, 1]);
    assert_eq!((recent.dead, recent.attempts()), (1, 1));
    let by_minute: Vec<(i64, i64, i64)> = minutes
        .iter()
        .map(|(m, t)| (*m, t.delivered, t.attempts()))
        .collect();
    assert_eq!(
        by_minute,
        vec![(1, 4, 5), (2, 0, 1)],
        "both endpoints of the company, per minute"
    );
    assert_eq!(of_b_only.len(), 1);
    assert_eq!(of_b_only[0].1.latency[0], 1);
    assert!(
        theirs.is_empty(),
        "another company's endpoint has no attempts: {theirs:?}"
    );
    let _ = other;
    // a's failed one waits for its retry and the stolen one is still out under its lease.
    let backlog = backlog.expect("a has waiting deliveries");
    assert_eq!((backlog.pending, backlog.oldest_created_at), (2, 10));
    let none = store::read(&store, move |tx| tx.backlog(b)).await.unwrap();
    assert_eq!(none.map(|n| n.pending), Some(5));
    // Retention takes the counts of the minutes before its cutoff.
    run(&store, |tx| tx.prune(2 * MINUTE, 100)).await;
    let left = store::read(&store, |tx| tx.attempt_minutes(1, None, 0))
        .await
        .unwrap();
    assert_eq!(left.iter().map(|(m, _)| *m).collect::<Vec<_>>(), vec![2]);
    let total = left
        .iter()
        .fold(AttemptTally::default(), |mut sum, (_, t)| {
            sum.add(t);
            sum
        });
    assert_eq!(total.dead, 1);
}
/// Appends one event of `company` (type `kind`, ticket `ticket`, `body` in its payload) for
/// each of its subscribers, at `now`.
fn event_of(
    tx: &mut dyn Tx,
    company: i64,
    kind: EventType,
    ticket: i64,
    body: &str,
    now: i64,
) -> Result<(), StoreError> {
    let scope = EventScope {
        company_id: company,
        event_type: kind,
        connection_id: None,
        queue_id: None,
        is_group: false,
        ticket_id: Some(ticket),
        message: None,
        previous_queue_id: None,
        transfer_start: false,
        api_config: None,
    };
    let id = zaphook::domain::new_event_id();
    tx.insert_event(&id, &scope, &format!("{{\"body\":\"{body}\"}}"), None, now)?;
    for s in tx.subscribers(&scope, now)? {
        tx.insert_delivery(
            &NewDelivery {
                id: &zaphook::domain::new_delivery_id(),
                event_id: &id,
                event_type: kind,
                webhook_id: s.target.webhook_id,
                company_id: company,
                ticket_id: Some(ticket),
                ordering_key: None,
            },
            now,
            None,
        )?;
    }
    Ok(())
}

/// Every page of the log for `filter`, `limit` at a time reading at most `scan` deliveries a
/// page: the deliveries' ids in order, and how many pages stopped at their bound.
fn whole_log(
    tx: &mut dyn Tx,
    filter: &store::LogFilter,
    limit: i64,
    scan: i64,
) -> Result<(Vec<store::LogRow>, usize), StoreError> {
    let (mut all, mut bounded, mut before) = (Vec::new(), 0, None);
    for _ in 0..1000 {
        let page = tx.delivery_log(filter, before, limit, scan)?;
        assert!(page.rows.len() as i64 <= limit);
        bounded += usize::from(page.searched_to.is_some());
        all.extend(page.rows);
        match page.next {
            Some(next) => before = Some(next),
            None => return Ok((all, bounded)),
        }
    }
    panic!("the log never ended");
}

async fn the_delivery_log_is_the_companys_own_narrowed_and_paged_by_key(db: backend::TestDb) {
    let store = db.open();
    run(&store, |tx| {
        let hooks = setup(tx, &[Ordering::None, Ordering::None])?;
        let mut all_events = spec("http://example.com/", Ordering::None);
        all_events.events = vec![EventType::MessageCreated, EventType::TicketClosed];
        let wide = tx.insert_webhook(1, &all_events, 0)?.id;
        let other = tx.insert_company("Other", 0)?;
        let theirs = tx.insert_webhook(other, &all_events, 0)?.id;
        // Times repeat, so the key's second part (seq) decides within a millisecond.
        for i in 0..12i64 {
            event_of(
                tx,
                1,
                EventType::MessageCreated,
                i % 3,
                &format!("m{i}"),
                100 + i / 2,
            )?;
            event_of(
                tx,
                other,
                EventType::MessageCreated,
                i % 3,
                &format!("m{i}"),
                100 + i / 2,
            )?;
        }
        event_of(tx, 1, EventType::TicketClosed, 7, "closed", 200)?;
        let company = store::LogFilter {
            company_id: 1,
            ..Default::default()
        };
        let (rows, bounded) = whole_log(tx, &company, 5, 1000)?;
        assert_eq!((rows.len(), bounded), (12 * 3 + 1, 0));
        let keys: Vec<_> = rows.iter().map(|r| r.key).collect();
        let mut sorted = keys.clone();
        sorted.sort_by(|a, b| b.cmp(a));
        sorted.dedup();
        assert_eq!(keys, sorted, "newest first, each once");
        assert!(rows.iter().all(|r| r.delivery.webhook_id != theirs));
        assert_eq!(rows[0].delivery.event_type, EventType::TicketClosed);
        assert_eq!(rows[0].ticket_id, Some(7));

        let narrowed = |f: fn(&mut store::LogFilter)| {
            let mut filter = company.clone();
            f(&mut filter);
            filter
        };
        let count =
            |tx: &mut dyn Tx, filter: &store::LogFilter, scan: i64| whole_log(tx, filter, 4, scan);
        let (rows, _) = count(tx, &narrowed(|f| f.ticket_id = Some(1)), 1000)?;
        assert_eq!(rows.len(), 4 * 3);
        assert!(rows.iter().all(|r| r.ticket_id == Some(1)));
        let mut by_hook = company.clone();
        by_hook.webhook_id = Some(hooks[1]);
        let (rows, _) = count(tx, &by_hook, 1000)?;
        assert_eq!(rows.len(), 12);
        assert!(rows.iter().all(|r| r.delivery.webhook_id == hooks[1]));
        let mut theirs_filter = company.clone();
        theirs_filter.webhook_id = Some(theirs);
        assert_eq!(
            count(tx, &theirs_filter, 1000)?.0.len(),
            0,
            "another company's endpoint"
        );
        let (rows, _) = count(
            tx,
            &narrowed(|f| f.event_type = Some(EventType::TicketClosed)),
            1000,
        )?;
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].delivery.webhook_id, wide);
        // From 101 to before 103: events 2 to 5, each to three endpoints.
        let (rows, _) = count(
            tx,
            &narrowed(|f| {
                f.from = Some(101);
                f.to = Some(103);
            }),
            1000,
        )?;
        assert_eq!(rows.len(), 4 * 3);
        assert!(
            rows.iter()
                .all(|r| (101..103).contains(&r.delivery.created_at))
        );

        // Text in the payload: with a bound of 5 deliveries read a page, the pages that stop
        // there say so, and going on finds every match all the same.
        let (rows, bounded) = count(tx, &narrowed(|f| f.text = Some("m1".into())), 5)?;
        assert_eq!(rows.len(), 3 * 3, "m1, m10 and m11");
        assert!(bounded > 0);
        let (rows, _) = count(tx, &narrowed(|f| f.text = Some("nowhere".into())), 1000)?;
        assert!(rows.is_empty());

        // States: dead ones through the state index, delivered ones through the company's.
        let claimed = claim_all(tx, 1_000, 10_000)?;
        for (i, c) in claimed.iter().enumerate() {
            let next = if i % 4 == 0 {
                NextStep::Dead
            } else {
                NextStep::Delivered
            };
            tx.record_attempt(&record(c, 1_000, next))?;
        }
        let dead = claimed
            .iter()
            .step_by(4)
            .filter(|c| c.target.webhook_id != theirs)
            .count();
        let (rows, _) = count(
            tx,
            &narrowed(|f| f.status = Some(DeliveryStatus::Dead)),
            1000,
        )?;
        assert_eq!(rows.len(), dead);
        assert!(
            rows.iter()
                .all(|r| r.delivery.status == DeliveryStatus::Dead)
        );
        let (rows, _) = count(
            tx,
            &narrowed(|f| f.status = Some(DeliveryStatus::Delivered)),
            1000,
        )?;
        assert_eq!(rows.len(), 37 - dead);
        let mut dead_of_hook = by_hook.clone();
        dead_of_hook.status = Some(DeliveryStatus::Dead);
        let (rows, _) = count(tx, &dead_of_hook, 1000)?;
        assert!(rows.iter().all(
            |r| r.delivery.webhook_id == hooks[1] && r.delivery.status == DeliveryStatus::Dead
        ));
        Ok(())
    })
    .await;
}

async fn a_recovery_counts_the_deliveries_it_queued_again(db: backend::TestDb) {
    let store = db.open();
    run(&store, |tx| {
        let hook = setup(tx, &[Ordering::None])?[0];
        let other = tx.insert_company("Other", 0)?;
        for at in [10, 20, 30] {
            event_of(tx, 1, EventType::MessageCreated, 1, "x", at)?;
        }
        for c in claim_all(tx, 100, 10_000)? {
            tx.record_attempt(&record(&c, 100, NextStep::Dead))?;
        }
        assert_eq!(tx.start_recovery(other, hook, 0, 200)?, None, "not theirs");
        let first = tx.start_recovery(1, hook, 15, 200)?.expect("a recovery");
        assert_eq!(first.queued, 2, "those created since 15");
        let (read, progress) = tx.recovery(1, first.id)?.expect("found");
        assert_eq!(read, first);
        assert_eq!((progress.waiting, progress.total()), (2, 2));
        assert!(tx.recovery(other, first.id)?.is_none());
        // One delivered, one dead again; a later recovery takes the dead one.
        let claimed = claim_all(tx, 300, 10_000)?;
        assert_eq!(claimed.len(), 2);
        tx.record_attempt(&record(&claimed[0], 300, NextStep::Delivered))?;
        tx.record_attempt(&record(&claimed[1], 300, NextStep::Dead))?;
        let (_, progress) = tx.recovery(1, first.id)?.expect("found");
        assert_eq!(
            (progress.delivered, progress.dead, progress.waiting),
            (1, 1, 0)
        );
        let second = tx.start_recovery(1, hook, 0, 400)?.expect("a recovery");
        assert_eq!(second.queued, 2, "the dead one again and the oldest one");
        let (_, progress) = tx.recovery(1, first.id)?.expect("found");
        assert_eq!(progress.total(), 1, "the other is the later recovery's now");
        let listed: Vec<i64> = tx.recoveries(1, 10)?.iter().map(|r| r.id).collect();
        assert_eq!(listed, vec![second.id, first.id]);
        assert!(tx.recoveries(other, 10)?.is_empty());
        Ok(())
    })
    .await;
}

async fn attempts_recorded_together_move_each_delivery_as_one_at_a_time_would(db: backend::TestDb) {
    let store = db.open();
    let (ordered, unordered, claimed) = run(&store, |tx| {
        let hooks = setup(tx, &[Ordering::Ticket, Ordering::None])?;
        for ticket in 1..=3 {
            event(tx, ticket, 10)?;
            event(tx, ticket, 11)?;
        }
        Ok((hooks[0], hooks[1], claim_all(tx, 100, 1_000)?))
    })
    .await;
    let of = |hook: i64| -> Vec<Claimed> {
        let mut of: Vec<Claimed> = claimed
            .iter()
            .filter(|c| c.target.webhook_id == hook)
            .cloned()
            .collect();
        of.sort_by_key(|c| c.seq);
        of
    };
    let (of_ordered, of_unordered) = (of(ordered), of(unordered));
    assert_eq!(
        (of_ordered.len(), of_unordered.len()),
        (3, 6),
        "one per ticket waits"
    );
    let records = vec![
        record(&of_ordered[0], 200, NextStep::Delivered),
        record(&of_ordered[1], 200, NextStep::Dead),
        record(&of_ordered[2], 200, NextStep::RetryAt(500)),
        record(&of_unordered[0], 200, NextStep::Delivered),
        AttemptRecord {
            lease: of_unordered[1].lease + 1,
            ..record(&of_unordered[1], 200, NextStep::Delivered)
        },
        AttemptRecord {
            status_code: Some(410),
            disable_webhook: true,
            ..record(&of_unordered[2], 200, NextStep::Dead)
        },
        // One delivery twice: under a lease lost, then under the lease it holds.
        AttemptRecord {
            lease: of_unordered[3].lease + 1,
            ..record(&of_unordered[3], 200, NextStep::Delivered)
        },
        record(&of_unordered[3], 200, NextStep::RetryAt(600)),
    ];
    let recorded = run(&store, move |tx| tx.record_attempts(&records, None)).await;
    let applied: Vec<bool> = recorded.iter().map(|r| r.applied).collect();
    assert_eq!(applied, [true, true, true, true, false, true, false, true]);
    let unblocked: Vec<bool> = recorded.iter().map(|r| r.unblocked).collect();
    assert_eq!(
        unblocked,
        [true, true, false, false, false, false, false, false],
        "a finished delivery frees its ticket's next; a retry does not"
    );
    let disabled: Vec<bool> = recorded.iter().map(|r| r.disabled.is_some()).collect();
    assert_eq!(
        disabled,
        [false, false, false, false, false, true, false, false]
    );

    let (next, stolen, retried, twice) = run(&store, move |tx| {
        Ok((
            claim_all(tx, 200, 2_000)?,
            tx.delivery(1, &of_unordered[1].id)?.unwrap(),
            tx.delivery(1, &of_ordered[2].id)?.unwrap(),
            tx.delivery(1, &of_unordered[3].id)?.unwrap(),
        ))
    })
    .await;
    // Tickets 1 and 2 go on with their second events; ticket 3 waits for its retry; the
    // disabled endpoint is claimed from no more.
    assert_eq!(next.len(), 2, "{next:?}");
    assert!(next.iter().all(|c| c.target.webhook_id == ordered));
    assert!(next.iter().all(|c| c.payload.contains("\"at\":11")));
    // An attempt under a lease no longer ours is logged and moves nothing.
    assert_eq!(stolen.attempts_log.len(), 1);
    assert_eq!(stolen.delivery.status, DeliveryStatus::Delivering);
    assert_eq!(stolen.delivery.attempts, 0);
    assert_eq!(retried.delivery.status, DeliveryStatus::Failed);
    assert_eq!(
        (retried.delivery.attempts, retried.delivery.next_attempt_at),
        (1, Some(500))
    );
    assert_eq!(twice.attempts_log.len(), 2);
    assert_eq!(twice.delivery.status, DeliveryStatus::Failed);
    assert_eq!(
        (twice.delivery.attempts, twice.delivery.next_attempt_at),
        (1, Some(600))
    );
}

/// A write job that says ahead what it looks up; the first of a batch holds the writer until
/// the others are queued, so that they share one commit.
struct Looking {
    index: usize,
    lookups: Option<store::Lookups>,
    gate: Option<(std::sync::mpsc::Sender<()>, std::sync::mpsc::Receiver<()>)>,
    f: LookingFn,
    result: Option<Result<String, String>>,
    answer: std::sync::mpsc::Sender<(usize, Result<String, String>)>,
}

type LookingFn = Box<dyn FnMut(&mut dyn Tx) -> Result<String, String> + Send>;

impl WriteJob for Looking {
    fn run(&mut self, tx: &mut dyn Tx) -> bool {
        if let Some((holding, gate)) = self.gate.take() {
            holding.send(()).unwrap();
            gate.recv().unwrap();
        }
        let result = (self.f)(tx);
        let keep = result.is_ok();
        self.result = Some(result);
        keep
    }

    fn lookups(&self) -> Option<&store::Lookups> {
        self.lookups.as_ref()
    }

    fn reply(self: Box<Self>, committed: Result<(), StoreError>) {
        let answer = match committed {
            Ok(()) => self.result.unwrap_or_else(|| Err("never ran".into())),
            Err(e) => Err(e.to_string()),
        };
        self.answer.send((self.index, answer)).unwrap();
    }
}

/// Runs `jobs` in one commit (after a gate job that writes nothing) and answers each one's
/// answer, in their order.
async fn in_one_commit(
    store: &Arc<dyn Store>,
    jobs: Vec<(Option<store::Lookups>, LookingFn)>,
) -> Vec<Result<String, String>> {
    let (answer, answers) = std::sync::mpsc::channel();
    let (open_gate, gate) = std::sync::mpsc::channel();
    let (holding, writer_held) = std::sync::mpsc::channel();
    let gate_job: LookingFn = Box::new(|_| Err("the gate writes nothing".into()));
    let count = jobs.len();
    let all = std::iter::once((None, gate_job)).chain(jobs);
    let mut gate = Some((holding, gate));
    for (index, (lookups, f)) in all.enumerate() {
        store.submit_write(Box::new(Looking {
            index,
            lookups,
            gate: gate.take(),
            f,
            result: None,
            answer: answer.clone(),
        }));
        if index == 0 {
            writer_held.recv().unwrap();
        }
    }
    drop(answer);
    open_gate.send(()).unwrap();
    let mut answered: Vec<(usize, Result<String, String>)> =
        tokio::task::spawn_blocking(move || answers.iter().collect())
            .await
            .unwrap();
    answered.sort_by_key(|(index, _)| *index);
    assert_eq!(answered.len(), count + 1, "every job is answered once");
    answered.into_iter().skip(1).map(|(_, a)| a).collect()
}

fn sandbox_message(number: &str, channel_id: &str) -> zaphook::ingest::InboundMessage {
    zaphook::ingest::InboundMessage {
        connection_id: 1,
        channel: Channel::Sandbox,
        contact: zaphook::ingest::Identity::number(number),
        echo: false,
        is_group: false,
        name: Some(format!("Contact {number}")),
        body: format!("body of {channel_id}"),
        media_type: zaphook::domain::MediaType::Chat,
        media_url: None,
        message_id: channel_id.to_string(),
        timestamp: 1,
        quoted_message_id: None,
        original: None,
        participant: None,
    }
}

/// A job filing `channel_id` from `number`, answering "message ticket contact".
fn inbound_job(number: &str, channel_id: &str) -> (Option<store::Lookups>, LookingFn) {
    let cmd = sandbox_message(number, channel_id);
    let lookups = Some(cmd.lookups(1));
    let f: LookingFn = Box::new(move |tx| {
        zaphook::ingest::inbound(tx, 1, 50, &cmd)
            .map(|m| format!("{} {} {}", m.id, m.ticket_id, m.contact_id))
            .map_err(|e| e.to_string())
    });
    (lookups, f)
}

fn parts(answer: &Result<String, String>) -> Vec<String> {
    answer
        .as_ref()
        .unwrap()
        .split(' ')
        .map(str::to_string)
        .collect()
}

/// Inbound messages of one group commit, with what they look up said ahead (PostgreSQL
/// reads it for the batch at once and holds their inserts), come out as if each had run
/// alone: a duplicate in the batch is the first one, a redelivery the stored message, a new
/// contact's second message finds its first one's ticket, a ticket closed in the batch is
/// not found again. When a held write fails, the batch runs again and only the job at fault
/// fails.
async fn inbound_jobs_sharing_a_commit_see_what_one_at_a_time_would(db: backend::TestDb) {
    let store = db.open();
    let first = run(&store, |tx| {
        setup(tx, &[Ordering::Ticket])?;
        zaphook::ingest::inbound(tx, 1, 10, &sandbox_message("5511900000001", "old"))
            .map_err(|e| StoreError::Database(e.to_string()))
    })
    .await;
    let (a, t1) = (first.contact_id, first.ticket_id);
    let close: LookingFn = Box::new(move |tx| {
        let patch = zaphook::ingest::PatchTicket {
            status: Some(TicketStatus::Closed),
            ..Default::default()
        };
        zaphook::ingest::update_ticket(tx, 1, 60, t1, &patch)
            .map(|t| t.status.as_str().to_string())
            .map_err(|e| e.to_string())
    });
    let answers = in_one_commit(
        &store,
        vec![
            inbound_job("5511900000001", "m1"),
            inbound_job("5511900000001", "m1"),
            inbound_job("5511900000001", "old"),
            inbound_job("5511900000002", "m2"),
            inbound_job("5511900000002", "m3"),
            (None, close),
            inbound_job("5511900000001", "m4"),
        ],
    )
    .await;
    let [m1, m1_again, old, m2, m3, closed, m4] = &answers[..] else {
        panic!("{answers:?}");
    };
    let (m1, m2, m3, m4) = (parts(m1), parts(m2), parts(m3), parts(m4));
    assert_eq!(
        (m1[1].clone(), m1[2].clone()),
        (t1.to_string(), a.to_string())
    );
    assert_eq!(
        parts(m1_again),
        m1,
        "a duplicate in the batch is the first message"
    );
    assert_eq!(
        parts(old)[0],
        first.id,
        "a redelivery is the stored message"
    );
    assert_ne!(m2[2], a.to_string(), "a new contact");
    assert_eq!(
        (&m3[1], &m3[2]),
        (&m2[1], &m2[2]),
        "its second message finds its ticket"
    );
    assert_ne!(m3[0], m2[0]);
    assert_eq!(closed.as_deref(), Ok("closed"));
    assert_eq!(m4[2], a.to_string());
    assert_ne!(
        m4[1],
        t1.to_string(),
        "the closed ticket is not found again"
    );
    let ids: [i64; 3] = [t1, m2[1].parse().unwrap(), m4[1].parse().unwrap()];
    let tickets = store::read(&store, move |tx| {
        let mut found = Vec::new();
        for id in ids {
            let t = tx.ticket(1, id)?.unwrap();
            let bodies: Vec<String> = tx
                .ticket_messages(id, None, 10)?
                .into_iter()
                .map(|m| m.body)
                .collect();
            found.push((t.status, t.last_message, bodies));
        }
        Ok::<_, StoreError>(found)
    })
    .await
    .unwrap();
    let bodies =
        |names: &[&str]| -> Vec<String> { names.iter().map(|n| format!("body of {n}")).collect() };
    assert_eq!(
        tickets,
        vec![
            (
                TicketStatus::Closed,
                "body of m1".into(),
                bodies(&["old", "m1"])
            ),
            (
                TicketStatus::Pending,
                "body of m3".into(),
                bodies(&["m2", "m3"])
            ),
            (TicketStatus::Pending, "body of m4".into(), bodies(&["m4"])),
        ]
    );
    // One message.created event and delivery per message stored.
    assert_eq!(
        (
            db.count("messages"),
            db.count("events"),
            db.count("deliveries")
        ),
        (5, 5, 5)
    );

    // Two jobs storing one message id: the first keeps it, the second fails alone.
    let same_id = |channel_id: &'static str| -> (Option<store::Lookups>, LookingFn) {
        let mut message = first.clone();
        message.id = "same-id".into();
        message.message_id = Some(channel_id.into());
        let f: LookingFn = Box::new(move |tx| {
            tx.insert_message(1, &message)
                .map(|()| "stored".to_string())
                .map_err(|e| e.to_string())
        });
        (None, f)
    };
    let answers = in_one_commit(
        &store,
        vec![
            inbound_job("5511900000003", "m5"),
            same_id("h1"),
            same_id("h2"),
            inbound_job("5511900000001", "m6"),
        ],
    )
    .await;
    assert!(answers[0].is_ok(), "{answers:?}");
    assert_eq!(answers[1].as_deref(), Ok("stored"));
    assert!(answers[2].is_err(), "{answers:?}");
    assert_eq!(parts(&answers[3])[1], m4[1], "{answers:?}");
    let stored = store::read(&store, |tx| {
        Ok::<_, StoreError>(tx.message(1, "same-id")?.and_then(|m| m.message_id))
    })
    .await
    .unwrap();
    assert_eq!(stored.as_deref(), Some("h1"));
    assert_eq!(
        (
            db.count("messages"),
            db.count("events"),
            db.count("deliveries")
        ),
        (8, 7, 7)
    );
}

async fn a_finish_can_lease_its_tickets_next_delivery(db: backend::TestDb) {
    let store = db.open();
    let (hooks, claimed) = run(&store, |tx| {
        let hooks = setup(tx, &[Ordering::Ticket, Ordering::Ticket])?;
        for (ticket, at) in [(1, 10), (1, 11), (1, 12), (2, 10), (2, 11)] {
            event(tx, ticket, at)?;
        }
        Ok((hooks, claim_all(tx, 100, 1_000)?))
    })
    .await;
    let (a, b) = (hooks[0], hooks[1]);
    let first = |hook: i64, ticket: i64| -> Claimed {
        claimed
            .iter()
            .find(|c| c.target.webhook_id == hook && c.ordering_key == Some(ticket))
            .cloned()
            .expect("claimed")
    };
    assert_eq!(claimed.len(), 4, "one per endpoint and ticket: {claimed:?}");
    let records = vec![
        record(&first(a, 1), 200, NextStep::Delivered),
        record(&first(a, 2), 200, NextStep::RetryAt(500)),
        AttemptRecord {
            status_code: Some(410),
            disable_webhook: true,
            ..record(&first(b, 1), 200, NextStep::Dead)
        },
        record(&first(b, 2), 200, NextStep::Delivered),
    ];
    let lease = NextLease {
        now: 200,
        until: 5_000,
    };
    let recorded = run(&store, move |tx| tx.record_attempts(&records, Some(lease))).await;
    let unblocked: Vec<bool> = recorded.iter().map(|r| r.unblocked).collect();
    assert_eq!(unblocked, [true, false, true, true]);
    let disabled: Vec<bool> = recorded.iter().map(|r| r.disabled.is_some()).collect();
    assert_eq!(disabled, [false, false, true, false]);
    // Only the enabled endpoint's next delivery is leased; the disabled one's only stops
    // waiting.
    let leased: Vec<bool> = recorded.iter().map(|r| r.next.is_some()).collect();
    assert_eq!(leased, [true, false, false, false]);
    let next = recorded[0].next.clone().expect("leased");
    assert_eq!(
        (next.target.webhook_id, next.ordering_key, next.lease_until),
        (a, Some(1), 5_000)
    );
    assert!(
        next.payload.contains("\"ticket\":1,\"at\":11"),
        "{}",
        next.payload
    );

    let again = next.clone();
    let (claimable, recorded) = run(&store, move |tx| {
        // Leased: no claim takes it; ticket 2 waits for its retry, the other endpoint is off.
        let claimable = claim_all(tx, 300, 6_000)?.len();
        let lease = NextLease {
            now: 400,
            until: 5_000,
        };
        let recorded =
            tx.record_attempts(&[record(&again, 400, NextStep::Delivered)], Some(lease))?;
        Ok((claimable, recorded))
    })
    .await;
    assert_eq!(claimable, 0);
    assert!(recorded[0].applied, "recorded under the lease it was given");
    let third = recorded[0]
        .next
        .clone()
        .expect("the ticket's third, leased");
    assert!(third.payload.contains("\"at\":12"), "{}", third.payload);
    assert_ne!(third.seq, next.seq);

    // A lease given so is a lease like a claim's: once it runs out, a claim takes it.
    let after = run(&store, |tx| claim_all(tx, 5_001, 9_000)).await;
    let mut seqs: Vec<i64> = after.iter().map(|c| c.seq).collect();
    seqs.sort_unstable();
    let mut expected = vec![third.seq, first(a, 2).seq];
    expected.sort_unstable();
    assert_eq!(seqs, expected);
}

/// Hand-offs of one group commit (PostgreSQL holds their inserts and writes them together)
/// come out as one at a time: a ticket's first delivery is leased and handed off, its second
/// waits behind it and is not, whether or not a statement in between wrote the first out.
async fn deliveries_handed_off_in_a_shared_commit_keep_their_tickets_order(db: backend::TestDb) {
    let store = db.open();
    run(&store, |tx| setup(tx, &[Ordering::Ticket])).await;
    let lists: Vec<store::HandedOff> = (0..5).map(|_| store::HandedOff::default()).collect();
    let handing_off = |number: &str, channel_id: &str, to: &store::HandedOff| {
        let (lookups, mut f) = inbound_job(number, channel_id);
        let to = Arc::clone(to);
        let f: LookingFn = Box::new(move |tx| {
            *tx.handoffs() = Some(store::Handoffs {
                lease: 7,
                lease_until: 1_000,
                claimed: Arc::clone(&to),
                busy: Vec::new(),
            });
            f(tx)
        });
        (lookups, f)
    };
    // A claim names the deliveries: what is held is written before it.
    let claim: LookingFn = Box::new(|tx| {
        claim_all(tx, 60, 2_000)
            .map(|c| c.len().to_string())
            .map_err(|e| e.to_string())
    });
    let answers = in_one_commit(
        &store,
        vec![
            handing_off("5511900000001", "a1", &lists[0]),
            handing_off("5511900000001", "a2", &lists[1]),
            handing_off("5511900000002", "b1", &lists[2]),
            (None, claim),
            handing_off("5511900000002", "b2", &lists[4]),
        ],
    )
    .await;
    assert!(answers.iter().all(Result::is_ok), "{answers:?}");
    assert_eq!(
        answers[3].as_deref(),
        Ok("0"),
        "both first ones leased, both second ones wait"
    );
    let handed: Vec<Vec<Claimed>> = lists.iter().map(|l| l.lock().unwrap().clone()).collect();
    let counts: Vec<usize> = handed.iter().map(Vec::len).collect();
    assert_eq!(counts, [1, 0, 1, 0, 0]);
    let (a1, b1) = (handed[0][0].clone(), handed[2][0].clone());
    assert!(a1.payload.contains("body of a1"), "{}", a1.payload);
    assert!(b1.payload.contains("body of b1"), "{}", b1.payload);
    assert!((a1.lease, a1.lease_until, b1.lease) == (7, 1_000, 7));
    assert_ne!(a1.seq, b1.seq);

    // Handed off under the lease as written: its record applies, and frees the ticket's next.
    let (applied, next) = run(&store, move |tx| {
        let applied = tx
            .record_attempt(&record(&a1, 100, NextStep::Delivered))?
            .applied;
        Ok((applied, claim_all(tx, 200, 3_000)?))
    })
    .await;
    assert!(applied);
    assert_eq!(next.len(), 1, "{next:?}");
    assert!(
        next[0].payload.contains("body of a2"),
        "{}",
        next[0].payload
    );
}
