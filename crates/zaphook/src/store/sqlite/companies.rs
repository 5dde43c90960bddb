//! Companies and their API tokens, connections (with their external API configs), queues and
//! agents, in SQLite.

use rusqlite::{OptionalExtension, params};

use super::rows::*;
use super::tx::SqliteTx;
use crate::domain::{ApiConfig, Channel, CloudConfig, Connection as Conn, Queue, User};
use crate::store::{CompanyTx, StoreError, StoreResult, UiSession};

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

    fn insert_ui_session(&mut self, id_hash: &str, s: &UiSession) -> StoreResult<()> {
        self.conn.execute(
            "INSERT INTO ui_sessions (id_hash, company_id, token_hash, csrf, created_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![id_hash, s.company_id, s.token_hash, s.csrf, s.created_at, s.expires_at],
        )?;
        Ok(())
    }

    fn ui_session(&mut self, id_hash: &str, now: i64) -> StoreResult<Option<UiSession>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT s.company_id, s.token_hash, s.csrf, s.created_at, s.expires_at
             FROM ui_sessions s JOIN api_tokens t ON t.hash = s.token_hash
             WHERE s.id_hash = ?1 AND s.expires_at > ?2 AND t.revoked_at IS NULL",
        )?;
        Ok(stmt
            .query_row(params![id_hash, now], |r| {
                Ok(UiSession {
                    company_id: r.get(0)?,
                    token_hash: r.get(1)?,
                    csrf: r.get(2)?,
                    created_at: r.get(3)?,
                    expires_at: r.get(4)?,
                })
            })
            .optional()?)
    }

    fn delete_ui_session(&mut self, id_hash: &str) -> StoreResult<bool> {
        Ok(self
            .conn
            .execute("DELETE FROM ui_sessions WHERE id_hash = ?1", [id_hash])?
            > 0)
    }

    fn prune_ui_sessions(&mut self, now: i64) -> StoreResult<usize> {
        Ok(self
            .conn
            .execute("DELETE FROM ui_sessions WHERE expires_at <= ?1", [now])?)
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

    fn insert_api_config(&mut self, config: &ApiConfig, token_hash: &str) -> StoreResult<()> {
        self.conn.execute(
            "INSERT INTO api_configs (id, company_id, connection_id, name, token_prefix, token_hash,
                created_at, auth_token)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                config.id,
                config.company_id,
                config.connection_id,
                config.name,
                config.token_prefix,
                token_hash,
                config.created_at,
                config.auth_token
            ],
        )?;
        Ok(())
    }

    fn api_config(&mut self, company_id: i64, id: &str) -> StoreResult<Option<ApiConfig>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {API_CONFIG_COLUMNS} FROM api_configs
             WHERE company_id = ?1 AND id = ?2 AND revoked_at IS NULL"
        ))?;
        Ok(stmt
            .query_row(params![company_id, id], api_config_row)
            .optional()?)
    }

    fn update_api_config(
        &mut self,
        company_id: i64,
        id: &str,
        name: &str,
        auth_token: Option<&str>,
    ) -> StoreResult<bool> {
        Ok(self.conn.execute(
            "UPDATE api_configs SET name = ?3, auth_token = ?4
             WHERE company_id = ?1 AND id = ?2 AND revoked_at IS NULL",
            params![company_id, id, name, auth_token],
        )? > 0)
    }

    fn api_configs(&mut self, company_id: i64, connection_id: i64) -> StoreResult<Vec<ApiConfig>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {API_CONFIG_COLUMNS} FROM api_configs
             WHERE company_id = ?1 AND connection_id = ?2 AND revoked_at IS NULL
             ORDER BY created_at, id"
        ))?;
        let rows = stmt.query_map(params![company_id, connection_id], api_config_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn api_config_by_token(&mut self, token_hash: &str) -> StoreResult<Option<ApiConfig>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {API_CONFIG_COLUMNS} FROM api_configs WHERE token_hash = ?1 AND revoked_at IS NULL"
        ))?;
        Ok(stmt.query_row([token_hash], api_config_row).optional()?)
    }

    fn revoke_api_config(&mut self, company_id: i64, id: &str, now: i64) -> StoreResult<bool> {
        let revoked = self.conn.execute(
            "UPDATE api_configs SET revoked_at = ?3
             WHERE company_id = ?1 AND id = ?2 AND revoked_at IS NULL",
            params![company_id, id, now],
        )?;
        Ok(revoked > 0)
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

const API_CONFIG_COLUMNS: &str =
    "id, company_id, connection_id, name, token_prefix, created_at, auth_token";

fn api_config_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ApiConfig> {
    Ok(ApiConfig {
        id: r.get(0)?,
        company_id: r.get(1)?,
        connection_id: r.get(2)?,
        name: r.get(3)?,
        token_prefix: r.get(4)?,
        created_at: r.get(5)?,
        auth_token: r.get(6)?,
    })
}
