//! The transaction every PostgreSQL repository operation runs in: a connection (a writer's,
//! inside its group commit, or a reader's, inside a read-only snapshot) and the secret box.
//! Each subject's SQL is in its own file. Every statement goes through this file's methods,
//! which prepare it once per connection and note what the job did: whether it may have
//! changed a row (so a failing job's writes are rolled back) and its first database error
//! (after which PostgreSQL refuses every statement until the transaction ends).
//!
//! A transaction keeps what it read of connections and of the endpoints an event goes to
//! ([`Kept`]): the jobs of one group commit mostly ask the same, and each answer costs a round
//! trip. What is kept is forgotten when the transaction writes to those tables and when it
//! ends. Reading them once per transaction instead of once per job sees no less: every job of
//! a batch was queued before its transaction began.

use std::collections::HashMap;

use postgres::types::{ToSql, Type};
use postgres::{Client, Row, Statement};

use super::batch::{Ahead, Held};
use crate::domain::{Connection, EventType, TicketStatus};
use crate::secrets::SecretBox;
use crate::store::dashboard::Counts;
use crate::store::{Handoffs, StoreError, StoreResult, Subscriber, Topic, Topics};

/// Parameters of a statement.
pub(super) type Params<'a> = &'a [&'a (dyn ToSql + Sync)];
/// Parameters of a statement planned for them (see [`PgConn::query_planned`]), with their types.
pub(super) type TypedParams<'a> = &'a [(&'a (dyn ToSql + Sync), Type)];

/// A connection and the statements prepared on it.
pub struct PgConn {
    pub(super) client: Client,
    statements: HashMap<String, Prepared>,
    /// This connection's own rows of the attempt counters: one transaction at a time writes
    /// them, so no two wait on each other for a counter.
    pub(super) shard: i64,
    pub(super) kept: Kept,
    /// Lookups read ahead for the batch, and the writes held (see `batch.rs`).
    pub(super) ahead: Ahead,
    pub(super) held: Held,
    /// This transaction holds writes.
    pub(super) hold: bool,
    /// Why writing what was held failed, for the writer: whichever job's statement met the
    /// failure, the batch must run again with every write at once.
    pub(super) held_failed: Option<StoreError>,
    /// What the held writes made ready, announced with the commit.
    pub(super) held_topics: Topics,
}

/// A statement prepared on a connection, and when to prepare it again.
struct Prepared {
    statement: Statement,
    uses: u64,
    replan_at: u64,
}

/// What the subscribers of an event depend on, besides the time (see [`Kept`]).
pub(super) type SubscribersKey = (
    i64,
    EventType,
    Option<i64>,
    Option<i64>,
    bool,
    Option<i64>,
    Option<bool>,
    Option<TicketStatus>,
    bool,
    Option<String>,
);

/// Reads kept for the rest of the transaction.
#[derive(Default)]
pub(super) struct Kept {
    /// By company and id.
    pub(super) connections: HashMap<(i64, i64), Option<Connection>>,
    /// Each subscriber with the end of its previous secret's grace, which depends on the time.
    pub(super) subscribers: HashMap<SubscribersKey, Vec<(Subscriber, Option<i64>)>>,
}

impl Kept {
    /// Tables whose rows are kept: a statement that changes them makes it all forgotten.
    fn is_changed_by(sql: &str) -> bool {
        sql.contains("connections") || sql.contains("webhooks")
    }

    fn forget(&mut self) {
        self.connections.clear();
        self.subscribers.clear();
    }
}

impl PgConn {
    pub(super) fn new(client: Client) -> Self {
        PgConn {
            client,
            statements: HashMap::new(),
            shard: rand::random(),
            kept: Kept::default(),
            ahead: Ahead::default(),
            held: Held::default(),
            hold: false,
            held_failed: None,
            held_topics: Topics::default(),
        }
    }

    /// Begins a transaction with `sql`, keeping nothing of the last one's reads and writes,
    /// and holding none.
    pub(super) fn begin(&mut self, sql: &str) -> Result<(), postgres::Error> {
        self.kept.forget();
        self.ahead = Ahead::default();
        self.held = Held::default();
        self.hold = false;
        self.held_failed = None;
        self.held_topics = Topics::default();
        self.client.batch_execute(sql)
    }

    /// Rows of `sql` planned for these values, each time it runs: an unnamed statement, in
    /// one round trip like a prepared one. For the statements over a batch's sets, whose best
    /// plan depends on the set's size and on how large the tables are now; a prepared
    /// statement's generic plan may have been made for neither (a scan of a table that was
    /// small then). Planning costs little beside a set's rows.
    pub(super) fn query_planned(
        &mut self,
        sql: &str,
        params: TypedParams<'_>,
    ) -> Result<Vec<Row>, postgres::Error> {
        self.client.query_typed(sql, params)
    }

    /// `sql`, prepared once per connection.
    ///
    /// A statement is prepared again after 100, 200, 400, 800… uses. PostgreSQL keeps a
    /// prepared statement's generic plan, and one made while the tables were small (a scan of
    /// a few pages) would be kept while they grow; uses stand in for growth, so the plan is
    /// made again each time they double. A tenfold step was too slow: a batch statement
    /// of a fresh process reached its 1,000th use only after minutes of seq scans over tens of
    /// thousands of rows. In the steady state a plan is still made again almost never.
    pub(super) fn statement(&mut self, sql: &str) -> Result<Statement, postgres::Error> {
        if let Some(prepared) = self.statements.get_mut(sql) {
            prepared.uses += 1;
            if prepared.uses < prepared.replan_at {
                return Ok(prepared.statement.clone());
            }
            prepared.statement = self.client.prepare(sql)?;
            prepared.replan_at = prepared.replan_at.saturating_mul(2);
            return Ok(prepared.statement.clone());
        }
        let statement = self.client.prepare(sql)?;
        self.statements.insert(
            sql.to_string(),
            Prepared {
                statement: statement.clone(),
                uses: 1,
                replan_at: 100,
            },
        );
        Ok(statement)
    }
}

pub struct PgTx<'c> {
    conn: &'c mut PgConn,
    pub(super) secrets: &'c SecretBox,
    pub(super) handoffs: Option<Handoffs>,
    /// A statement that may change rows ran.
    pub(super) wrote: bool,
    /// The first database error: the transaction is aborted from there on.
    pub(super) failed: Option<StoreError>,
    /// What the job's writes made ready, announced once they commit.
    pub(super) topics: Topics,
    /// A key the job needed was taken by another transaction meanwhile: run it again.
    pub(super) raced: bool,
    /// The attempts the job recorded, counted into the batch's counters if the job is kept.
    pub(super) counts: Counts,
}

impl<'c> PgTx<'c> {
    pub(super) fn new(conn: &'c mut PgConn, secrets: &'c SecretBox) -> Self {
        PgTx {
            conn,
            secrets,
            handoffs: None,
            wrote: false,
            failed: None,
            topics: Topics::default(),
            raced: false,
            counts: Counts::default(),
        }
    }

    /// `e`, noting that the job lost a race for a key (so the store runs it again).
    pub(super) fn lost_race(&mut self, e: StoreError) -> StoreError {
        self.raced = true;
        e
    }

    pub(super) fn announce_if(&mut self, condition: bool, topic: Topic) {
        if condition {
            self.topics.add(topic);
        }
    }

    /// `sql` prepared, after the held writes it needs.
    fn prepared(&mut self, sql: &str) -> StoreResult<Statement> {
        self.write_held_for(sql)?;
        self.conn.statement(sql).map_err(|e| self.fail(e))
    }

    fn fail(&mut self, e: postgres::Error) -> StoreError {
        self.failed_with(StoreError::from(e))
    }

    /// `e`, kept as the job's first database error.
    pub(super) fn failed_with(&mut self, e: StoreError) -> StoreError {
        self.failed.get_or_insert_with(|| e.clone());
        e
    }

    pub(super) fn conn(&mut self) -> &mut PgConn {
        self.conn
    }

    /// Rows of a statement that changes none.
    pub(super) fn query(&mut self, sql: &str, params: Params<'_>) -> StoreResult<Vec<Row>> {
        let statement = self.prepared(sql)?;
        self.conn
            .client
            .query(&statement, params)
            .map_err(|e| self.fail(e))
    }

    /// The row of a statement that changes none and finds one at most.
    pub(super) fn query_opt(&mut self, sql: &str, params: Params<'_>) -> StoreResult<Option<Row>> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    /// The row of a statement that changes none and always finds one (an aggregate).
    pub(super) fn query_one(&mut self, sql: &str, params: Params<'_>) -> StoreResult<Row> {
        self.query_opt(sql, params)?
            .ok_or_else(|| StoreError::Database(format!("no row from {sql}")))
    }

    /// Runs a statement that may change rows; answers how many it changed.
    pub(super) fn execute(&mut self, sql: &str, params: Params<'_>) -> StoreResult<u64> {
        self.note_write(sql);
        let statement = self.prepared(sql)?;
        self.conn
            .client
            .execute(&statement, params)
            .map_err(|e| self.fail(e))
    }

    /// The rows a statement that may change rows returns (`… RETURNING`).
    pub(super) fn write_query(&mut self, sql: &str, params: Params<'_>) -> StoreResult<Vec<Row>> {
        self.note_write(sql);
        self.query(sql, params)
    }

    /// [`write_query`](Self::write_query) planned for its values (see
    /// [`PgConn::query_planned`]).
    pub(super) fn write_query_planned(
        &mut self,
        sql: &str,
        params: TypedParams<'_>,
    ) -> StoreResult<Vec<Row>> {
        self.note_write(sql);
        self.write_held_for(sql)?;
        self.conn
            .query_planned(sql, params)
            .map_err(|e| self.fail(e))
    }

    fn note_write(&mut self, sql: &str) {
        self.wrote = true;
        if Kept::is_changed_by(sql) {
            self.conn.kept.forget();
        }
        self.conn.ahead.forget_changed_by(sql);
    }

    /// The reads this transaction keeps.
    pub(super) fn kept(&mut self) -> &mut Kept {
        &mut self.conn.kept
    }

    /// The row, if any, of a statement that may change rows (`… RETURNING`).
    pub(super) fn write_opt(&mut self, sql: &str, params: Params<'_>) -> StoreResult<Option<Row>> {
        Ok(self.write_query(sql, params)?.into_iter().next())
    }
}
