//! `--delivery-log N`: how fast the dashboard's delivery log answers with N deliveries kept.
//! A fresh zaphook gets four endpoints over its API; N deliveries (two per event, a week of
//! them: 98 % delivered, 1 % failed, 1 % dead, 20 per ticket) are then written straight into
//! its database in one SQL statement per table (no HTTP, no ingest), and the log's pages are
//! read over real HTTP with a signed-in session, one request at a time. Reported: the median
//! and p99 of each page's latency. A measurement, never an assertion.

use std::time::Instant;

use hyper::Method;

use crate::report::thousands;
use crate::server::{ServeOptions, TOKEN, Zaphook};

/// Requests per page measured, after a few to warm the caches.
const WARM_UP: usize = 5;

/// The SQL that fills the log: `{n}` deliveries of `{events}` events from `{t0}` every
/// `{step}` ms, to endpoints `{hook}` to `{hook}+3`.
const SQLITE_FILL: &str = "
WITH RECURSIVE k(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM k WHERE i + 1 < {events})
INSERT INTO events (id, company_id, event_type, ticket_id, payload, created_at)
SELECT printf('evt_bench%09d', i), 1,
       CASE i % 20 WHEN 0 THEN 'ticket.created' WHEN 1 THEN 'message.updated' ELSE 'message.created' END,
       i / 10 + 1,
       printf('{\"event\":\"message.created\",\"messageBody\":\"mensagem número %d%s\",\"ticket\":{\"id\":%d,\"status\":\"open\"},\"contact\":{\"number\":\"55119%08d\",\"name\":\"Contato %d\"},\"padding\":\"%s\"}',
              i, CASE WHEN i % 100000 = 77 THEN ' pedido-raro-' || i ELSE '' END, i / 10 + 1, i / 10, i / 10,
              'Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud exercitation ullamco laboris nisi ut aliquip ex ea commodo consequat. Duis aute irure dolor in reprehenderit in voluptate velit esse cillum dolore eu fugiat nulla pariatur.'),
       {t0} + i * {step}
FROM k;
WITH RECURSIVE k(j) AS (SELECT 0 UNION ALL SELECT j + 1 FROM k WHERE j + 1 < {n})
INSERT INTO deliveries (id, webhook_id, event_id, event_type, ordering_key, state, blocked,
    attempts, lease, next_attempt_at, last_status_code, created_at, delivered_at, company_id,
    ticket_id)
SELECT printf('dlv_bench%09d', j), {hook} + (j / 2 % 2) * 2 + j % 2, printf('evt_bench%09d', j / 2),
       CASE j / 2 % 20 WHEN 0 THEN 'ticket.created' WHEN 1 THEN 'message.updated' ELSE 'message.created' END,
       j / 20 + 1,
       CASE j % 100 WHEN 0 THEN 'dead' WHEN 1 THEN 'failed' ELSE 'delivered' END, 0,
       CASE j % 100 WHEN 0 THEN 10 WHEN 1 THEN 3 ELSE 1 END, 0,
       CASE j % 100 WHEN 1 THEN {t0} + 30 * 86400000 ELSE {t0} + j / 2 * {step} END,
       CASE j % 100 WHEN 0 THEN 500 WHEN 1 THEN 503 ELSE 200 END,
       {t0} + j / 2 * {step},
       CASE WHEN j % 100 > 1 THEN {t0} + j / 2 * {step} + 40 END,
       1, j / 20 + 1
FROM k;";

/// The same for PostgreSQL.
const POSTGRES_FILL: &str = "
INSERT INTO events (id, company_id, event_type, ticket_id, payload, created_at)
SELECT format('evt_bench%s', lpad(i::text, 9, '0')), 1,
       CASE i % 20 WHEN 0 THEN 'ticket.created' WHEN 1 THEN 'message.updated' ELSE 'message.created' END,
       i / 10 + 1,
       format('{\"event\":\"message.created\",\"messageBody\":\"mensagem número %s%s\",\"ticket\":{\"id\":%s,\"status\":\"open\"},\"contact\":{\"number\":\"55119%s\",\"name\":\"Contato %s\"},\"padding\":\"%s\"}',
              i, CASE WHEN i % 100000 = 77 THEN ' pedido-raro-' || i ELSE '' END, i / 10 + 1, lpad((i / 10)::text, 8, '0'), i / 10,
              'Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud exercitation ullamco laboris nisi ut aliquip ex ea commodo consequat. Duis aute irure dolor in reprehenderit in voluptate velit esse cillum dolore eu fugiat nulla pariatur.'),
       {t0}::bigint + i * {step}
FROM generate_series(0, {events} - 1) AS i;
INSERT INTO deliveries (id, webhook_id, event_id, event_type, ordering_key, state, blocked,
    attempts, lease, next_attempt_at, last_status_code, created_at, delivered_at, company_id,
    ticket_id)
SELECT format('dlv_bench%s', lpad(j::text, 9, '0')), {hook} + (j / 2 % 2) * 2 + j % 2,
       format('evt_bench%s', lpad((j / 2)::text, 9, '0')),
       CASE j / 2 % 20 WHEN 0 THEN 'ticket.created' WHEN 1 THEN 'message.updated' ELSE 'message.created' END,
       j / 20 + 1,
       CASE j % 100 WHEN 0 THEN 'dead' WHEN 1 THEN 'failed' ELSE 'delivered' END, false,
       CASE j % 100 WHEN 0 THEN 10 WHEN 1 THEN 3 ELSE 1 END, 0,
       CASE j % 100 WHEN 1 THEN {t0}::bigint + 30::bigint * 86400000 ELSE {t0}::bigint + j / 2 * {step} END,
       CASE j % 100 WHEN 0 THEN 500 WHEN 1 THEN 503 ELSE 200 END,
       {t0}::bigint + j / 2 * {step},
       CASE WHEN j % 100 > 1 THEN {t0}::bigint + j / 2 * {step} + 40 END,
       1, j / 20 + 1
FROM generate_series(0, {n} - 1) AS j;
ANALYZE events; ANALYZE deliveries;";

/// The SQL that finds the key half-way down the log, for the deep page.
const MIDDLE: &str = "SELECT created_at, seq FROM deliveries WHERE company_id = 1
    ORDER BY created_at DESC, seq DESC LIMIT 1 OFFSET {offset}";

fn fill_sql(template: &str, n: u64, t0: i64, step: i64, hook: i64) -> String {
    template
        .replace("{events}", &n.div_ceil(2).to_string())
        .replace("{n}", &n.to_string())
        .replace("{t0}", &t0.to_string())
        .replace("{step}", &step.to_string())
        .replace("{hook}", &hook.to_string())
}

/// Writes the deliveries into the server's database; answers the key half-way down the log.
fn fill(zaphook: &Zaphook, n: u64, hook: i64) -> crate::Result<(i64, i64)> {
    let week = 7 * 86_400_000i64;
    let now = unix_ms();
    let t0 = now - week;
    let step = (week / n.div_ceil(2).max(1) as i64).max(1);
    let middle = MIDDLE.replace("{offset}", &(n / 2).to_string());
    match zaphook.database_url() {
        None => {
            let db = rusqlite::Connection::open(zaphook.data_dir().join("zaphook.db"))?;
            db.busy_timeout(std::time::Duration::from_secs(30))?;
            db.execute_batch(&format!(
                "BEGIN; {} COMMIT;",
                fill_sql(SQLITE_FILL, n, t0, step, hook)
            ))?;
            Ok(db.query_row(&middle, [], |r| Ok((r.get(0)?, r.get(1)?)))?)
        }
        Some(url) => {
            let mut db = postgres::Client::connect(&url, postgres::NoTls)?;
            db.batch_execute(&fill_sql(POSTGRES_FILL, n, t0, step, hook))?;
            let row = db.query_one(middle.as_str(), &[])?;
            Ok((row.get(0), row.get(1)))
        }
    }
}

/// The value `name` is set to by one of `cookies`.
fn cookie(cookies: &[String], name: &str) -> Option<String> {
    cookies.iter().find_map(|c| {
        let pair = c.split(';').next()?;
        let (key, value) = pair.split_once('=')?;
        (key == name).then(|| value.to_string())
    })
}

async fn sign_in(zaphook: &Zaphook) -> crate::Result<String> {
    let (_, cookies, _) = zaphook.browse(Method::GET, "/ui/signin", "", None).await?;
    let csrf = cookie(&cookies, "zaphook_signin").ok_or("no sign-in cookie")?;
    let form = format!("token={TOKEN}&csrf={csrf}");
    let signin = format!("zaphook_signin={csrf}");
    let (status, cookies, body) = zaphook
        .browse(Method::POST, "/ui/signin", &signin, Some(form))
        .await?;
    let session = cookie(&cookies, "zaphook_session")
        .ok_or_else(|| format!("signing in answered {status}: {body}"))?;
    Ok(format!("zaphook_session={session}"))
}

/// Percentile `p` (0–100) of sorted `values`.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Fills a fresh zaphook's log with `n` deliveries, then times each page `samples` times.
pub async fn run(serve: &ServeOptions, n: u64, samples: usize) -> crate::Result<()> {
    let zaphook = Zaphook::start(serve).await?;
    zaphook.create_connection().await?;
    // Nothing listens there: no delivery written below is due, so none is attempted.
    let mut hooks = Vec::new();
    for _ in 0..4 {
        hooks.push(zaphook.create_webhook("http://127.0.0.1:9/hook").await?);
    }
    let started = Instant::now();
    // The blocking clients cannot run on the runtime's threads.
    let (middle_at, middle_seq) = std::thread::scope(|scope| {
        scope
            .spawn(|| fill(&zaphook, n, hooks[0]).map_err(|e| e.to_string()))
            .join()
            .unwrap_or_else(|_| Err("the fill panicked".into()))
    })?;
    println!(
        "filled {} deliveries ({} events) in {:.1} s",
        thousands(n as f64),
        thousands(n.div_ceil(2) as f64),
        started.elapsed().as_secs_f64()
    );
    if let Some(db) = Some(zaphook.data_dir().join("zaphook.db")).filter(|p| p.is_file()) {
        let mib = std::fs::metadata(&db).map(|m| m.len()).unwrap_or_default() as f64 / 1048576.0;
        println!("zaphook.db: {mib:.0} MiB");
    }
    let session = sign_in(&zaphook).await?;
    let day_from = unix_ms() - 4 * 86_400_000;
    let iso = |ms: i64| {
        let secs = ms / 1000;
        let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
        let (y, m, d) = civil(days);
        format!(
            "{y:04}-{m:02}-{d:02}T{:02}%3A{:02}%3A{:02}",
            rest / 3600,
            rest % 3600 / 60,
            rest % 60
        )
    };
    let deep = format!("before={middle_at}.{middle_seq}");
    let pages = [
        ("first page", "/ui/deliveries".to_string()),
        // Every dead delivery is the first endpoint's (the second has none).
        (
            "endpoint + status=dead",
            format!("/ui/deliveries?endpoint={}&status=dead", hooks[0]),
        ),
        (
            "endpoint + status=dead, none there",
            format!("/ui/deliveries?endpoint={}&status=dead", hooks[1]),
        ),
        ("one ticket", "/ui/deliveries?ticket=12345".to_string()),
        (
            "one day (from/until)",
            format!(
                "/ui/deliveries?from={}&to={}",
                iso(day_from),
                iso(day_from + 86_400_000)
            ),
        ),
        (
            "deep page (cursor half-way)",
            format!("/ui/deliveries?{deep}"),
        ),
        (
            "deep page, one endpoint",
            format!("/ui/deliveries?endpoint={}&{deep}", hooks[2]),
        ),
        (
            "text, common (fills at once)",
            "/ui/deliveries?text=Contato+4".to_string(),
        ),
        (
            "text, rare (5,000 read, then 'search on')",
            "/ui/deliveries?text=pedido-raro".to_string(),
        ),
    ];
    println!(
        "\n{:<44} {:>10} {:>10} {:>6}  note",
        "page", "median ms", "p99 ms", "rows"
    );
    for (name, path) in pages {
        let mut times = Vec::with_capacity(samples);
        let mut rows = 0;
        let mut bounded = false;
        for i in 0..WARM_UP + samples {
            let at = Instant::now();
            let (status, _, body) = zaphook.browse(Method::GET, &path, &session, None).await?;
            let ms = at.elapsed().as_secs_f64() * 1000.0;
            if status != 200 {
                return Err(format!("{path} answered {status}: {body}").into());
            }
            if i >= WARM_UP {
                times.push(ms);
            }
            rows = body.matches("<tr id=\"dlv_").count();
            bounded = body.contains("id=\"searched\"");
        }
        times.sort_by(|a, b| a.total_cmp(b));
        println!(
            "{name:<44} {:>10.1} {:>10.1} {rows:>6}  {}",
            percentile(&times, 50.0),
            percentile(&times, 99.0),
            if bounded {
                "searched back, 'continue' shown"
            } else {
                ""
            }
        );
    }
    zaphook.stop().await;
    Ok(())
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// Year, month and day of a count of days since 1970-01-01 (Howard Hinnant's algorithm).
fn civil(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_become_dates() {
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(20_454), (2026, 1, 1));
        assert_eq!(civil(-1), (1969, 12, 31));
    }
}
