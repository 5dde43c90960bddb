//! Companies and their API tokens, connections, queues and agents, in SQLite.

use rusqlite::{OptionalExtension, params};

use super::rows::*;
use super::tx::SqliteTx;
use crate::domain::{Channel, CloudConfig, Connection as Conn, Queue, User};
use crate::store::{CompanyTx, StoreError, StoreResult};

impl CompanyTx for SqliteTx<'_> {
    fn insert_company(&mut self, name: &str, now: i64) -> StoreResult<i64> {
        self.conn.execute(
            "INSERT INTO companies (name, created_at) VALUES (?1, ?2)",
            params![name, now],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    fn company_exists(&mut self, id: i64) -> StoreResult<bool> {
        Ok(self.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM companies WHERE id = ?1)",
            [id],
            |r| r.get(0),
        )?)
    }

    fn company_count(&mut self) -> StoreResult<i64> {
        Ok(self
            .conn
            .query_row("SELECT count(*) FROM companies", [], |r| r.get(0))?)
    }

    fn insert_token(
        &mut self,
        company_id: i64,
        prefix: &str,
        hash: &str,
        now: i64,
    ) -> StoreResult<()> {
        self.conn.execute(
            "INSERT INTO api_tokens (company_id, prefix, hash, created_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (hash) DO NOTHING",
            params![company_id, prefix, hash, now],
        )?;
        Ok(())
    }

    fn token_company(&mut self, hash: &str) -> StoreResult<Option<i64>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT company_id FROM api_tokens WHERE hash = ?1 AND revoked_at IS NULL",
        )?;
        Ok(stmt.query_row([hash], |r| r.get(0)).optional()?)
    }

    fn revoke_tokens(&mut self, prefix: &str, now: i64) -> StoreResult<usize> {
        Ok(self.conn.execute(
            "UPDATE api_tokens SET revoked_at = ?2
             WHERE revoked_at IS NULL AND substr(prefix, 1, length(?1)) = ?1",
            params![prefix, now],
        )?)
    }

    fn insert_connection(
        &mut self,
        company_id: i64,
        name: &str,
        channel: Channel,
        cloud: Option<&CloudConfig>,
        now: i64,
    ) -> StoreResult<Conn> {
        let sealed = cloud.map(|c| crate::store::sealed::seal_secrets(self.secrets, c));
        self.conn.execute(
            "INSERT INTO connections (company_id, name, channel, phone_number_id, graph_base_url,
                graph_version, sealed_secrets, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                company_id,
                name,
                channel.as_str(),
                cloud.map(|c| &c.phone_number_id),
                cloud.and_then(|c| c.graph_base_url.as_ref()),
                cloud.and_then(|c| c.graph_version.as_ref()),
                sealed,
                now
            ],
        )?;
        let id = self.conn.last_insert_rowid();
        self.connection(company_id, id)?
            .ok_or_else(|| StoreError::Database(format!("connection {id} vanished")))
    }

    fn connection(&mut self, company_id: i64, id: i64) -> StoreResult<Option<Conn>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {CONNECTION_COLS} FROM connections WHERE company_id = ?1 AND id = ?2"
        ))?;
        Ok(stmt
            .query_row([company_id, id], connection_row)
            .optional()?)
    }

    fn connections(&mut self, company_id: i64) -> StoreResult<Vec<Conn>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {CONNECTION_COLS} FROM connections WHERE company_id = ?1 ORDER BY id"
        ))?;
        let rows = stmt.query_map([company_id], connection_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn insert_queue(&mut self, company_id: i64, name: &str, now: i64) -> StoreResult<Queue> {
        self.conn.execute(
            "INSERT INTO queues (company_id, name, created_at) VALUES (?1, ?2, ?3)",
            params![company_id, name, now],
        )?;
        Ok(Queue {
            id: self.conn.last_insert_rowid(),
            name: name.to_string(),
            created_at: now,
        })
    }

    fn queue(&mut self, company_id: i64, id: i64) -> StoreResult<Option<Queue>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, name, created_at FROM queues WHERE company_id = ?1 AND id = ?2",
        )?;
        Ok(stmt
            .query_row([company_id, id], |r| {
                Ok(Queue {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    created_at: r.get(2)?,
                })
            })
            .optional()?)
    }

    fn queues(&mut self, company_id: i64) -> StoreResult<Vec<Queue>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, name, created_at FROM queues WHERE company_id = ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map([company_id], |r| {
            Ok(Queue {
                id: r.get(0)?,
                name: r.get(1)?,
                created_at: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn insert_user(
        &mut self,
        company_id: i64,
        name: &str,
        email: &str,
        now: i64,
    ) -> StoreResult<User> {
        self.conn.execute(
            "INSERT INTO users (company_id, name, email, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![company_id, name, email, now],
        )?;
        Ok(User {
            id: self.conn.last_insert_rowid(),
            name: name.to_string(),
            email: email.to_string(),
            created_at: now,
        })
    }

    fn user(&mut self, company_id: i64, id: i64) -> StoreResult<Option<User>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, name, email, created_at FROM users WHERE company_id = ?1 AND id = ?2",
        )?;
        Ok(stmt
            .query_row([company_id, id], |r| {
                Ok(User {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    email: r.get(2)?,
                    created_at: r.get(3)?,
                })
            })
            .optional()?)
    }

    fn users(&mut self, company_id: i64) -> StoreResult<Vec<User>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, name, email, created_at FROM users WHERE company_id = ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map([company_id], |r| {
            Ok(User {
                id: r.get(0)?,
                name: r.get(1)?,
                email: r.get(2)?,
                created_at: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
