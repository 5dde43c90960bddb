//! The SQL of the channels' operations for PostgreSQL: cloud settings with sealed secrets, the
//! callback inbox, send jobs, media jobs and stored media.

use postgres::Row;

use super::rows::*;
use super::tx::PgTx;
use crate::domain::{CloudConfig, Connection as Conn};
use crate::store::sealed::{self, open_secrets, seal_secrets};
use crate::store::{
    ChannelTx, Claim, InboxItem, MediaJob, SendJob, SendKind, StoreError, StoreResult, StoredMedia,
    Topic,
};

/// Checks that the transaction's secret key is the one this database was set up with,
/// recording it on a new database. (The PostgreSQL schema never kept plaintext settings, so
/// there is nothing to seal, unlike SQLite.)
pub(super) fn prepare_secrets(tx: &mut PgTx<'_>) -> StoreResult<()> {
    let secrets = tx.secrets;
    let found = tx.query_opt("SELECT sealed FROM secret_check WHERE id = 1", &[])?;
    let sealed: Vec<u8> = match found {
        Some(row) => col(&row, 0)?,
        None => {
            // Two nodes starting at once on a new database: one value is kept, and both
            // check their key against it.
            tx.execute(
                "INSERT INTO secret_check (id, sealed) VALUES (1, $1) ON CONFLICT (id) DO NOTHING",
                &[&sealed::new_check(secrets)],
            )?;
            let row = tx.query_one("SELECT sealed FROM secret_check WHERE id = 1", &[])?;
            col(&row, 0)?
        }
    };
    sealed::check(secrets, &sealed)
}

impl PgTx<'_> {
    /// Leases up to `claim.limit` due rows of a job table, none of a connection in `busy`;
    /// answers them, with `columns` (of `t`, the table), in no order. Rows another claim holds
    /// are skipped, not waited for.
    fn lease_due(
        &mut self,
        table: &str,
        key: &str,
        columns: &str,
        claim: Claim,
        busy: &[i64],
    ) -> StoreResult<Vec<Row>> {
        let sql = format!(
            "WITH picked AS (
                SELECT {key} FROM {table} WHERE next_attempt_at <= $1 AND connection_id <> ALL($5)
                ORDER BY next_attempt_at LIMIT $4
                FOR UPDATE SKIP LOCKED)
             UPDATE {table} t SET lease = $3, next_attempt_at = $2, attempts = t.attempts + 1
             FROM picked WHERE t.{key} = picked.{key}
             RETURNING {columns}"
        );
        self.write_query(
            &sql,
            &[
                &claim.now,
                &claim.lease_until,
                &claim.lease,
                &claim.limit,
                &busy.to_vec(),
            ],
        )
    }
}

impl ChannelTx for PgTx<'_> {
    fn cloud_config(&mut self, connection_id: i64) -> StoreResult<Option<(i64, CloudConfig)>> {
        let row = self.query_opt(
            "SELECT company_id, phone_number_id, graph_base_url, graph_version, sealed_secrets
             FROM connections WHERE id = $1 AND channel = 'cloud'",
            &[&connection_id],
        )?;
        let Some(row) = row else {
            return Ok(None);
        };
        let company_id: i64 = col(&row, 0)?;
        let phone_number_id: Option<String> = col(&row, 1)?;
        let graph_base_url: Option<String> = col(&row, 2)?;
        let graph_version: Option<String> = col(&row, 3)?;
        let sealed: Option<Vec<u8>> = col(&row, 4)?;
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
            None => self.execute(
                "UPDATE connections SET name = $3 WHERE company_id = $1 AND id = $2",
                &[&company_id, &id, &name],
            )?,
            Some(c) => {
                let sealed = seal_secrets(self.secrets, c);
                self.execute(
                    "UPDATE connections SET name = $3, phone_number_id = $4, graph_base_url = $5,
                        graph_version = $6, sealed_secrets = $7,
                        token_refused_at = CASE WHEN $8 THEN NULL ELSE token_refused_at END
                     WHERE company_id = $1 AND id = $2",
                    &[
                        &company_id,
                        &id,
                        &name,
                        &c.phone_number_id,
                        &c.graph_base_url,
                        &c.graph_version,
                        &sealed,
                        &new_token,
                    ],
                )?
            }
        };
        Ok(changed > 0)
    }

    fn connection_by_phone_number_id(
        &mut self,
        company_id: i64,
        phone_number_id: &str,
    ) -> StoreResult<Option<Conn>> {
        self.query_opt(
            &format!(
                "SELECT {CONNECTION_COLS} FROM connections
                 WHERE company_id = $1 AND phone_number_id = $2 AND channel = 'cloud'
                 ORDER BY id LIMIT 1"
            ),
            &[&company_id, &phone_number_id],
        )?
        .as_ref()
        .map(connection_row)
        .transpose()
    }

    fn record_send_outcome(
        &mut self,
        connection_id: i64,
        now: i64,
        error: Option<&str>,
        token_refused: bool,
    ) -> StoreResult<()> {
        match error {
            None => self.execute(
                "UPDATE connections SET last_send_error = NULL, last_send_error_at = NULL,
                    token_refused_at = NULL
                 WHERE id = $1 AND (last_send_error IS NOT NULL OR token_refused_at IS NOT NULL)",
                &[&connection_id],
            )?,
            Some(error) => self.execute(
                "UPDATE connections SET last_send_error = $2, last_send_error_at = $3,
                    token_refused_at = CASE WHEN $4 THEN $3 ELSE token_refused_at END
                 WHERE id = $1",
                &[&connection_id, &error, &now, &token_refused],
            )?,
        };
        Ok(())
    }

    fn set_token_refused(&mut self, connection_id: i64, at: Option<i64>) -> StoreResult<bool> {
        // Under READ COMMITTED a second writer's UPDATE waits for the first and then sees the
        // row as it left it: only one of them changes it.
        let changed = match at {
            Some(at) => self.execute(
                "UPDATE connections SET token_refused_at = $2
                 WHERE id = $1 AND channel = 'cloud' AND token_refused_at IS NULL",
                &[&connection_id, &at],
            )?,
            None => self.execute(
                "UPDATE connections SET token_refused_at = NULL
                 WHERE id = $1 AND token_refused_at IS NOT NULL",
                &[&connection_id],
            )?,
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
        let row = self
            .write_opt(
                "INSERT INTO cloud_inbox (company_id, connection_id, body, received_at, next_attempt_at)
                 VALUES ($1, $2, $3, $4, $4)
                 RETURNING id",
                &[&company_id, &connection_id, &body, &now],
            )?
            .ok_or_else(|| StoreError::Database("an inbox insert answered no id".into()))?;
        let id: i64 = col(&row, 0)?;
        self.execute(
            "UPDATE connections SET last_callback_at = $2 WHERE id = $1",
            &[&connection_id, &now],
        )?;
        self.topics.add(Topic::Inbox);
        Ok(id)
    }

    fn claim_inbox(&mut self, claim: Claim) -> StoreResult<Vec<InboxItem>> {
        let rows = self.lease_due(
            "cloud_inbox",
            "id",
            "t.id, t.company_id, t.connection_id, t.body, t.attempts, t.received_at",
            claim,
            &[],
        )?;
        let mut items = rows
            .iter()
            .map(|r| {
                Ok(InboxItem {
                    id: col(r, 0)?,
                    company_id: col(r, 1)?,
                    connection_id: col(r, 2)?,
                    body: col(r, 3)?,
                    attempts: col(r, 4)?,
                    received_at: col(r, 5)?,
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
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
        let changed = self.execute(
            "UPDATE cloud_inbox SET next_attempt_at = NULL, processed_at = $3, error = $4
             WHERE id = $1 AND lease = $2 AND next_attempt_at IS NOT NULL",
            &[&id, &lease, &now, &error],
        )?;
        Ok(changed > 0)
    }

    fn next_inbox_due(&mut self) -> StoreResult<Option<i64>> {
        let row = self.query_one(
            "SELECT min(next_attempt_at) FROM cloud_inbox WHERE next_attempt_at IS NOT NULL",
            &[],
        )?;
        col(&row, 0)
    }

    fn inbox_waiting_before(&mut self, connection_id: i64, id: i64) -> StoreResult<bool> {
        let row = self.query_one(
            "SELECT EXISTS (SELECT 1 FROM cloud_inbox WHERE next_attempt_at IS NOT NULL
                AND connection_id = $1 AND id < $2)",
            &[&connection_id, &id],
        )?;
        col(&row, 0)
    }

    fn prune_inbox(&mut self, before: i64, batch: i64) -> StoreResult<usize> {
        // Rows another process's prune holds are skipped: it deletes them.
        Ok(self.execute(
            "DELETE FROM cloud_inbox WHERE id IN (SELECT id FROM cloud_inbox
                WHERE processed_at IS NOT NULL AND processed_at < $1 LIMIT $2
                FOR UPDATE SKIP LOCKED)",
            &[&before, &batch],
        )? as usize)
    }

    fn insert_send_job(&mut self, job: &SendJob, due: i64) -> StoreResult<()> {
        self.execute(
            "INSERT INTO send_jobs (id, message_id, company_id, connection_id, kind, request,
                attempts, next_attempt_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &[
                &job.id,
                &job.message_id,
                &job.company_id,
                &job.connection_id,
                &job.kind.as_str(),
                &job.request,
                &job.attempts,
                &due,
            ],
        )?;
        self.topics.add(Topic::Sends);
        Ok(())
    }

    fn claim_send_jobs(&mut self, claim: Claim, busy: &[i64]) -> StoreResult<Vec<SendJob>> {
        let rows = self.lease_due(
            "send_jobs",
            "id",
            "t.id, t.message_id, t.company_id, t.connection_id, t.kind, t.request, t.attempts,
                t.lease",
            claim,
            busy,
        )?;
        let mut jobs = rows
            .iter()
            .map(|r| {
                Ok(SendJob {
                    id: col(r, 0)?,
                    message_id: col(r, 1)?,
                    company_id: col(r, 2)?,
                    connection_id: col(r, 3)?,
                    kind: wire(r, 4, SendKind::parse)?,
                    request: col(r, 5)?,
                    attempts: col(r, 6)?,
                    lease: col(r, 7)?,
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        // SQLite answers them in key order (its update walks the picked keys sorted), and a
        // connection's jobs are sent in the order answered: ids are ULIDs, so oldest first.
        // Sorted here by the bytes of the id, as SQLite compares text.
        jobs.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(jobs)
    }

    fn finish_send_job(&mut self, id: &str, lease: i64) -> StoreResult<bool> {
        let changed = self.execute(
            "DELETE FROM send_jobs WHERE id = $1 AND lease = $2",
            &[&id, &lease],
        )?;
        Ok(changed > 0)
    }

    fn retry_send_job(&mut self, id: &str, lease: i64, due: i64) -> StoreResult<bool> {
        let changed = self.execute(
            "UPDATE send_jobs SET next_attempt_at = $3, lease = 0 WHERE id = $1 AND lease = $2",
            &[&id, &lease, &due],
        )?;
        self.announce_if(changed > 0, Topic::Sends);
        Ok(changed > 0)
    }

    fn release_send_job(&mut self, id: &str, lease: i64, due: i64) -> StoreResult<bool> {
        let changed = self.execute(
            "UPDATE send_jobs SET next_attempt_at = $3, lease = 0, attempts = attempts - 1
             WHERE id = $1 AND lease = $2",
            &[&id, &lease, &due],
        )?;
        self.announce_if(changed > 0, Topic::Sends);
        Ok(changed > 0)
    }

    fn next_send_job_due(&mut self) -> StoreResult<Option<i64>> {
        let row = self.query_one("SELECT min(next_attempt_at) FROM send_jobs", &[])?;
        col(&row, 0)
    }

    fn insert_media_job(&mut self, job: &MediaJob, due: i64) -> StoreResult<()> {
        self.execute(
            "INSERT INTO media_jobs (message_id, company_id, connection_id, media_id, sha256,
                mime_type, attempts, next_attempt_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (message_id) DO NOTHING",
            &[
                &job.message_id,
                &job.company_id,
                &job.connection_id,
                &job.media_id,
                &job.sha256,
                &job.mime_type,
                &job.attempts,
                &due,
            ],
        )?;
        self.topics.add(Topic::Media);
        Ok(())
    }

    fn claim_media_jobs(&mut self, claim: Claim) -> StoreResult<Vec<MediaJob>> {
        let rows = self.lease_due(
            "media_jobs",
            "message_id",
            "t.message_id, t.company_id, t.connection_id, t.media_id, t.sha256, t.mime_type,
                t.attempts, t.lease",
            claim,
            &[],
        )?;
        let mut jobs = rows
            .iter()
            .map(|r| {
                Ok(MediaJob {
                    message_id: col(r, 0)?,
                    company_id: col(r, 1)?,
                    connection_id: col(r, 2)?,
                    media_id: col(r, 3)?,
                    sha256: col(r, 4)?,
                    mime_type: col(r, 5)?,
                    attempts: col(r, 6)?,
                    lease: col(r, 7)?,
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        // In key order, as SQLite answers them (see `claim_send_jobs`).
        jobs.sort_by(|a, b| a.message_id.cmp(&b.message_id));
        Ok(jobs)
    }

    fn finish_media_job(&mut self, message_id: &str, lease: i64) -> StoreResult<bool> {
        let changed = self.execute(
            "DELETE FROM media_jobs WHERE message_id = $1 AND lease = $2",
            &[&message_id, &lease],
        )?;
        Ok(changed > 0)
    }

    fn retry_media_job(
        &mut self,
        message_id: &str,
        lease: i64,
        due: i64,
        error: &str,
    ) -> StoreResult<bool> {
        let changed = self.execute(
            "UPDATE media_jobs SET next_attempt_at = $3, lease = 0, last_error = $4
             WHERE message_id = $1 AND lease = $2",
            &[&message_id, &lease, &due, &error],
        )?;
        self.announce_if(changed > 0, Topic::Media);
        Ok(changed > 0)
    }

    fn next_media_job_due(&mut self) -> StoreResult<Option<i64>> {
        let row = self.query_one("SELECT min(next_attempt_at) FROM media_jobs", &[])?;
        col(&row, 0)
    }

    fn insert_media(&mut self, m: &StoredMedia) -> StoreResult<()> {
        self.execute(
            "INSERT INTO media (key, company_id, sha256, mime_type, size, file_name, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &m.key,
                &m.company_id,
                &m.sha256,
                &m.mime_type,
                &m.size,
                &m.file_name,
                &m.created_at,
            ],
        )?;
        Ok(())
    }

    fn media(&mut self, key: &str) -> StoreResult<Option<StoredMedia>> {
        let row = self.query_opt(
            "SELECT key, company_id, sha256, mime_type, size, file_name, created_at FROM media
             WHERE key = $1",
            &[&key],
        )?;
        row.map(|r| {
            Ok(StoredMedia {
                key: col(&r, 0)?,
                company_id: col(&r, 1)?,
                sha256: col(&r, 2)?,
                mime_type: col(&r, 3)?,
                size: col(&r, 4)?,
                file_name: col(&r, 5)?,
                created_at: col(&r, 6)?,
            })
        })
        .transpose()
    }
}
