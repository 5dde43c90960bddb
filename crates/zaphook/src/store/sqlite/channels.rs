//! The SQL of the channels' operations for SQLite: cloud settings with sealed secrets, the
//! callback inbox, send jobs, media jobs and stored media.

use rusqlite::{Connection, OptionalExtension, params};

use super::rows::*;
use super::tx::SqliteTx;
use crate::domain::{CloudConfig, Connection as Conn};
use crate::secrets::SecretBox;
use crate::store::sealed::{self, open_secrets, seal_secrets};
use crate::store::{
    ChannelTx, Claim, InboxItem, MediaJob, SendJob, SendKind, StoreError, StoreResult, StoredMedia,
    Topic,
};

/// Seals the plaintext settings that versions before sealing kept, and checks that `secrets`
/// is the key this database was set up with (recording it on a new database).
pub(super) fn prepare_secrets(conn: &Connection, secrets: &SecretBox) -> StoreResult<()> {
    let check: Option<Vec<u8>> = conn
        .query_row("SELECT sealed FROM secret_check WHERE id = 1", [], |r| {
            r.get(0)
        })
        .optional()?;
    match check {
        Some(sealed) => {
            sealed::check(secrets, &sealed)?;
        }
        None => {
            conn.execute(
                "INSERT INTO secret_check (id, sealed) VALUES (1, ?1)",
                [sealed::new_check(secrets)],
            )?;
        }
    }
    let legacy: Vec<(i64, String)> = conn
        .prepare("SELECT id, cloud_config FROM connections WHERE cloud_config IS NOT NULL")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    for (id, json) in legacy {
        let cloud: CloudConfig = serde_json::from_str(&json)
            .map_err(|e| StoreError::Corrupt(format!("connection {id}: cloud settings: {e}")))?;
        conn.execute(
            "UPDATE connections SET sealed_secrets = ?2, cloud_config = NULL WHERE id = ?1",
            params![id, seal_secrets(secrets, &cloud)],
        )?;
        tracing::info!(connection = id, "sealed the secrets of a cloud connection");
    }
    Ok(())
}

impl SqliteTx<'_> {
    /// Leases up to `claim.limit` due rows of a job table, none of a connection in `busy`;
    /// answers their keys.
    fn lease_due(
        &self,
        table: &str,
        key: &str,
        claim: Claim,
        busy: &[i64],
    ) -> StoreResult<Vec<String>> {
        let sql = format!(
            "UPDATE {table} SET lease = ?3, next_attempt_at = ?2, attempts = attempts + 1
             WHERE {key} IN (SELECT {key} FROM {table} WHERE next_attempt_at <= ?1
                               AND connection_id NOT IN (SELECT value FROM json_each(?5))
                             ORDER BY next_attempt_at LIMIT ?4)
             RETURNING CAST({key} AS TEXT)"
        );
        let busy = serde_json::to_string(busy).unwrap_or_else(|_| "[]".into());
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(
            params![claim.now, claim.lease_until, claim.lease, claim.limit, busy],
            |r| r.get(0),
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

impl ChannelTx for SqliteTx<'_> {
    fn cloud_config(&mut self, connection_id: i64) -> StoreResult<Option<(i64, CloudConfig)>> {
        let row = self
            .conn
            .prepare_cached(
                "SELECT company_id, phone_number_id, graph_base_url, graph_version, sealed_secrets
                 FROM connections WHERE id = ?1 AND channel = 'cloud'",
            )?
            .query_row([connection_id], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, Option<String>>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, Option<Vec<u8>>>(4)?,
                ))
            })
            .optional()?;
        let Some((company_id, phone_number_id, graph_base_url, graph_version, sealed)) = row else {
            return Ok(None);
        };
        let sealed = sealed.ok_or_else(|| {
            StoreError::Corrupt(format!("connection {connection_id}: no cloud secrets"))
        })?;
        let secrets = open_secrets(self.secrets, connection_id, &sealed)?;
        Ok(Some((
            company_id,
            CloudConfig {
                phone_number_id: phone_number_id.unwrap_or_default(),
                access_token: secrets.access_token,
                app_secret: secrets.app_secret,
                verify_token: secrets.verify_token,
                graph_base_url,
                graph_version,
            },
        )))
    }

    fn update_connection(
        &mut self,
        company_id: i64,
        id: i64,
        name: &str,
        cloud: Option<&CloudConfig>,
        new_token: bool,
    ) -> StoreResult<bool> {
        let changed = match cloud {
            None => self
                .conn
                .prepare_cached(
                    "UPDATE connections SET name = ?3 WHERE company_id = ?1 AND id = ?2",
                )?
                .execute(params![company_id, id, name])?,
            Some(c) => self
                .conn
                .prepare_cached(
                    "UPDATE connections SET name = ?3, phone_number_id = ?4, graph_base_url = ?5,
                        graph_version = ?6, sealed_secrets = ?7,
                        token_refused_at = CASE WHEN ?8 THEN NULL ELSE token_refused_at END
                     WHERE company_id = ?1 AND id = ?2",
                )?
                .execute(params![
                    company_id,
                    id,
                    name,
                    c.phone_number_id,
                    c.graph_base_url,
                    c.graph_version,
                    seal_secrets(self.secrets, c),
                    new_token
                ])?,
        };
        Ok(changed > 0)
    }

    fn connection_by_phone_number_id(
        &mut self,
        company_id: i64,
        phone_number_id: &str,
    ) -> StoreResult<Option<Conn>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {CONNECTION_COLS} FROM connections
             WHERE company_id = ?1 AND phone_number_id = ?2 AND channel = 'cloud' ORDER BY id LIMIT 1"
        ))?;
        Ok(stmt
            .query_row(params![company_id, phone_number_id], connection_row)
            .optional()?)
    }

    fn record_send_outcome(
        &mut self,
        connection_id: i64,
        now: i64,
        error: Option<&str>,
        token_refused: bool,
    ) -> StoreResult<()> {
        match error {
            None => self
                .conn
                .prepare_cached(
                    "UPDATE connections SET last_send_error = NULL, last_send_error_at = NULL,
                        token_refused_at = NULL
                     WHERE id = ?1 AND (last_send_error IS NOT NULL OR token_refused_at IS NOT NULL)",
                )?
                .execute([connection_id])?,
            Some(error) => self
                .conn
                .prepare_cached(
                    "UPDATE connections SET last_send_error = ?2, last_send_error_at = ?3,
                        token_refused_at = CASE WHEN ?4 THEN ?3 ELSE token_refused_at END
                     WHERE id = ?1",
                )?
                .execute(params![connection_id, error, now, token_refused])?,
        };
        Ok(())
    }

    fn set_token_refused(&mut self, connection_id: i64, at: Option<i64>) -> StoreResult<bool> {
        let changed = match at {
            Some(at) => self
                .conn
                .prepare_cached(
                    "UPDATE connections SET token_refused_at = ?2
                     WHERE id = ?1 AND channel = 'cloud' AND token_refused_at IS NULL",
                )?
                .execute(params![connection_id, at])?,
            None => self
                .conn
                .prepare_cached(
                    "UPDATE connections SET token_refused_at = NULL
                     WHERE id = ?1 AND token_refused_at IS NOT NULL",
                )?
                .execute([connection_id])?,
        };
        Ok(changed > 0)
    }

    fn insert_inbox(
        &mut self,
        company_id: i64,
        connection_id: i64,
        body: &[u8],
        now: i64,
    ) -> StoreResult<i64> {
        self.conn
            .prepare_cached(
                "INSERT INTO cloud_inbox (company_id, connection_id, body, received_at, next_attempt_at)
                 VALUES (?1, ?2, ?3, ?4, ?4)",
            )?
            .execute(params![company_id, connection_id, body, now])?;
        let id = self.conn.last_insert_rowid();
        self.conn
            .prepare_cached("UPDATE connections SET last_callback_at = ?2 WHERE id = ?1")?
            .execute(params![connection_id, now])?;
        self.topics.add(Topic::Inbox);
        Ok(id)
    }

    fn claim_inbox(&mut self, claim: Claim) -> StoreResult<Vec<InboxItem>> {
        let ids = self.lease_due("cloud_inbox", "id", claim, &[])?;
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, company_id, connection_id, body, attempts, received_at FROM cloud_inbox
             WHERE id = ?1",
        )?;
        let mut items = Vec::with_capacity(ids.len());
        for id in ids {
            let id: i64 = id
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("inbox id {id}")))?;
            items.push(stmt.query_row([id], |r| {
                Ok(InboxItem {
                    id: r.get(0)?,
                    company_id: r.get(1)?,
                    connection_id: r.get(2)?,
                    body: r.get(3)?,
                    attempts: r.get(4)?,
                    received_at: r.get(5)?,
                })
            })?);
        }
        items.sort_by_key(|i| i.id);
        Ok(items)
    }

    fn finish_inbox(
        &mut self,
        id: i64,
        lease: i64,
        now: i64,
        error: Option<&str>,
    ) -> StoreResult<bool> {
        let changed = self
            .conn
            .prepare_cached(
                "UPDATE cloud_inbox SET next_attempt_at = NULL, processed_at = ?3, error = ?4
                 WHERE id = ?1 AND lease = ?2 AND next_attempt_at IS NOT NULL",
            )?
            .execute(params![id, lease, now, error])?;
        Ok(changed > 0)
    }

    fn next_inbox_due(&mut self) -> StoreResult<Option<i64>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT min(next_attempt_at) FROM cloud_inbox WHERE next_attempt_at IS NOT NULL",
            )?
            .query_row([], |r| r.get(0))?)
    }

    fn inbox_waiting_before(&mut self, connection_id: i64, id: i64) -> StoreResult<bool> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM cloud_inbox WHERE next_attempt_at IS NOT NULL
                    AND connection_id = ?1 AND id < ?2)",
            )?
            .query_row(params![connection_id, id], |r| r.get(0))?)
    }

    fn prune_inbox(&mut self, before: i64, batch: i64) -> StoreResult<usize> {
        Ok(self
            .conn
            .prepare_cached(
                "DELETE FROM cloud_inbox WHERE id IN (SELECT id FROM cloud_inbox
                    WHERE processed_at IS NOT NULL AND processed_at < ?1 LIMIT ?2)",
            )?
            .execute(params![before, batch])?)
    }

    fn insert_send_job(&mut self, job: &SendJob, due: i64) -> StoreResult<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO send_jobs (id, message_id, company_id, connection_id, kind, request,
                    attempts, next_attempt_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                job.id,
                job.message_id,
                job.company_id,
                job.connection_id,
                job.kind.as_str(),
                job.request,
                job.attempts,
                due
            ])?;
        self.topics.add(Topic::Sends);
        Ok(())
    }

    fn claim_send_jobs(&mut self, claim: Claim, busy: &[i64]) -> StoreResult<Vec<SendJob>> {
        let ids = self.lease_due("send_jobs", "id", claim, busy)?;
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, message_id, company_id, connection_id, kind, request, attempts, lease
             FROM send_jobs WHERE id = ?1",
        )?;
        let mut jobs = Vec::with_capacity(ids.len());
        for id in ids {
            jobs.push(stmt.query_row([id], |r| {
                Ok(SendJob {
                    id: r.get(0)?,
                    message_id: r.get(1)?,
                    company_id: r.get(2)?,
                    connection_id: r.get(3)?,
                    kind: wire(r, 4, SendKind::parse)?,
                    request: r.get(5)?,
                    attempts: r.get(6)?,
                    lease: r.get(7)?,
                })
            })?);
        }
        Ok(jobs)
    }

    fn finish_send_job(&mut self, id: &str, lease: i64) -> StoreResult<bool> {
        let changed = self
            .conn
            .prepare_cached("DELETE FROM send_jobs WHERE id = ?1 AND lease = ?2")?
            .execute(params![id, lease])?;
        Ok(changed > 0)
    }

    fn retry_send_job(&mut self, id: &str, lease: i64, due: i64) -> StoreResult<bool> {
        let changed = self
            .conn
            .prepare_cached(
                "UPDATE send_jobs SET next_attempt_at = ?3, lease = 0 WHERE id = ?1 AND lease = ?2",
            )?
            .execute(params![id, lease, due])?;
        self.announce_if(changed > 0, Topic::Sends);
        Ok(changed > 0)
    }

    fn release_send_job(&mut self, id: &str, lease: i64, due: i64) -> StoreResult<bool> {
        let changed = self
            .conn
            .prepare_cached(
                "UPDATE send_jobs SET next_attempt_at = ?3, lease = 0, attempts = attempts - 1
                 WHERE id = ?1 AND lease = ?2",
            )?
            .execute(params![id, lease, due])?;
        self.announce_if(changed > 0, Topic::Sends);
        Ok(changed > 0)
    }

    fn next_send_job_due(&mut self) -> StoreResult<Option<i64>> {
        Ok(self
            .conn
            .prepare_cached("SELECT min(next_attempt_at) FROM send_jobs")?
            .query_row([], |r| r.get(0))?)
    }

    fn insert_media_job(&mut self, job: &MediaJob, due: i64) -> StoreResult<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO media_jobs (message_id, company_id, connection_id, media_id, sha256,
                    mime_type, attempts, next_attempt_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (message_id) DO NOTHING",
            )?
            .execute(params![
                job.message_id,
                job.company_id,
                job.connection_id,
                job.media_id,
                job.sha256,
                job.mime_type,
                job.attempts,
                due
            ])?;
        self.topics.add(Topic::Media);
        Ok(())
    }

    fn claim_media_jobs(&mut self, claim: Claim) -> StoreResult<Vec<MediaJob>> {
        let ids = self.lease_due("media_jobs", "message_id", claim, &[])?;
        let mut stmt = self.conn.prepare_cached(
            "SELECT message_id, company_id, connection_id, media_id, sha256, mime_type, attempts,
                lease FROM media_jobs WHERE message_id = ?1",
        )?;
        let mut jobs = Vec::with_capacity(ids.len());
        for id in ids {
            jobs.push(stmt.query_row([id], |r| {
                Ok(MediaJob {
                    message_id: r.get(0)?,
                    company_id: r.get(1)?,
                    connection_id: r.get(2)?,
                    media_id: r.get(3)?,
                    sha256: r.get(4)?,
                    mime_type: r.get(5)?,
                    attempts: r.get(6)?,
                    lease: r.get(7)?,
                })
            })?);
        }
        Ok(jobs)
    }

    fn finish_media_job(&mut self, message_id: &str, lease: i64) -> StoreResult<bool> {
        let changed = self
            .conn
            .prepare_cached("DELETE FROM media_jobs WHERE message_id = ?1 AND lease = ?2")?
            .execute(params![message_id, lease])?;
        Ok(changed > 0)
    }

    fn retry_media_job(
        &mut self,
        message_id: &str,
        lease: i64,
        due: i64,
        error: &str,
    ) -> StoreResult<bool> {
        let changed = self
            .conn
            .prepare_cached(
                "UPDATE media_jobs SET next_attempt_at = ?3, lease = 0, last_error = ?4
                 WHERE message_id = ?1 AND lease = ?2",
            )?
            .execute(params![message_id, lease, due, error])?;
        self.announce_if(changed > 0, Topic::Media);
        Ok(changed > 0)
    }

    fn next_media_job_due(&mut self) -> StoreResult<Option<i64>> {
        Ok(self
            .conn
            .prepare_cached("SELECT min(next_attempt_at) FROM media_jobs")?
            .query_row([], |r| r.get(0))?)
    }

    fn insert_media(&mut self, m: &StoredMedia) -> StoreResult<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO media (key, company_id, sha256, mime_type, size, file_name, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                m.key,
                m.company_id,
                m.sha256,
                m.mime_type,
                m.size,
                m.file_name,
                m.created_at
            ])?;
        Ok(())
    }

    fn media(&mut self, key: &str) -> StoreResult<Option<StoredMedia>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT key, company_id, sha256, mime_type, size, file_name, created_at FROM media
                 WHERE key = ?1",
            )?
            .query_row([key], |r| {
                Ok(StoredMedia {
                    key: r.get(0)?,
                    company_id: r.get(1)?,
                    sha256: r.get(2)?,
                    mime_type: r.get(3)?,
                    size: r.get(4)?,
                    file_name: r.get(5)?,
                    created_at: r.get(6)?,
                })
            })
            .optional()?)
    }
}
