//! The transaction every PostgreSQL repository operation runs in: a connection (a writer's,
//! inside its group commit, or a reader's, inside a read-only snapshot) and the secret box.
//! Each subject's SQL is in its own file. Every statement goes through this file's methods,
//! which prepare it once per connection and note what the job did: whether it may have
//! changed a row (so a failing job's writes are rolled back) and its first database error
//! (after which PostgreSQL refuses every statement until the transaction ends).

use std::collections::HashMap;

use postgres::types::ToSql;
use postgres::{Client, Row, Statement};

use crate::secrets::SecretBox;
use crate::store::dashboard::Counts;
use crate::store::{Handoffs, StoreError, StoreResult, Topic, Topics};

/// Parameters of a statement.
pub(super) type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// A connection and the statements prepared on it.
pub struct PgConn {
    pub(super) client: Client,
    statements: HashMap<String, Statement>,
    /// This connection's own rows of the attempt counters: one transaction at a time writes
    /// them, so no two wait on each other for a counter.
    pub(super) shard: i64,
}

impl PgConn {
    pub(super) fn new(client: Client) -> Self {
        PgConn {
            client,
            statements: HashMap::new(),
            shard: rand::random(),
        }
    }

    /// `sql`, prepared once per connection.
    pub(super) fn statement(&mut self, sql: &str) -> Result<Statement, postgres::Error> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql)?;
        self.statements.insert(sql.to_string(), statement.clone());
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

    fn prepared(&mut self, sql: &str) -> StoreResult<Statement> {
        self.conn.statement(sql).map_err(|e| self.fail(e))
    }

    fn fail(&mut self, e: postgres::Error) -> StoreError {
        let e = StoreError::from(e);
        self.failed.get_or_insert_with(|| e.clone());
        e
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
        self.wrote = true;
        let statement = self.prepared(sql)?;
        self.conn
            .client
            .execute(&statement, params)
            .map_err(|e| self.fail(e))
    }

    /// The rows a statement that may change rows returns (`… RETURNING`).
    pub(super) fn write_query(&mut self, sql: &str, params: Params<'_>) -> StoreResult<Vec<Row>> {
        self.wrote = true;
        self.query(sql, params)
    }

    /// The row, if any, of a statement that may change rows (`… RETURNING`).
    pub(super) fn write_opt(&mut self, sql: &str, params: Params<'_>) -> StoreResult<Option<Row>> {
        Ok(self.write_query(sql, params)?.into_iter().next())
    }
}
