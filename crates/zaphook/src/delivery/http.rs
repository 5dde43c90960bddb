//! The HTTP side of a delivery attempt: one signed POST with the contract's headers, no
//! redirects, explicit timeouts, and at most 4 KiB of the answer read.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::domain::EventType;
use crate::store::Target;

use super::sign::signature_header;
use super::ssrf;

/// Who the requests say they come from.
const USER_AGENT: &str = concat!("zaphook/", env!("CARGO_PKG_VERSION"));

/// Most bytes of a response body kept in the delivery log.
pub const RESPONSE_EXCERPT: usize = 4096;

#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub targets: ssrf::TargetPolicy,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(15),
            targets: ssrf::TargetPolicy::default(),
        }
    }
}

/// What one attempt produced.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub status: Option<u16>,
    pub latency_ms: i64,
    pub error: Option<String>,
    pub body: Option<String>,
    pub retry_after: Option<Duration>,
    /// The request's headers, one `name: value` a line, as the delivery log keeps them: the
    /// value of `X-N8N-API-KEY` (a secret) is not kept.
    pub request_headers: Option<String>,
}

impl Outcome {
    pub fn succeeded(&self) -> bool {
        self.error.is_none() && self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

#[derive(Clone)]
pub struct HttpSender {
    client: reqwest::Client,
    targets: ssrf::TargetPolicy,
    request_timeout: Duration,
}

impl HttpSender {
    pub fn new(config: &HttpConfig) -> Result<Self, reqwest::Error> {
        let resolver = ssrf::GuardedResolver {
            policy: config.targets.clone(),
            lookup: ssrf::system_lookup(),
        };
        let builder = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(30))
            .dns_resolver(Arc::new(resolver));
        Ok(HttpSender {
            client: builder.build()?,
            targets: config.targets.clone(),
            request_timeout: config.request_timeout,
        })
    }

    /// How long one attempt may take at most.
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// The addresses this sender may reach.
    pub fn targets(&self) -> &ssrf::TargetPolicy {
        &self.targets
    }

    /// POSTs `payload` as event `event_id` to the target, signed for `timestamp` (Unix seconds).
    pub async fn post(
        &self,
        target: &Target,
        event_id: &str,
        event_type: EventType,
        payload: &str,
        timestamp: i64,
    ) -> Outcome {
        let started = Instant::now();
        let mut outcome = self
            .try_post(target, event_id, event_type, payload, timestamp)
            .await
            .unwrap_or_else(|error| Outcome {
                error: Some(error),
                ..Outcome::default()
            });
        outcome.latency_ms = started.elapsed().as_millis() as i64;
        outcome
    }

    async fn try_post(
        &self,
        target: &Target,
        event_id: &str,
        event_type: EventType,
        payload: &str,
        timestamp: i64,
    ) -> Result<Outcome, String> {
        let url = reqwest::Url::parse(&target.url).map_err(|e| format!("invalid url: {e}"))?;
        self.targets.check_literal(&url)?;
        let signature = signature_header(
            &target.secret,
            target.previous_secret.as_deref(),
            event_id,
            timestamp,
            payload,
        );
        let timestamp = timestamp.to_string();
        let mut headers = vec![
            ("user-agent", USER_AGENT),
            ("content-type", "application/json"),
            ("webhook-id", event_id),
            ("webhook-timestamp", timestamp.as_str()),
            ("webhook-signature", signature.as_str()),
            ("x-zaphook-event", event_type.as_str()),
        ];
        if let Some(token) = &target.token {
            headers.push((target.format.token_header(), token));
        }
        let kept = headers
            .iter()
            .map(|(name, value)| match *name {
                "X-N8N-API-KEY" | "authorization" => {
                    format!("{name}: (the endpoint's token, not kept)")
                }
                _ => format!("{name}: {value}"),
            })
            .collect::<Vec<_>>()
            .join("\n");
        let mut request = self.client.post(url).body(payload.to_string());
        // The client adds the user agent itself (and Host, Content-Length, Accept).
        for (name, value) in headers.iter().skip(1) {
            request = request.header(*name, *value);
        }
        let mut response = match request.send().await {
            Ok(response) => response,
            Err(e) => {
                return Ok(Outcome {
                    error: Some(describe(e)),
                    request_headers: Some(kept),
                    ..Outcome::default()
                });
            }
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, time::OffsetDateTime::now_utc()));
        let mut body = Vec::new();
        let mut error = None;
        while body.len() < RESPONSE_EXCERPT {
            match response.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                Ok(None) => break,
                Err(e) => {
                    error = Some(describe(e));
                    break;
                }
            }
        }
        body.truncate(RESPONSE_EXCERPT);
        let body = (!body.is_empty()).then(|| String::from_utf8_lossy(&body).into_owned());
        // An answer that broke off is a failure even after a 2xx status line: we cannot know
        // the receiver finished with the event, and a duplicate is safer than a loss.
        Ok(Outcome {
            status: Some(status),
            latency_ms: 0,
            error,
            body,
            retry_after,
            request_headers: Some(kept),
        })
    }
}

/// A `Retry-After` value: delay seconds, or an HTTP date (IMF-fixdate) relative to `now`.
pub fn parse_retry_after(value: &str, now: time::OffsetDateTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let at = time::PrimitiveDateTime::parse(value, format)
        .ok()?
        .assume_utc();
    Some(Duration::try_from(at - now).unwrap_or(Duration::ZERO))
}

/// A short, stable description of a transport error: its kind, then every cause.
pub(crate) fn describe(e: reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else if e.is_body() || e.is_decode() {
        "body"
    } else if e.is_request() {
        "request"
    } else {
        "transport"
    };
    let mut text = format!("{kind}: {e}");
    let mut source = std::error::Error::source(&e);
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_seconds_or_an_http_date() {
        let now = time::macros::datetime!(2026-11-27 12:00:00 UTC);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Fri, 27 Nov 2026 12:01:30 GMT", now),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            parse_retry_after("Fri, 27 Nov 2026 11:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }
}
