//! Webhook endpoints, in PostgreSQL.

use super::rows::*;
use super::tx::PgTx;
use crate::domain::{Webhook, WebhookFormat, WebhookSpec};
use crate::store::{StoreError, StoreResult, Target, Topic, WebhookTx};

impl WebhookTx for PgTx<'_> {
    fn insert_webhook(
        &mut self,
        company_id: i64,
        w: &WebhookSpec,
        now: i64,
    ) -> StoreResult<Webhook> {
        let row = self.write_opt(
            &format!(
                "INSERT INTO webhooks (company_id, url, events, connection_id, queue_id,
                    include_groups, ordering, token, secret, description, enabled, rate_limit,
                    created_at, updated_at, filter_received, filter_sent, filter_ticket_open,
                    filter_ticket_pending, media_base64, start_on_transfer, format, api_config_id)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13,
                    $14, $15, $16, $17, $18, $19, $20, $21)
                 RETURNING {WEBHOOK_COLS}"
            ),
            &[
                &company_id,
                &w.url,
                &join_events(&w.events),
                &w.connection_id,
                &w.queue_id,
                &w.filters.include_groups,
                &w.ordering.as_str(),
                &w.token,
                &w.secret,
                &w.description,
                &w.enabled,
                &w.rate_limit,
                &now,
                &w.filters.received,
                &w.filters.sent,
                &w.filters.ticket_open,
                &w.filters.ticket_pending,
                &w.filters.media_base64,
                &w.start_on_transfer,
                &w.format.as_str(),
                &w.api_config_id,
            ],
        )?;
        match row {
            Some(row) => webhook_row(&row),
            None => Err(StoreError::Corrupt("inserted webhook vanished".into())),
        }
    }

    fn webhook(&mut self, company_id: i64, id: i64) -> StoreResult<Option<WebhookSpec>> {
        self.query_opt(
            &format!("SELECT {WEBHOOK_COLS} FROM webhooks WHERE company_id = $1 AND id = $2"),
            &[&company_id, &id],
        )?
        .map(|row| webhook_spec_row(&row))
        .transpose()
    }

    fn webhook_view(&mut self, company_id: i64, id: i64) -> StoreResult<Option<Webhook>> {
        self.query_opt(
            &format!("SELECT {WEBHOOK_COLS} FROM webhooks WHERE company_id = $1 AND id = $2"),
            &[&company_id, &id],
        )?
        .map(|row| webhook_row(&row))
        .transpose()
    }

    fn webhooks(&mut self, company_id: i64) -> StoreResult<Vec<Webhook>> {
        self.query(
            &format!("SELECT {WEBHOOK_COLS} FROM webhooks WHERE company_id = $1 ORDER BY id"),
            &[&company_id],
        )?
        .iter()
        .map(webhook_row)
        .collect()
    }

    fn update_webhook(
        &mut self,
        company_id: i64,
        id: i64,
        w: &WebhookSpec,
        now: i64,
    ) -> StoreResult<()> {
        self.execute(
            "UPDATE webhooks SET url = $3, events = $4, connection_id = $5, queue_id = $6,
                include_groups = $7, ordering = $8, token = $9, description = $10,
                disabled_reason = CASE WHEN $11 THEN NULL ELSE disabled_reason END,
                failing_since = CASE WHEN $11 AND NOT enabled THEN NULL ELSE failing_since END,
                enabled = $11, rate_limit = $12, updated_at = $13, filter_received = $14,
                filter_sent = $15, filter_ticket_open = $16, filter_ticket_pending = $17,
                media_base64 = $18, start_on_transfer = $19
             WHERE company_id = $1 AND id = $2",
            &[
                &company_id,
                &id,
                &w.url,
                &join_events(&w.events),
                &w.connection_id,
                &w.queue_id,
                &w.filters.include_groups,
                &w.ordering.as_str(),
                &w.token,
                &w.description,
                &w.enabled,
                &w.rate_limit,
                &now,
                &w.filters.received,
                &w.filters.sent,
                &w.filters.ticket_open,
                &w.filters.ticket_pending,
                &w.filters.media_base64,
                &w.start_on_transfer,
            ],
        )?;
        // An endpoint enabled again has deliveries to resume.
        self.announce_if(w.enabled, Topic::Deliveries);
        Ok(())
    }

    fn delete_webhook(&mut self, company_id: i64, id: i64) -> StoreResult<bool> {
        let deleted = self.execute(
            "DELETE FROM webhooks WHERE company_id = $1 AND id = $2",
            &[&company_id, &id],
        )? > 0;
        if deleted {
            self.execute(
                "DELETE FROM attempts WHERE delivery_seq IN (
                    SELECT seq FROM deliveries WHERE webhook_id = $1)",
                &[&id],
            )?;
            self.execute("DELETE FROM deliveries WHERE webhook_id = $1", &[&id])?;
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
        Ok(self.execute(
            "UPDATE webhooks SET previous_secret = secret, previous_secret_until = $4, secret = $3
             WHERE company_id = $1 AND id = $2",
            &[&company_id, &id, &secret, &previous_until],
        )? > 0)
    }

    fn target(&mut self, company_id: i64, id: i64, now: i64) -> StoreResult<Option<Target>> {
        let row = self.query_opt(
            "SELECT id, url, secret, CASE WHEN previous_secret_until > $3 THEN previous_secret END,
                    token, rate_limit, format
             FROM webhooks WHERE company_id = $1 AND id = $2",
            &[&company_id, &id, &now],
        )?;
        let Some(row) = row else {
            return Ok(None);
        };
        Ok(Some(Target {
            webhook_id: col(&row, 0)?,
            url: col(&row, 1)?,
            secret: col(&row, 2)?,
            previous_secret: col(&row, 3)?,
            token: col(&row, 4)?,
            format: wire(&row, 6, WebhookFormat::parse)?,
            rate_limit: col(&row, 5)?,
        }))
    }

    fn webhook_company(&mut self, id: i64) -> StoreResult<Option<i64>> {
        self.query_opt("SELECT company_id FROM webhooks WHERE id = $1", &[&id])?
            .map(|row| col(&row, 0))
            .transpose()
    }

    fn disabled_webhooks(&mut self) -> StoreResult<i64> {
        let row = self.query_one("SELECT count(*) FROM webhooks WHERE NOT enabled", &[])?;
        col(&row, 0)
    }
}
