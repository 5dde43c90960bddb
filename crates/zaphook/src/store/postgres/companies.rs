//! Companies and their API tokens, connections (with their external API configs), queues and
//! agents, in PostgreSQL.

use postgres::Row;

use super::rows::*;
use super::tx::PgTx;
use crate::domain::{ApiConfig, Channel, CloudConfig, Connection as Conn, Queue, User};
use crate::store::{CompanyTx, StoreError, StoreResult, UiSession};

fn queue_row(row: &Row) -> StoreResult<Queue> {
    Ok(Queue {
        id: col(row, 0)?,
        name: col(row, 1)?,
        created_at: col(row, 2)?,
    })
}

const API_CONFIG_COLUMNS: &str =
    "id, company_id, connection_id, name, token_prefix, created_at, auth_token";

fn api_config_row(row: &Row) -> StoreResult<ApiConfig> {
    Ok(ApiConfig {
        id: col(row, 0)?,
        company_id: col(row, 1)?,
        connection_id: col(row, 2)?,
        name: col(row, 3)?,
        token_prefix: col(row, 4)?,
        created_at: col(row, 5)?,
        auth_token: col(row, 6)?,
    })
}

fn user_row(row: &Row) -> StoreResult<User> {
    Ok(User {
        id: col(row, 0)?,
        name: col(row, 1)?,
        email: col(row, 2)?,
        created_at: col(row, 3)?,
    })
}

impl CompanyTx for PgTx<'_> {
    fn insert_company(&mut self, name: &str, now: i64) -> StoreResult<i64> {
        let row = self.write_opt(
            "INSERT INTO companies (name, created_at) VALUES ($1, $2) RETURNING id",
            &[&name, &now],
        )?;
        match row {
            Some(row) => col(&row, 0),
            None => Err(StoreError::Database("no id from the company insert".into())),
        }
    }

    fn company_exists(&mut self, id: i64) -> StoreResult<bool> {
        let row = self.query_one(
            "SELECT EXISTS (SELECT 1 FROM companies WHERE id = $1)",
            &[&id],
        )?;
        col(&row, 0)
    }

    fn company_count(&mut self) -> StoreResult<i64> {
        let row = self.query_one("SELECT count(*) FROM companies", &[])?;
        col(&row, 0)
    }

    fn insert_token(
        &mut self,
        company_id: i64,
        prefix: &str,
        hash: &str,
        now: i64,
    ) -> StoreResult<()> {
        self.execute(
            "INSERT INTO api_tokens (company_id, prefix, hash, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (hash) DO NOTHING",
            &[&company_id, &prefix, &hash, &now],
        )?;
        Ok(())
    }

    fn token_company(&mut self, hash: &str) -> StoreResult<Option<i64>> {
        self.query_opt(
            "SELECT company_id FROM api_tokens WHERE hash = $1 AND revoked_at IS NULL",
            &[&hash],
        )?
        .map(|row| col(&row, 0))
        .transpose()
    }

    fn insert_ui_session(&mut self, id_hash: &str, s: &UiSession) -> StoreResult<()> {
        self.execute(
            "INSERT INTO ui_sessions (id_hash, company_id, token_hash, csrf, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[&id_hash, &s.company_id, &s.token_hash, &s.csrf, &s.created_at, &s.expires_at],
        )?;
        Ok(())
    }

    fn ui_session(&mut self, id_hash: &str, now: i64) -> StoreResult<Option<UiSession>> {
        self.query_opt(
            "SELECT s.company_id, s.token_hash, s.csrf, s.created_at, s.expires_at
             FROM ui_sessions s JOIN api_tokens t ON t.hash = s.token_hash
             WHERE s.id_hash = $1 AND s.expires_at > $2 AND t.revoked_at IS NULL",
            &[&id_hash, &now],
        )?
        .map(|r| {
            Ok(UiSession {
                company_id: col(&r, 0)?,
                token_hash: col(&r, 1)?,
                csrf: col(&r, 2)?,
                created_at: col(&r, 3)?,
                expires_at: col(&r, 4)?,
            })
        })
        .transpose()
    }

    fn delete_ui_session(&mut self, id_hash: &str) -> StoreResult<bool> {
        Ok(self.execute("DELETE FROM ui_sessions WHERE id_hash = $1", &[&id_hash])? > 0)
    }

    fn prune_ui_sessions(&mut self, now: i64) -> StoreResult<usize> {
        let pruned = self.execute("DELETE FROM ui_sessions WHERE expires_at <= $1", &[&now])?;
        Ok(usize::try_from(pruned).unwrap_or(usize::MAX))
    }

    fn revoke_tokens(&mut self, prefix: &str, now: i64) -> StoreResult<usize> {
        let revoked = self.execute(
            "UPDATE api_tokens SET revoked_at = $2
             WHERE revoked_at IS NULL AND starts_with(prefix, $1)",
            &[&prefix, &now],
        )?;
        Ok(usize::try_from(revoked).unwrap_or(usize::MAX))
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
        let row = self.write_opt(
            &format!(
                "INSERT INTO connections (company_id, name, channel, phone_number_id,
                    graph_base_url, graph_version, sealed_secrets, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 RETURNING {CONNECTION_COLS}"
            ),
            &[
                &company_id,
                &name,
                &channel.as_str(),
                &cloud.map(|c| &c.phone_number_id),
                &cloud.and_then(|c| c.graph_base_url.as_ref()),
                &cloud.and_then(|c| c.graph_version.as_ref()),
                &sealed,
                &now,
            ],
        )?;
        match row {
            Some(row) => connection_row(&row),
            None => Err(StoreError::Database(
                "the inserted connection vanished".into(),
            )),
        }
    }

    fn connection(&mut self, company_id: i64, id: i64) -> StoreResult<Option<Conn>> {
        if let Some(kept) = self.kept().connections.get(&(company_id, id)) {
            return Ok(kept.clone());
        }
        let connection = self
            .query_opt(
                &format!(
                    "SELECT {CONNECTION_COLS} FROM connections WHERE company_id = $1 AND id = $2"
                ),
                &[&company_id, &id],
            )?
            .map(|row| connection_row(&row))
            .transpose()?;
        self.kept()
            .connections
            .insert((company_id, id), connection.clone());
        Ok(connection)
    }

    fn connections(&mut self, company_id: i64) -> StoreResult<Vec<Conn>> {
        self.query(
            &format!("SELECT {CONNECTION_COLS} FROM connections WHERE company_id = $1 ORDER BY id"),
            &[&company_id],
        )?
        .iter()
        .map(connection_row)
        .collect()
    }

    fn insert_api_config(&mut self, config: &ApiConfig, token_hash: &str) -> StoreResult<()> {
        self.execute(
            "INSERT INTO api_configs (id, company_id, connection_id, name, token_prefix, token_hash,
                created_at, auth_token)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &[
                &config.id,
                &config.company_id,
                &config.connection_id,
                &config.name,
                &config.token_prefix,
                &token_hash,
                &config.created_at,
                &config.auth_token,
            ],
        )?;
        Ok(())
    }

    fn api_config(&mut self, company_id: i64, id: &str) -> StoreResult<Option<ApiConfig>> {
        self.query_opt(
            &format!(
                "SELECT {API_CONFIG_COLUMNS} FROM api_configs
                 WHERE company_id = $1 AND id = $2 AND revoked_at IS NULL"
            ),
            &[&company_id, &id],
        )?
        .map(|row| api_config_row(&row))
        .transpose()
    }

    fn update_api_config(
        &mut self,
        company_id: i64,
        id: &str,
        name: &str,
        auth_token: Option<&str>,
    ) -> StoreResult<bool> {
        Ok(self.execute(
            "UPDATE api_configs SET name = $3, auth_token = $4
             WHERE company_id = $1 AND id = $2 AND revoked_at IS NULL",
            &[&company_id, &id, &name, &auth_token],
        )? > 0)
    }

    fn api_configs(&mut self, company_id: i64, connection_id: i64) -> StoreResult<Vec<ApiConfig>> {
        self.query(
            &format!(
                "SELECT {API_CONFIG_COLUMNS} FROM api_configs
                 WHERE company_id = $1 AND connection_id = $2 AND revoked_at IS NULL
                 ORDER BY created_at, id"
            ),
            &[&company_id, &connection_id],
        )?
        .iter()
        .map(api_config_row)
        .collect()
    }

    fn api_config_by_token(&mut self, token_hash: &str) -> StoreResult<Option<ApiConfig>> {
        self.query_opt(
            &format!(
                "SELECT {API_CONFIG_COLUMNS} FROM api_configs WHERE token_hash = $1 AND revoked_at IS NULL"
            ),
            &[&token_hash],
        )?
        .map(|row| api_config_row(&row))
        .transpose()
    }

    fn revoke_api_config(&mut self, company_id: i64, id: &str, now: i64) -> StoreResult<bool> {
        let revoked = self.execute(
            "UPDATE api_configs SET revoked_at = $3
             WHERE company_id = $1 AND id = $2 AND revoked_at IS NULL",
            &[&company_id, &id, &now],
        )?;
        Ok(revoked > 0)
    }

    fn insert_queue(&mut self, company_id: i64, name: &str, now: i64) -> StoreResult<Queue> {
        let row = self.write_opt(
            "INSERT INTO queues (company_id, name, created_at) VALUES ($1, $2, $3)
             RETURNING id, name, created_at",
            &[&company_id, &name, &now],
        )?;
        match row {
            Some(row) => queue_row(&row),
            None => Err(StoreError::Database("no row from the queue insert".into())),
        }
    }

    fn queue(&mut self, company_id: i64, id: i64) -> StoreResult<Option<Queue>> {
        self.query_opt(
            "SELECT id, name, created_at FROM queues WHERE company_id = $1 AND id = $2",
            &[&company_id, &id],
        )?
        .map(|row| queue_row(&row))
        .transpose()
    }

    fn queues(&mut self, company_id: i64) -> StoreResult<Vec<Queue>> {
        self.query(
            "SELECT id, name, created_at FROM queues WHERE company_id = $1 ORDER BY id",
            &[&company_id],
        )?
        .iter()
        .map(queue_row)
        .collect()
    }

    fn insert_user(
        &mut self,
        company_id: i64,
        name: &str,
        email: &str,
        now: i64,
    ) -> StoreResult<User> {
        let row = self.write_opt(
            "INSERT INTO users (company_id, name, email, created_at) VALUES ($1, $2, $3, $4)
             RETURNING id, name, email, created_at",
            &[&company_id, &name, &email, &now],
        )?;
        match row {
            Some(row) => user_row(&row),
            None => Err(StoreError::Database("no row from the user insert".into())),
        }
    }

    fn user(&mut self, company_id: i64, id: i64) -> StoreResult<Option<User>> {
        self.query_opt(
            "SELECT id, name, email, created_at FROM users WHERE company_id = $1 AND id = $2",
            &[&company_id, &id],
        )?
        .map(|row| user_row(&row))
        .transpose()
    }

    fn users(&mut self, company_id: i64) -> StoreResult<Vec<User>> {
        self.query(
            "SELECT id, name, email, created_at FROM users WHERE company_id = $1 ORDER BY id",
            &[&company_id],
        )?
        .iter()
        .map(user_row)
        .collect()
    }
}
