//! The `soak` scenario: a long steady load to a receiver that fails a fifth of the requests,
//! during which (and while the retries drain after it) zaphook is sampled at a fixed
//! interval: how far its deliveries are (its `/metrics`) and what it holds (RSS and open file
//! descriptors from /proc, the sizes of its SQLite database and WAL); the table the samples
//! make, the figures derived from them, and at the end where the database's bytes went: to
//! what is kept for good, or to what the retention prunes.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use serde::Serialize;
use tokio::time::Instant;

use crate::inbound_path;
use crate::load::{self, LoadResult, LoadSpec, Payload};
use crate::pass::analyze;
use crate::receiver::{Flaky, Receiver};
use crate::report::{Row, ScenarioReport, fmt_ratio, markdown, mib, rate_cell, ratio, thousands};
use crate::scenarios::{Bench, check_waited, finish, logged};
use crate::server::{self, ServeOptions, Zaphook};

/// The retry schedule zaphook runs with: short, so retries happen all through the run; three
/// steps, as many failures in a row as the receiver allows a message.
const SCHEDULE_MS: [u64; 3] = [1_000, 5_000, 30_000];

/// The share of requests the receiver answers 500, and the seed that picks them.
const FAILURES: f64 = 0.2;
const SEED: u64 = 20_261_203;

/// How long the scenario waits after its load for the retries to deliver the rest: several
/// whole schedules (36 s, more with the jitter), since a ticket's deliveries go in order.
const DRAIN: Duration = Duration::from_secs(300);

/// The tables whose rows the retention prunes (`zaphook serve --retention-days`): a
/// delivery's share of the disk, with their indexes. Every other table is kept for good.
const PRUNED: [&str; 3] = ["deliveries", "attempts", "events"];

impl Bench {
    /// A long steady run (`soak_minutes` at `soak_rate` messages/s over the usual contacts)
    /// to a receiver that answers 500 to a fifth of the requests, with a short retry schedule
    /// so retries happen all through it: zaphook sampled every `soak_sample_secs` while the
    /// load runs and the retries drain, to show whether what it holds stays flat, and every
    /// accepted message checked to have arrived once.
    pub(crate) async fn soak(&mut self) -> crate::Result<ScenarioReport> {
        if self.serve.database_url.is_some() {
            return Err(
                "soak measures the SQLite database in zaphook's data directory: run it without --database-url"
                    .into(),
            );
        }
        let (rate, minutes) = (self.sizes.soak_rate, self.sizes.soak_minutes);
        let every = Duration::from_secs(self.sizes.soak_sample_secs);
        let serve = ServeOptions {
            retry_schedule_ms: Some(SCHEDULE_MS.to_vec()),
            ..self.serve.clone()
        };
        let flaky = Flaky {
            share: FAILURES,
            seed: SEED,
            max_failures: SCHEDULE_MS.len() as u32,
        };
        let receiver = Receiver::bind_flaky(flaky).await?;
        let zaphook = Zaphook::start(&serve).await?;
        let connection = zaphook.create_connection().await?;
        zaphook.create_webhook(&receiver.url(0)).await?;
        let before = zaphook.usage()?;
        let me_before = server::usage(std::process::id()).unwrap_or_default();
        let spec = LoadSpec {
            addrs: zaphook.addrs(),
            path: inbound_path(connection),
            token: Some(server::TOKEN.to_string()),
            count: (rate * minutes * 60.0).round() as u64,
            rate: Some(rate),
            connections: self.shape.connections,
            contacts: self.shape.contacts,
            payload: Payload::Sandbox,
            progress: None,
        };
        let watched = watch(&zaphook, &receiver, spec, every, DRAIN).await;
        let watched = match watched {
            Ok(watched) => watched,
            Err(e) => {
                zaphook.stop().await;
                return Err(e);
            }
        };
        let arrivals = receiver.arrivals();
        let pass = analyze(&watched.load, &arrivals, 1);
        let zap = finish(zaphook, before, me_before, Ok(pass)).await?;
        let samples = &watched.samples;
        let last = *samples.last().expect("watch takes a last sample");
        let trend = trend(samples, watched.stopped_s);
        let footprint = &watched.footprint;
        let (failed, requests) = (receiver.failed(), receiver.failed() + arrivals.len() as u64);
        let failed_share = ratio(failed as f64, requests as f64).unwrap_or(0.0);

        let mut report = ScenarioReport::new("soak");
        let metric = format!(
            "delivered of accepted, {minutes} min at {}/s, {:.0} % answered 500",
            thousands(rate),
            FAILURES * 100.0
        );
        let mut row = Row::new("soak", &metric).with_usage(&zap);
        row.zaphook = format!(
            "{} / {}",
            thousands(zap.pass.delivered as f64),
            thousands(zap.pass.acked as f64)
        );
        row.goal = "all, once".into();
        row.met = Some(zap.pass.missing() == 0 && zap.pass.duplicates == 0 && last.dead == 0);
        report.rows.push(row);
        let mut row = Row::new("soak", "accepted/s (paced)");
        row.zaphook = rate_cell(zap.pass.acked_per_s);
        row.baseline = rate_cell(rate);
        row.ratio = fmt_ratio(ratio(zap.pass.acked_per_s, rate));
        report.rows.push(row);
        let mut row = Row::new("soak", "requests the receiver answered 500");
        row.zaphook = format!(
            "{:.1} % ({} of {})",
            failed_share * 100.0,
            thousands(failed as f64),
            thousands(requests as f64)
        );
        report.rows.push(row);
        if let Some(t) = &trend {
            let [first, loaded, drained] = t.rss_mib;
            let mut row = Row::new(
                "soak",
                "RSS MiB: first sample → last under load → after the drain",
            );
            row.zaphook = format!("{first:.1} → {loaded:.1} → {drained:.1}");
            report.rows.push(row);
            let [first, loaded, drained] = t.fds;
            let mut row = Row::new(
                "soak",
                "open file descriptors: first sample → last under load → after the drain",
            );
            row.zaphook = format!("{first} → {loaded} → {drained}");
            report.rows.push(row);
            let mut row = Row::new("soak", "WAL MiB, largest sample");
            row.zaphook = format!("{:.1}", t.wal_mib_max);
            report.rows.push(row);
            let mut row = Row::new(
                "soak",
                "zaphook.db growth, first → last sample: bytes per message / per delivery done",
            );
            let bytes = |b: Option<f64>| b.map_or("—".into(), thousands);
            row.zaphook = format!(
                "{} / {}",
                bytes(t.db_bytes_per_message),
                bytes(t.db_bytes_per_delivery)
            );
            report.rows.push(row);
        }
        let mut row = Row::new(
            "soak",
            "database at the end: bytes kept for good per message / pruned with the retention per delivery",
        );
        let per = |b: u64, n: u64| ratio(b as f64, n as f64).map_or("—".into(), thousands);
        row.zaphook = format!(
            "{} / {}",
            per(footprint.kept_bytes, last.accepted),
            per(footprint.pruned_bytes, last.delivered)
        );
        report.rows.push(row);
        report.tables.push(table(samples));

        let schedule: Vec<String> = SCHEDULE_MS.iter().map(u64::to_string).collect();
        report.notes.push(format!(
            "soak: zaphook ran with --retry-schedule-ms {} (±20 % jitter); the receiver answers 500 to a request with probability {FAILURES} (seed {SEED}), and to no message more than {} times, so none goes dead; zaphook counted {} failed attempts and {} dead deliveries",
            schedule.join(","),
            SCHEDULE_MS.len(),
            thousands(last.failed_attempts as f64),
            thousands(last.dead as f64),
        ));
        report.notes.push(format!(
            "soak: the load stopped at {:.0} s; the last sample is at {:.0} s, once {} of {} webhooks had arrived (the wait stops at {} s after the load); \"pending\" is accepted − delivered at the sample, \"pending (gauge)\" zaphook's zaphook_endpoint_pending, refreshed every 30 s",
            watched.stopped_s,
            watched.drained_s,
            thousands(zap.pass.delivered as f64),
            thousands(zap.pass.acked as f64),
            DRAIN.as_secs(),
        ));
        let in_mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
        // The tables of a tenth of a MiB or more; the other dozen hold the set-up.
        let (large, small): (Vec<_>, Vec<_>) = footprint
            .tables
            .iter()
            .partition(|(_, b)| in_mib(*b) >= 0.1);
        let mut tables: Vec<String> = large
            .iter()
            .map(|(name, bytes)| format!("{name} {:.1}", in_mib(*bytes)))
            .collect();
        let rest: u64 = small.iter().map(|(_, b)| b).sum();
        tables.push(format!("{} others {:.2}", small.len(), in_mib(rest)));
        report.notes.push(format!(
            "soak: the database at the end by SQLite's dbstat, MiB with indexes: {}; the retention prunes deliveries, attempts and events, the rest is kept for good",
            tables.join(", ")
        ));
        let waited = format!("not there {} s after the load stopped", DRAIN.as_secs());
        check_waited(&mut report, "zaphook", &zap.pass, &waited);
        if last.dead > 0 {
            report.notes.push(format!(
                "soak: {} deliveries went DEAD",
                thousands(last.dead as f64)
            ));
        }
        logged(&mut report, "zaphook", &zap);
        report.figure("zaphook", &zap);
        report.figure("samples", samples);
        report.figure("trend", trend);
        report.figure("footprint", footprint);
        report.figure("receiver_failed", failed);
        report.figure("receiver_requests", requests);
        report.figure("flaky", flaky);
        report.figure("retry_schedule_ms", SCHEDULE_MS);
        report.figure("load_stopped_s", watched.stopped_s);
        report.figure("drained_s", watched.drained_s);
        Ok(report)
    }
}

/// What a watched run produced.
pub struct Watched {
    pub load: LoadResult,
    /// Seconds from the start to the last answer of the load, and to the end of the wait for
    /// the webhooks.
    pub stopped_s: f64,
    pub drained_s: f64,
    /// Every `every` while the load ran and the retries drained, then one at the end.
    pub samples: Vec<Sample>,
    /// The database at the end.
    pub footprint: Footprint,
}

/// Runs `spec` (its progress counter is set here) against `zaphook`, sampling it every
/// `every` (and showing each sample on stderr: a long run should not look hung), then waits
/// until every accepted message reached `receiver` or `drain` has passed since the load
/// stopped, and takes the last sample.
pub async fn watch(
    zaphook: &Zaphook,
    receiver: &Receiver,
    mut spec: LoadSpec,
    every: Duration,
    drain: Duration,
) -> crate::Result<Watched> {
    let accepted = Arc::new(AtomicU64::new(0));
    spec.progress = Some(Arc::clone(&accepted));
    let start = Instant::now();
    let elapsed = || start.elapsed().as_secs_f64();
    let run = async {
        let load = load::run(spec).await?;
        let stopped_s = elapsed();
        receiver
            .wait_until(load.acked(), Instant::now() + drain)
            .await;
        Ok::<_, crate::Error>((load, stopped_s))
    };
    tokio::pin!(run);
    let mut tick = tokio::time::interval_at(start + every, every);
    let mut samples = Vec::new();
    eprintln!("soak: {}", COLUMNS.join(" | "));
    let (load, stopped_s) = loop {
        tokio::select! {
            done = &mut run => break done?,
            _ = tick.tick() => {
                let s = sample(zaphook, elapsed(), accepted.load(Ordering::Relaxed)).await?;
                eprintln!("soak: {}", cells(&s).join(" | "));
                samples.push(s);
            }
        }
    };
    let drained_s = elapsed();
    samples.push(sample(zaphook, drained_s, load.acked()).await?);
    let footprint = Footprint::read(&zaphook.data_dir().join("zaphook.db"))?;
    Ok(Watched {
        load,
        stopped_s,
        drained_s,
        samples,
        footprint,
    })
}

/// One look at zaphook during the run.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Sample {
    /// Seconds since the load started.
    pub elapsed_s: f64,
    /// Messages the API answered 2xx so far (counted by the load generator).
    pub accepted: u64,
    /// Deliveries done: `zaphook_delivery_attempts_total{outcome="delivered"}`.
    pub delivered: u64,
    /// Attempts that failed and were scheduled again: `outcome="failed"`.
    pub failed_attempts: u64,
    /// Deliveries gone dead after their last attempt: `outcome="dead"` (none should).
    pub dead: u64,
    /// Unfinished deliveries by zaphook's `zaphook_endpoint_pending` gauge, which its upkeep
    /// refreshes every 30 s (so it lags).
    pub pending_gauge: u64,
    /// Resident set size now (VmRSS), KiB.
    pub rss_kib: u64,
    pub fds: u64,
    /// `zaphook.db-wal`, bytes.
    pub wal_bytes: u64,
    /// `zaphook.db`, bytes.
    pub db_bytes: u64,
}

impl Sample {
    /// Deliveries accepted and not done yet (one endpoint: one delivery per message).
    pub fn pending(&self) -> u64 {
        self.accepted.saturating_sub(self.delivered)
    }
}

/// Takes a sample of `zaphook` (one process, on SQLite) `elapsed_s` into the run, when
/// `accepted` messages have been accepted.
pub async fn sample(zaphook: &Zaphook, elapsed_s: f64, accepted: u64) -> crate::Result<Sample> {
    let metrics = zaphook.metrics().await?;
    let attempts = |outcome: &str| {
        let label = format!("outcome=\"{outcome}\"");
        metric_sum(&metrics, "zaphook_delivery_attempts_total", &label) as u64
    };
    let usage = zaphook.usage()?;
    let dir = zaphook.data_dir();
    // The WAL is absent only before the first write.
    let size = |file: &str| std::fs::metadata(dir.join(file)).map_or(0, |m| m.len());
    Ok(Sample {
        elapsed_s,
        accepted,
        delivered: attempts("delivered"),
        failed_attempts: attempts("failed"),
        dead: attempts("dead"),
        pending_gauge: metric_sum(&metrics, "zaphook_endpoint_pending", "") as u64,
        rss_kib: usage.rss_kib,
        fds: zaphook.open_fds()?,
        wal_bytes: size("zaphook.db-wal"),
        db_bytes: size("zaphook.db"),
    })
}

/// The sum of the samples of metric `name` in Prometheus text whose labels include `label`
/// (e.g. `outcome="delivered"`; every sample of the metric when empty).
pub fn metric_sum(text: &str, name: &str, label: &str) -> f64 {
    let mut sum = 0.0;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let (labels, value) = match rest.strip_prefix('{') {
            Some(labelled) => match labelled.split_once('}') {
                Some(split) => split,
                None => continue,
            },
            // A longer name that starts with this one has neither.
            None if rest.starts_with(' ') => ("", rest),
            None => continue,
        };
        if !label.is_empty() && !labels.split(',').any(|l| l == label) {
            continue;
        }
        if let Some(v) = value
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
        {
            sum += v;
        }
    }
    sum
}

const COLUMNS: [&str; 10] = [
    "elapsed s",
    "accepted",
    "delivered",
    "pending",
    "pending (gauge)",
    "failed attempts",
    "RSS MiB",
    "open fds",
    "WAL MiB",
    "DB MiB",
];

/// The samples as a Markdown table.
pub fn table(samples: &[Sample]) -> String {
    let body: Vec<Vec<String>> = samples.iter().map(|s| cells(s).to_vec()).collect();
    markdown(&COLUMNS, &body)
}

/// The cells of `sample`'s line of the table.
pub fn cells(s: &Sample) -> [String; 10] {
    let count = |n: u64| thousands(n as f64);
    let bytes_mib = |b: u64| format!("{:.1}", b as f64 / (1024.0 * 1024.0));
    [
        format!("{:.0}", s.elapsed_s),
        count(s.accepted),
        count(s.delivered),
        count(s.pending()),
        count(s.pending_gauge),
        count(s.failed_attempts),
        format!("{:.1}", mib(s.rss_kib)),
        s.fds.to_string(),
        bytes_mib(s.wal_bytes),
        bytes_mib(s.db_bytes),
    ]
}

/// What the samples show.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Trend {
    /// Growth of `zaphook.db` from the first sample to the last (every delivery finished),
    /// per message accepted and per delivery done in between.
    pub db_bytes_per_message: Option<f64>,
    pub db_bytes_per_delivery: Option<f64>,
    /// RSS and open file descriptors at the first sample, at the last one taken under the
    /// full load, and at the last one (after the drain, the load's connections closed).
    pub rss_mib: [f64; 3],
    pub fds: [u64; 3],
    /// The largest WAL of any sample.
    pub wal_mib_max: f64,
}

/// The trend of `samples` of a load that gave its last answer at `stopped_s`; `None` when
/// there are fewer than two.
pub fn trend(samples: &[Sample], stopped_s: f64) -> Option<Trend> {
    let (first, last) = match samples {
        [first, .., last] => (first, last),
        _ => return None,
    };
    // The load's connections close one by one in its last fraction of a second.
    let loaded = samples
        .iter()
        .rfind(|s| s.elapsed_s + 1.0 < stopped_s)
        .unwrap_or(first);
    let growth = last.db_bytes.saturating_sub(first.db_bytes) as f64;
    let per = |n: u64| (n > 0).then(|| growth / n as f64);
    let wal_max = samples.iter().map(|s| s.wal_bytes).max().unwrap_or(0);
    Some(Trend {
        db_bytes_per_message: per(last.accepted.saturating_sub(first.accepted)),
        db_bytes_per_delivery: per(last.delivered.saturating_sub(first.delivered)),
        rss_mib: [first, loaded, last].map(|s| mib(s.rss_kib)),
        fds: [first, loaded, last].map(|s| s.fds),
        wal_mib_max: wal_max as f64 / (1024.0 * 1024.0),
    })
}

/// Where the database's pages are, by SQLite's `dbstat`: the bytes of each table with its
/// indexes, and their sums on either side of the retention.
#[derive(Debug, Clone, Serialize)]
pub struct Footprint {
    /// `(table, bytes)`, largest first.
    pub tables: Vec<(String, u64)>,
    /// Bytes of [`PRUNED`]: what the retention deletes.
    pub pruned_bytes: u64,
    /// Bytes of the other tables (messages, tickets, contacts, …): kept for good.
    pub kept_bytes: u64,
}

impl Footprint {
    /// Reads the database at `path` (read-only; zaphook may still run on it).
    pub fn read(path: &Path) -> crate::Result<Self> {
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        // An index is counted with its table; the schema table lists neither itself nor
        // its own pages, so those go under their own name.
        let mut statement = conn.prepare(
            "SELECT coalesce(m.tbl_name, d.name), sum(d.pgsize) FROM dbstat d
             LEFT JOIN sqlite_schema m ON m.name = d.name
             GROUP BY 1 ORDER BY 2 DESC",
        )?;
        let tables = statement
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u64>(1)?)))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::of(tables))
    }

    fn of(tables: Vec<(String, u64)>) -> Self {
        let (pruned, kept): (Vec<_>, Vec<_>) = tables
            .iter()
            .partition(|(name, _)| PRUNED.contains(&name.as_str()));
        let sum = |part: Vec<&(String, u64)>| part.iter().map(|(_, b)| b).sum();
        Footprint {
            pruned_bytes: sum(pruned),
            kept_bytes: sum(kept),
            tables,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const METRICS: &str = "\
# TYPE zaphook_delivery_attempts_total counter
zaphook_delivery_attempts_total{outcome=\"delivered\",event_type=\"message.created\"} 1200
zaphook_delivery_attempts_total{outcome=\"failed\",event_type=\"message.created\"} 300
zaphook_delivery_attempts_total{outcome=\"delivered\",event_type=\"ticket.updated\"} 5
zaphook_delivery_attempts_total_extra 99
# TYPE zaphook_endpoint_pending gauge
zaphook_endpoint_pending{webhook=\"1\"} 7
zaphook_endpoint_pending{webhook=\"2\"} 3
zaphook_endpoints_disabled 0
";

    #[test]
    fn sums_a_metric_over_its_matching_labels() {
        let attempts = "zaphook_delivery_attempts_total";
        assert_eq!(
            metric_sum(METRICS, attempts, "outcome=\"delivered\""),
            1205.0
        );
        assert_eq!(metric_sum(METRICS, attempts, "outcome=\"failed\""), 300.0);
        assert_eq!(metric_sum(METRICS, attempts, "outcome=\"dead\""), 0.0);
        assert_eq!(metric_sum(METRICS, attempts, ""), 1505.0);
        assert_eq!(metric_sum(METRICS, "zaphook_endpoint_pending", ""), 10.0);
        assert_eq!(metric_sum(METRICS, "zaphook_endpoints_disabled", ""), 0.0);
        assert_eq!(metric_sum(METRICS, "zaphook_endpoint", ""), 0.0);
    }

    fn at(elapsed_s: f64, accepted: u64, delivered: u64, db_mib: u64, fds: u64) -> Sample {
        Sample {
            elapsed_s,
            accepted,
            delivered,
            failed_attempts: 0,
            dead: 0,
            pending_gauge: 0,
            rss_kib: (40 + db_mib) * 1024,
            fds,
            wal_bytes: (db_mib % 5) << 20,
            db_bytes: db_mib << 20,
        }
    }

    #[test]
    fn trend_runs_from_the_first_sample_to_the_last() {
        let samples = [
            at(30.0, 1_024, 1_000, 4, 90),
            at(60.0, 2_048, 2_000, 6, 91),
            at(89.5, 3_072, 3_000, 7, 85),
            at(120.0, 3_072, 3_072, 8, 20),
        ];
        let t = trend(&samples, 90.0).expect("four samples");
        // 4 MiB over 2,048 messages, and over 2,072 deliveries.
        assert_eq!(t.db_bytes_per_message, Some(2048.0));
        assert_eq!(t.db_bytes_per_delivery, Some(4.0 * 1_048_576.0 / 2_072.0));
        assert_eq!(t.wal_mib_max, 4.0);
        // The sample half a second before the load's end is not under the full load.
        assert_eq!(t.rss_mib, [44.0, 46.0, 48.0]);
        assert_eq!(t.fds, [90, 91, 20]);
        assert_eq!(trend(&samples, 10.0).expect("samples").fds, [90, 90, 20]);
        assert!(trend(&samples[..1], 90.0).is_none());
        assert_eq!(samples[1].pending(), 48);
    }

    #[test]
    fn table_has_a_line_per_sample() {
        let text = table(&[at(30.0, 1_500, 1_400, 3, 1), at(60.0, 3_000, 3_000, 5, 1)]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[2].starts_with("| 30 "), "{}", lines[2]);
        assert!(lines[2].contains("| 1,500 "), "{}", lines[2]);
        assert!(lines[3].contains("| 5.0 "), "{}", lines[3]);
    }

    #[test]
    fn footprint_splits_at_the_retention() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("zaphook.db");
        let conn = Connection::open(&path).expect("create");
        conn.execute_batch(
            "CREATE TABLE messages (id INTEGER PRIMARY KEY, body TEXT);
             CREATE TABLE deliveries (seq INTEGER PRIMARY KEY, body TEXT);
             CREATE INDEX deliveries_body ON deliveries (body);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100)
             INSERT INTO messages (body) SELECT hex(randomblob(500)) FROM n;
             INSERT INTO deliveries (body) SELECT body FROM messages;",
        )
        .expect("fill");
        drop(conn);
        let footprint = Footprint::read(&path).expect("dbstat");
        let bytes = |name: &str| {
            footprint
                .tables
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, b)| *b)
        };
        let (messages, deliveries) = (bytes("messages").unwrap(), bytes("deliveries").unwrap());
        // 100 rows of 1,000 bytes each; the index holds the bodies again.
        assert!(messages >= 100_000, "{messages}");
        assert!(deliveries >= 2 * 100_000, "{deliveries}");
        assert!(bytes("deliveries_body").is_none(), "counted with its table");
        assert_eq!(footprint.pruned_bytes, deliveries);
        assert_eq!(
            footprint.kept_bytes,
            footprint.tables.iter().map(|(_, b)| b).sum::<u64>() - deliveries
        );
    }
}
