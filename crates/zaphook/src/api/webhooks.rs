//! Webhook endpoints and their delivery log: create, read, change, remove, test, rotate the
//! secret, recover failed deliveries; list deliveries, read one with every attempt, retry one.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ApiResult, Checks};
use super::extract::{Company, Json, Path, Query};
use super::{AppState, Page, page_limit};
use crate::delivery::sign;
use crate::delivery::ssrf::TargetPolicy;
use crate::domain::{
    self, Delivery, DeliveryDetail, DeliveryStatus, EventType, Ordering, Webhook, WebhookFormat,
    WebhookSpec, rfc3339,
};
use crate::store::{self, Tx};

/// How long a rotated-out secret keeps signing beside the new one.
const ROTATION_OVERLAP_MS: i64 = 24 * 3600 * 1000;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_webhook, list_webhooks))
        .routes(routes!(get_webhook, patch_webhook, delete_webhook))
        .routes(routes!(test_webhook))
        .routes(routes!(rotate_secret))
        .routes(routes!(recover))
        .routes(routes!(list_deliveries))
        .routes(routes!(get_delivery))
        .routes(routes!(retry_delivery))
}

#[derive(Debug, Default, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookBody {
    /// Where events are POSTed (http or https).
    url: Option<String>,
    /// Event types to receive; default `["message.created"]`.
    events: Option<Vec<EventType>>,
    /// Only events of this connection.
    #[serde(default, deserialize_with = "super::extract::nullable")]
    #[schema(value_type = Option<i64>)]
    connection_id: Option<Option<i64>>,
    /// Only events of tickets in this queue.
    #[serde(default, deserialize_with = "super::extract::nullable")]
    #[schema(value_type = Option<i64>)]
    queue_id: Option<Option<i64>>,
    /// With `queueId`: send the ticket's last message when the ticket enters the queue
    /// (default false).
    start_on_transfer: Option<bool>,
    /// Which events of the scope are sent; keys left out keep their value.
    filters: Option<FiltersBody>,
    /// The older name of `filters.includeGroups`.
    include_groups: Option<bool>,
    /// `ticket` (default): one ticket's events arrive in order; `none`: no ordering.
    ordering: Option<Ordering>,
    /// Sent as `X-N8N-API-KEY` with every request.
    #[serde(default, deserialize_with = "super::extract::nullable")]
    #[schema(value_type = Option<String>)]
    token: Option<Option<String>>,
    /// A `whsec_…` signing secret; generated when not given.
    secret: Option<String>,
    #[serde(default, deserialize_with = "super::extract::nullable")]
    #[schema(value_type = Option<String>)]
    description: Option<Option<String>>,
    enabled: Option<bool>,
    /// Most requests per second to this endpoint.
    #[serde(default, deserialize_with = "super::extract::nullable")]
    #[schema(value_type = Option<i64>)]
    rate_limit: Option<Option<i64>>,
}

impl WebhookBody {
    /// What the dashboard's form gives: an address, its event types and a description.
    pub(crate) fn of_form(
        url: String,
        events: Vec<EventType>,
        description: Option<String>,
    ) -> Self {
        WebhookBody {
            url: Some(url),
            events: Some(events),
            description: Some(description),
            ..WebhookBody::default()
        }
    }

    /// What the dashboard's edit form gives: all but the secret, the token, the rate limit and
    /// `enabled`, which keep their values.
    pub(crate) fn of_edit(edit: EditForm) -> Self {
        let f = edit.filters;
        WebhookBody {
            url: Some(edit.url),
            events: Some(edit.events),
            connection_id: Some(edit.connection_id),
            queue_id: Some(edit.queue_id),
            start_on_transfer: Some(edit.start_on_transfer),
            filters: Some(FiltersBody {
                received: Some(f.received),
                sent: Some(f.sent),
                include_groups: Some(f.include_groups),
                ticket_open: Some(f.ticket_open),
                ticket_pending: Some(f.ticket_pending),
                media_base64: Some(f.media_base64),
            }),
            ordering: Some(edit.ordering),
            description: Some(edit.description),
            ..WebhookBody::default()
        }
    }

    /// Only `enabled`, as the dashboard's enable and disable buttons change it.
    pub(crate) fn of_enabled(enabled: bool) -> Self {
        WebhookBody {
            enabled: Some(enabled),
            ..WebhookBody::default()
        }
    }
}

/// An endpoint as the dashboard's edit form sends it.
#[derive(Clone)]
pub(crate) struct EditForm {
    pub url: String,
    pub events: Vec<EventType>,
    pub description: Option<String>,
    pub connection_id: Option<i64>,
    pub queue_id: Option<i64>,
    pub start_on_transfer: bool,
    pub filters: domain::Filters,
    pub ordering: Ordering,
}

/// WHAZING's webhook filters; each defaults to true except `mediaBase64`.
#[derive(Debug, Default, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FiltersBody {
    /// Messages from the contact.
    received: Option<bool>,
    /// Messages we sent (agents, the API, the business's phone).
    sent: Option<bool>,
    /// Events of group conversations.
    include_groups: Option<bool>,
    /// Messages of open tickets.
    ticket_open: Option<bool>,
    /// Messages of pending tickets (with `ticketOpen` also off, no message event is sent).
    ticket_pending: Option<bool>,
    /// `mediaBase64` filled with the file's bytes (media zaphook stores, up to 16 MiB).
    media_base64: Option<bool>,
}

/// An endpoint's address in `field`: an http(s) URL that the operator lets webhooks reach.
pub(crate) fn check_target(
    checks: &mut Checks,
    field: &str,
    url: &str,
    targets: &TargetPolicy,
) -> String {
    let url = checks.url(field, url);
    if let Ok(parsed) = reqwest::Url::parse(&url)
        && targets.check_literal(&parsed).is_err()
    {
        checks.fail(
            field,
            "points to a private or internal address; allow it with --allow-private-targets or --allow-private-cidrs",
        );
    }
    url
}

/// Applies a request body over `spec` (a new endpoint's defaults, or the stored one).
fn merge(
    checks: &mut Checks,
    mut spec: WebhookSpec,
    body: WebhookBody,
    targets: &TargetPolicy,
) -> WebhookSpec {
    if let Some(url) = body.url {
        spec.url = check_target(checks, "url", &url, targets);
    }
    if let Some(events) = body.events {
        if events.is_empty() {
            checks.fail("events", "must name at least one event type");
        }
        if events.contains(&EventType::WebhookTest) {
            checks.fail(
                "events",
                "webhook.test is sent by the test route, not subscribed to",
            );
        }
        if let Some(hook) = events.iter().find(|e| e.is_hook()) {
            checks.fail(
                "events",
                format!(
                    "{hook} is sent to an API config's hook URL: set urlMessageStatus or urlServiceStatus on the API config"
                ),
            );
        }
        // Each type once, where it was first named.
        let mut named = Vec::with_capacity(events.len());
        for event in events {
            if !named.contains(&event) {
                named.push(event);
            }
        }
        spec.events = named;
    }
    if let Some(connection_id) = body.connection_id {
        spec.connection_id = connection_id;
    }
    if let Some(queue_id) = body.queue_id {
        spec.queue_id = queue_id;
    }
    if let Some(start) = body.start_on_transfer {
        spec.start_on_transfer = start;
    }
    let filters = body.filters.unwrap_or_default();
    if let (Some(old_name), Some(new_name)) = (body.include_groups, filters.include_groups)
        && old_name != new_name
    {
        checks.fail(
            "includeGroups",
            "disagrees with filters.includeGroups; give one of them",
        );
    }
    let f = &mut spec.filters;
    for (field, value) in [
        (&mut f.received, filters.received),
        (&mut f.sent, filters.sent),
        (
            &mut f.include_groups,
            filters.include_groups.or(body.include_groups),
        ),
        (&mut f.ticket_open, filters.ticket_open),
        (&mut f.ticket_pending, filters.ticket_pending),
        (&mut f.media_base64, filters.media_base64),
    ] {
        if let Some(value) = value {
            *field = value;
        }
    }
    if spec.start_on_transfer && spec.queue_id.is_none() {
        checks.fail(
            "startOnTransfer",
            "needs a queueId: the ticket's last message is sent when it enters that queue",
        );
    }
    if let Some(ordering) = body.ordering {
        spec.ordering = ordering;
    }
    if let Some(token) = body.token {
        spec.token = checks.optional_text("token", token.as_deref(), 512);
    }
    if let Some(secret) = body.secret {
        if sign::secret_key(&secret).is_none() {
            checks.fail(
                "secret",
                "must be whsec_ followed by the base64 of 24 to 64 random bytes",
            );
        }
        spec.secret = secret;
    }
    if let Some(description) = body.description {
        spec.description = checks.optional_text("description", description.as_deref(), 500);
    }
    if let Some(enabled) = body.enabled {
        spec.enabled = enabled;
    }
    if let Some(rate_limit) = body.rate_limit {
        if rate_limit.is_some_and(|r| !(1..=10_000).contains(&r)) {
            checks.fail(
                "rateLimit",
                "must be between 1 and 10000 requests per second",
            );
        }
        spec.rate_limit = rate_limit;
    }
    spec
}

/// The connection and queue an endpoint filters on must be the company's.
fn check_scope(tx: &mut dyn Tx, company: i64, spec: &WebhookSpec) -> ApiResult<()> {
    let mut checks = Checks::default();
    if let Some(id) = spec.connection_id
        && tx.connection(company, id)?.is_none()
    {
        checks.fail("connectionId", format!("connection {id} does not exist"));
    }
    if let Some(id) = spec.queue_id
        && tx.queue(company, id)?.is_none()
    {
        checks.fail("queueId", format!("queue {id} does not exist"));
    }
    checks.done()
}

/// Creates an endpoint. The answer carries its signing `secret`, shown again only on rotation.
#[utoipa::path(post, path = "/api/v1/webhooks", tag = "webhooks", request_body = WebhookBody,
    responses((status = 201, body = Webhook), (status = 422, body = super::Problem)))]
async fn create_webhook(
    State(state): State<AppState>,
    Company(company): Company,
    Json(body): Json<WebhookBody>,
) -> ApiResult<(StatusCode, axum::Json<Webhook>)> {
    let webhook = create(&state, company, body).await?;
    Ok((StatusCode::CREATED, axum::Json(webhook)))
}

/// Checks and stores a new endpoint of `company` (the API's and the dashboard's); the answer
/// carries its secret.
pub(crate) async fn create(
    state: &AppState,
    company: i64,
    body: WebhookBody,
) -> ApiResult<Webhook> {
    let mut checks = Checks::default();
    if body.url.is_none() {
        checks.fail("url", "is required");
    }
    let defaults = WebhookSpec {
        url: String::new(),
        events: EventType::DEFAULT_SUBSCRIPTION.to_vec(),
        format: WebhookFormat::Whazing,
        api_config_id: None,
        connection_id: None,
        queue_id: None,
        start_on_transfer: false,
        filters: domain::Filters::default(),
        ordering: Ordering::Ticket,
        token: None,
        secret: sign::generate_secret(),
        description: None,
        enabled: true,
        rate_limit: None,
    };
    let spec = merge(&mut checks, defaults, body, state.sender.targets());
    checks.done()?;
    let now = state.ingest.clock.now_ms();
    store::write(&state.ingest.store, move |tx| {
        check_scope(tx, company, &spec)?;
        let mut webhook = tx.insert_webhook(company, &spec, now)?;
        webhook.secret = Some(spec.secret.clone());
        Ok::<_, ApiError>(webhook)
    })
    .await
}

/// Lists the company's endpoints.
#[utoipa::path(get, path = "/api/v1/webhooks", tag = "webhooks",
    responses((status = 200, body = Vec<Webhook>)))]
async fn list_webhooks(
    State(state): State<AppState>,
    Company(company): Company,
) -> ApiResult<axum::Json<Vec<Webhook>>> {
    let list = store::read(&state.ingest.store, move |tx| tx.webhooks(company))
        .await
        .map_err(ApiError::from)?;
    Ok(axum::Json(list))
}

fn webhook_not_found(id: i64) -> ApiError {
    ApiError::NotFound(format!("webhook {id}"))
}

/// An endpoint an API config owns (one of izing's hooks) changes with its config only.
fn refuse_owned(id: i64, spec: &WebhookSpec) -> ApiResult<()> {
    match &spec.api_config_id {
        Some(api_id) => Err(ApiError::Conflict(format!(
            "webhook {id} is the {} hook of API config {api_id}: change or remove it with PATCH /api/v1/api-configs/{api_id}",
            spec.format
        ))),
        None => Ok(()),
    }
}

/// One endpoint.
#[utoipa::path(get, path = "/api/v1/webhooks/{id}", tag = "webhooks", params(("id" = i64, Path)),
    responses((status = 200, body = Webhook), (status = 404, body = super::Problem)))]
async fn get_webhook(
    State(state): State<AppState>,
    Company(company): Company,
    Path(id): Path<i64>,
) -> ApiResult<axum::Json<Webhook>> {
    store::read(&state.ingest.store, move |tx| tx.webhook_view(company, id))
        .await
        .map_err(ApiError::from)?
        .map(axum::Json)
        .ok_or_else(|| webhook_not_found(id))
}

/// Changes an endpoint; keys left out keep their value, `null` clears an optional one.
/// Enabling a disabled endpoint resumes its deliveries where they stopped. An API config's
/// hook endpoint (`apiConfigId` set) changes with its config only: 409 here.
#[utoipa::path(patch, path = "/api/v1/webhooks/{id}", tag = "webhooks", params(("id" = i64, Path)),
    request_body = WebhookBody,
    responses((status = 200, body = Webhook), (status = 404, body = super::Problem),
        (status = 409, body = super::Problem), (status = 422, body = super::Problem)))]
async fn patch_webhook(
    State(state): State<AppState>,
    Company(company): Company,
    Path(id): Path<i64>,
    Json(body): Json<WebhookBody>,
) -> ApiResult<axum::Json<Webhook>> {
    Ok(axum::Json(change(&state, company, id, body).await?))
}

/// Applies a change to an endpoint of `company` (the API's and the dashboard's).
pub(crate) async fn change(
    state: &AppState,
    company: i64,
    id: i64,
    body: WebhookBody,
) -> ApiResult<Webhook> {
    if body.secret.is_some() {
        return Err(ApiError::field(
            "secret",
            "change the secret with POST /api/v1/webhooks/{id}/rotate-secret",
        ));
    }
    let now = state.ingest.clock.now_ms();
    let targets = state.sender.targets().clone();
    store::write(&state.ingest.store, move |tx| {
        let current = tx
            .webhook(company, id)?
            .ok_or_else(|| webhook_not_found(id))?;
        refuse_owned(id, &current)?;
        let mut checks = Checks::default();
        let spec = merge(&mut checks, current, body.clone(), &targets);
        checks.done()?;
        check_scope(tx, company, &spec)?;
        tx.update_webhook(company, id, &spec, now)?;
        tx.webhook_view(company, id)?
            .ok_or_else(|| webhook_not_found(id))
    })
    .await
}

/// Removes an endpoint and its delivery log. An API config's hook endpoint is removed with its
/// config's URL only: 409 here.
#[utoipa::path(delete, path = "/api/v1/webhooks/{id}", tag = "webhooks", params(("id" = i64, Path)),
    responses((status = 204), (status = 404, body = super::Problem),
        (status = 409, body = super::Problem)))]
async fn delete_webhook(
    State(state): State<AppState>,
    Company(company): Company,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    let deleted = store::write(&state.ingest.store, move |tx| {
        match tx.webhook(company, id)? {
            Some(spec) => refuse_owned(id, &spec)?,
            None => return Ok(false),
        }
        Ok::<_, ApiError>(tx.delete_webhook(company, id)?)
    })
    .await?;
    if deleted {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(webhook_not_found(id))
    }
}

/// What a test delivery got.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TestResult {
    pub(crate) delivered: bool,
    pub(crate) status_code: Option<u16>,
    pub(crate) latency_ms: i64,
    pub(crate) error: Option<String>,
}

/// Sends `webhook.test` to the endpoint now and answers what happened.
#[utoipa::path(post, path = "/api/v1/webhooks/{id}/test", tag = "webhooks",
    params(("id" = i64, Path)),
    responses((status = 200, body = TestResult), (status = 404, body = super::Problem)))]
async fn test_webhook(
    State(state): State<AppState>,
    Company(company): Company,
    Path(id): Path<i64>,
) -> ApiResult<axum::Json<TestResult>> {
    Ok(axum::Json(test(&state, company, id).await?))
}

/// Sends `webhook.test` to an endpoint of `company` now and answers what came of it.
pub(crate) async fn test(state: &AppState, company: i64, id: i64) -> ApiResult<TestResult> {
    let now = state.ingest.clock.now_ms();
    let target = store::read(&state.ingest.store, move |tx| tx.target(company, id, now))
        .await
        .map_err(ApiError::from)?
        .ok_or_else(|| webhook_not_found(id))?;
    let body = crate::payload::webhook_test(now);
    let outcome = state
        .sender
        .post(
            &target,
            &domain::new_event_id(),
            EventType::WebhookTest,
            &body,
            now / 1000,
        )
        .await;
    let delivered = outcome.succeeded();
    let error = outcome.error.or_else(|| {
        (!delivered).then(|| {
            format!(
                "the endpoint answered {}",
                outcome.status.unwrap_or_default()
            )
        })
    });
    Ok(TestResult {
        delivered,
        status_code: outcome.status,
        latency_ms: outcome.latency_ms,
        error,
    })
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RotatedSecret {
    pub(crate) secret: String,
    /// Until when the previous secret also signs.
    pub(crate) previous_valid_until: String,
}

/// Replaces the signing secret; the old one keeps signing alongside for 24 hours.
#[utoipa::path(post, path = "/api/v1/webhooks/{id}/rotate-secret", tag = "webhooks",
    params(("id" = i64, Path)),
    responses((status = 200, body = RotatedSecret), (status = 404, body = super::Problem)))]
async fn rotate_secret(
    State(state): State<AppState>,
    Company(company): Company,
    Path(id): Path<i64>,
) -> ApiResult<axum::Json<RotatedSecret>> {
    Ok(axum::Json(rotate(&state, company, id).await?))
}

/// Gives an endpoint of `company` a new secret; the previous one signs beside it for 24 h.
pub(crate) async fn rotate(state: &AppState, company: i64, id: i64) -> ApiResult<RotatedSecret> {
    let secret = sign::generate_secret();
    let until = state.ingest.clock.now_ms() + ROTATION_OVERLAP_MS;
    let stored = secret.clone();
    let rotated = store::write(&state.ingest.store, move |tx| {
        tx.rotate_secret(company, id, &stored, until)
    })
    .await
    .map_err(ApiError::from)?;
    if !rotated {
        return Err(webhook_not_found(id));
    }
    Ok(RotatedSecret {
        secret,
        previous_valid_until: rfc3339::format(until),
    })
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RecoverBody {
    /// RFC 3339 time; deliveries created since then are queued again.
    since: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Recovered {
    queued: usize,
}

/// Queues again every failed or dead delivery of the endpoint created since a time.
#[utoipa::path(post, path = "/api/v1/webhooks/{id}/recover", tag = "webhooks",
    params(("id" = i64, Path)), request_body = RecoverBody,
    responses((status = 200, body = Recovered), (status = 404, body = super::Problem),
        (status = 422, body = super::Problem)))]
async fn recover(
    State(state): State<AppState>,
    Company(company): Company,
    Path(id): Path<i64>,
    Json(body): Json<RecoverBody>,
) -> ApiResult<axum::Json<Recovered>> {
    let since = rfc3339::parse(body.since.trim())
        .ok_or_else(|| ApiError::field("since", "must be an RFC 3339 time"))?;
    let recovery = recover_since(&state, company, id, since).await?;
    Ok(axum::Json(Recovered {
        queued: recovery.queued as usize,
    }))
}

/// Queues again every failed or dead delivery of an endpoint of `company` created since
/// `since` (Unix ms), as one recovery whose progress can be followed (the API's and the
/// dashboard's).
pub(crate) async fn recover_since(
    state: &AppState,
    company: i64,
    id: i64,
    since: i64,
) -> ApiResult<store::Recovery> {
    let now = state.ingest.clock.now_ms();
    store::write(&state.ingest.store, move |tx| {
        tx.start_recovery(company, id, since, now)?
            .ok_or_else(|| webhook_not_found(id))
    })
    .await
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DeliveryQuery {
    status: Option<DeliveryStatus>,
    /// The `next` of the previous page.
    after: Option<String>,
    /// Page size, 1 to 200 (default 50).
    limit: Option<i64>,
}

/// The endpoint's deliveries, newest first.
#[utoipa::path(get, path = "/api/v1/webhooks/{id}/deliveries", tag = "deliveries",
    params(("id" = i64, Path), DeliveryQuery),
    responses((status = 200, body = Page<Delivery>), (status = 404, body = super::Problem)))]
async fn list_deliveries(
    State(state): State<AppState>,
    Company(company): Company,
    Path(id): Path<i64>,
    Query(query): Query<DeliveryQuery>,
) -> ApiResult<axum::Json<Page<Delivery>>> {
    let limit = page_limit(query.limit)?;
    let items = store::read(&state.ingest.store, move |tx| {
        if tx.webhook(company, id)?.is_none() {
            return Err(webhook_not_found(id));
        }
        Ok(tx.deliveries(id, query.status, query.after.as_deref(), limit)?)
    })
    .await?;
    let next = (items.len() as i64 == limit)
        .then(|| items.last().map(|d| d.id.clone()))
        .flatten();
    Ok(axum::Json(Page { items, next }))
}

/// One delivery with its payload and every attempt.
#[utoipa::path(get, path = "/api/v1/deliveries/{id}", tag = "deliveries",
    params(("id" = String, Path)),
    responses((status = 200, body = DeliveryDetail), (status = 404, body = super::Problem)))]
async fn get_delivery(
    State(state): State<AppState>,
    Company(company): Company,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<DeliveryDetail>> {
    let lookup = id.clone();
    store::read(&state.ingest.store, move |tx| tx.delivery(company, &lookup))
        .await
        .map_err(ApiError::from)?
        .map(axum::Json)
        .ok_or_else(|| ApiError::NotFound(format!("delivery {id}")))
}

/// Queues a delivery again now.
#[utoipa::path(post, path = "/api/v1/deliveries/{id}/retry", tag = "deliveries",
    params(("id" = String, Path)),
    responses((status = 202), (status = 404, body = super::Problem),
        (status = 409, body = super::Problem)))]
async fn retry_delivery(
    State(state): State<AppState>,
    Company(company): Company,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    retry(&state, company, id).await?;
    Ok(StatusCode::ACCEPTED)
}

/// Queues a delivery of `company` again now (the API's and the dashboard's).
pub(crate) async fn retry(state: &AppState, company: i64, id: String) -> ApiResult<()> {
    let now = state.ingest.clock.now_ms();
    store::write(&state.ingest.store, move |tx| {
        if tx.delivery(company, &id)?.is_none() {
            return Err(ApiError::NotFound(format!("delivery {id}")));
        }
        if !tx.retry_delivery(company, &id, now)? {
            return Err(ApiError::Conflict(format!(
                "delivery {id} is being attempted right now"
            )));
        }
        Ok(())
    })
    .await
}
