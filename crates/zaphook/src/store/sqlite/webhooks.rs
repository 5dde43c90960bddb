//! Webhook endpoints, in SQLite.

use rusqlite::{OptionalExtension, params};

use super::rows::*;
use super::tx::SqliteTx;
use crate::domain::{Webhook, WebhookFormat, WebhookSpec};
use crate::store::{StoreError, StoreResult, Target, Topic, WebhookTx};

impl WebhookTx for SqliteTx<'_> {
    fn insert_webhook(
        &mut self,
        company_id: i64,
        w: &WebhookSpec,
        now: i64,
    ) -> StoreResult<Webhook> {
        self.conn.execute(
            "INSERT INTO webhooks (company_id, url, events, connection_id, queue_id, include_groups,
                ordering, token, secret, description, enabled, rate_limit, created_at, updated_at,
                filter_received, filter_sent, filter_ticket_open, filter_ticket_pending,
                media_base64, start_on_transfer, format, api_config_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?13,
                ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21)",
            params![
                company_id,
                w.url,
                join_events(&w.events),
                w.connection_id,
                w.queue_id,
                w.filters.include_groups,
                w.ordering.as_str(),
                w.token,
                w.secret,
                w.description,
                w.enabled,
                w.rate_limit,
                now,
                w.filters.received,
                w.filters.sent,
                w.filters.ticket_open,
                w.filters.ticket_pending,
                w.filters.media_base64,
                w.start_on_transfer,
                w.format.as_str(),
                w.api_config_id,
            ],
        )?;
        let id = self.conn.last_insert_rowid();
        self.webhook_view(company_id, id)?
            .ok_or_else(|| StoreError::Corrupt("inserted webhook vanished".into()))
    }

    fn webhook(&mut self, company_id: i64, id: i64) -> StoreResult<Option<WebhookSpec>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {WEBHOOK_COLS} FROM webhooks WHERE company_id = ?1 AND id = ?2"
        ))?;
        Ok(stmt
            .query_row([company_id, id], webhook_spec_row)
            .optional()?)
    }

    fn webhook_view(&mut self, company_id: i64, id: i64) -> StoreResult<Option<Webhook>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {WEBHOOK_COLS} FROM webhooks WHERE company_id = ?1 AND id = ?2"
        ))?;
        Ok(stmt.query_row([company_id, id], webhook_row).optional()?)
    }

    fn webhooks(&mut self, company_id: i64) -> StoreResult<Vec<Webhook>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {WEBHOOK_COLS} FROM webhooks WHERE company_id = ?1 ORDER BY id"
        ))?;
        let rows = stmt.query_map([company_id], webhook_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn update_webhook(
        &mut self,
        company_id: i64,
        id: i64,
        w: &WebhookSpec,
        now: i64,
    ) -> StoreResult<()> {
        self.conn.execute(
            "UPDATE webhooks SET url = ?3, events = ?4, connection_id = ?5, queue_id = ?6,
                include_groups = ?7, ordering = ?8, token = ?9, description = ?10,
                disabled_reason = CASE WHEN ?11 THEN NULL ELSE disabled_reason END,
                failing_since = CASE WHEN ?11 AND enabled = 0 THEN NULL ELSE failing_since END,
                enabled = ?11, rate_limit = ?12, updated_at = ?13, filter_received = ?14,
                filter_sent = ?15, filter_ticket_open = ?16, filter_ticket_pending = ?17,
                media_base64 = ?18, start_on_transfer = ?19
             WHERE company_id = ?1 AND id = ?2",
            params![
                company_id,
                id,
                w.url,
                join_events(&w.events),
                w.connection_id,
                w.queue_id,
                w.filters.include_groups,
                w.ordering.as_str(),
                w.token,
                w.description,
                w.enabled,
                w.rate_limit,
                now,
                w.filters.received,
                w.filters.sent,
                w.filters.ticket_open,
                w.filters.ticket_pending,
                w.filters.media_base64,
                w.start_on_transfer,
            ],
        )?;
        // An endpoint enabled again has deliveries to resume.
        self.announce_if(w.enabled, Topic::Deliveries);
        Ok(())
    }

    fn delete_webhook(&mut self, company_id: i64, id: i64) -> StoreResult<bool> {
        let deleted = self.conn.execute(
            "DELETE FROM webhooks WHERE company_id = ?1 AND id = ?2",
            [company_id, id],
        )? > 0;
        if deleted {
            self.conn.execute(
                "DELETE FROM attempts WHERE delivery_seq IN (
                    SELECT seq FROM deliveries WHERE webhook_id = ?1)",
                [id],
            )?;
            self.conn
                .execute("DELETE FROM deliveries WHERE webhook_id = ?1", [id])?;
        }
        Ok(deleted)
    }

    fn rotate_secret(
        &mut self,
        company_id: i64,
        id: i64,
        secret: &str,
        previous_until: i64,
    ) -> StoreResult<bool> {
        Ok(self.conn.execute(
            "UPDATE webhooks SET previous_secret = secret, previous_secret_until = ?4, secret = ?3
             WHERE company_id = ?1 AND id = ?2",
            params![company_id, id, secret, previous_until],
        )? > 0)
    }

    fn target(&mut self, company_id: i64, id: i64, now: i64) -> StoreResult<Option<Target>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, url, secret, CASE WHEN previous_secret_until > ?3 THEN previous_secret END,
                    token, rate_limit, format
             FROM webhooks WHERE company_id = ?1 AND id = ?2",
        )?;
        Ok(stmt
            .query_row(params![company_id, id, now], |r| {
                Ok(Target {
                    webhook_id: r.get(0)?,
                    url: r.get(1)?,
                    secret: r.get(2)?,
                    previous_secret: r.get(3)?,
                    token: r.get(4)?,
                    format: wire(r, 6, WebhookFormat::parse)?,
                    rate_limit: r.get(5)?,
                })
            })
            .optional()?)
    }

    fn webhook_company(&mut self, id: i64) -> StoreResult<Option<i64>> {
        Ok(self
            .conn
            .query_row("SELECT company_id FROM webhooks WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .optional()?)
    }

    fn disabled_webhooks(&mut self) -> StoreResult<i64> {
        Ok(self
            .conn
            .query_row("SELECT count(*) FROM webhooks WHERE enabled = 0", [], |r| {
                r.get(0)
            })?)
    }
}
