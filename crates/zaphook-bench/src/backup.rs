//! The `backup` scenario: what `zaphook backup` (a `VACUUM INTO` copy of the live SQLite
//! database in one read transaction, checked, flushed and renamed) costs a server that runs.
//! The `throughput` pass, bare and again with backups taken back to back all through it,
//! alternating; then single backups of a database filled to `backup_db_mib`, taken with the
//! server idle and under a steady paced load. Every backup file written is opened afterwards
//! and checked to be a whole database that holds messages.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use serde::Serialize;
use tokio::process::Command;
use tokio::time::Instant;

use crate::load::{self, LoadResult, LoadSpec, Payload};
use crate::pass::{STALL, Target, drive};
use crate::receiver::Receiver;
use crate::report::{Latency, Row, ScenarioReport, fmt_ratio, median, rate_cell, ratio, thousands};
use crate::scenarios::{Bench, ZaphookPass, check, finish, logged, per_run, rates_row};
use crate::server::{self, Zaphook, flags_only};
use crate::soak::metric_sum;
use crate::{inbound_path, now_us};

const MIB: f64 = 1024.0 * 1024.0;

/// How long the paced load runs before a backup beside it starts, so the messages sent
/// outside the backup show what the load sees without one.
const LEAD: Duration = Duration::from_secs(2);

/// How often the WAL's size is read during a pass: a backup's read transaction keeps the
/// server's checkpoints from going past it, so the WAL may grow while one runs.
const WAL_EVERY: Duration = Duration::from_millis(50);

impl Bench {
    /// `repeat` throughput passes without backups and as many with them, alternating so both
    /// see the same machine, the median of each; then the single backups of a larger
    /// database.
    pub(crate) async fn backup(&mut self) -> crate::Result<ScenarioReport> {
        if self.serve.database_url.is_some() {
            return Err(
                "backup measures `zaphook backup` of the SQLite database in zaphook's data directory: run it without --database-url"
                    .into(),
            );
        }
        let count = self.sizes.throughput;
        let (mut bare, mut backed) = (Vec::new(), Vec::new());
        for _ in 0..self.repeat {
            bare.push(self.backed_up_pass(count, false).await?);
            backed.push(self.backed_up_pass(count, true).await?);
        }
        let size = self.size_point().await?;

        let mut report = ScenarioReport::new("backup");
        for (who, runs) in [("without backups", &bare), ("with backups", &backed)] {
            for (i, run) in runs.iter().enumerate() {
                let who = if runs.len() > 1 {
                    format!("{who}, run {}", i + 1)
                } else {
                    who.to_string()
                };
                check(&mut report, &who, &run.zap.pass);
                logged(&mut report, &who, &run.zap);
            }
        }
        let by_rate = |r: &Run| r.zap.pass.delivered_per_s;
        let (without, without_runs) = median(&bare, by_rate);
        let (with, with_runs) = median(&backed, by_rate);
        report.rows.push(
            rates_row(
                "backup",
                "delivered/s, backups back to back all through the pass (baseline: the same pass without)",
                with.zap.pass.delivered_per_s,
                without.zap.pass.delivered_per_s,
            )
            .with_usage(&with.zap),
        );
        report.rows.push(rates_row(
            "backup",
            "accepted/s (202s), same passes",
            with.zap.pass.acked_per_s,
            without.zap.pass.acked_per_s,
        ));
        let mut row = Row::new(
            "backup",
            "backups completed in the pass; median / max seconds each",
        );
        let secs: Vec<f64> = with.taken.iter().map(|t| t.secs).collect();
        row.zaphook = match (middle(&secs), secs.iter().copied().reduce(f64::max)) {
            (Some(mid), Some(max)) => format!("{}; {mid:.2} / {max:.2} s", with.taken.len()),
            _ => "none".into(),
        };
        report.rows.push(row);
        let mut row = Row::new(
            "backup",
            "CPU s of the pass: the backup processes (baseline: zaphook's, same pass)",
        );
        row.zaphook = format!("{:.2}", with.backup_cpu_s);
        row.baseline = format!("{:.2}", with.zap.cpu_s);
        row.ratio = fmt_ratio(ratio(with.backup_cpu_s, with.zap.cpu_s));
        report.rows.push(row);
        let mut row = Row::new(
            "backup",
            "backup MiB, first → last of the pass; messages in the last",
        );
        if let (Some(first), Some(last)) = (with.taken.first(), with.taken.last()) {
            row.zaphook = format!(
                "{:.1} → {:.1}; {}",
                first.bytes as f64 / MIB,
                last.bytes as f64 / MIB,
                thousands(last.messages as f64)
            );
        }
        report.rows.push(row);
        let mut row = Row::new(
            "backup",
            "WAL MiB, largest sample of the pass (baseline: without backups)",
        );
        row.zaphook = format!("{:.1}", with.wal_max_bytes as f64 / MIB);
        row.baseline = format!("{:.1}", without.wal_max_bytes as f64 / MIB);
        report.rows.push(row);

        let (idle, idle_runs) = median(&size.idle, Taken::secs_per_100_mib);
        let (steady, steady_runs) = median(&size.steady, |s| s.backup.secs_per_100_mib());
        let metric = format!(
            "one backup of a {:.0} MiB database, s per 100 MiB: under {}/s paced (baseline: idle)",
            size.db_bytes as f64 / MIB,
            thousands(self.sizes.backup_rate)
        );
        let mut row = Row::new("backup", &metric);
        row.zaphook = format!("{:.2}", steady.backup.secs_per_100_mib());
        row.baseline = format!("{:.2}", idle.secs_per_100_mib());
        row.ratio = fmt_ratio(ratio(
            steady.backup.secs_per_100_mib(),
            idle.secs_per_100_mib(),
        ));
        report.rows.push(row);
        let mut row = Row::new(
            "backup",
            "that backup: seconds, MiB written (baseline: idle)",
        );
        let shown = |t: &Taken| format!("{:.2} s, {:.1} MiB", t.secs, t.bytes as f64 / MIB);
        row.zaphook = shown(&steady.backup);
        row.baseline = shown(&idle);
        report.rows.push(row);
        let mut row = Row::new(
            "backup",
            "sent → acknowledged p50/p99/p99.9/max ms, messages sent during that backup (baseline: the same load's others)",
        );
        let show = |l: Option<Latency>| l.map_or("—".into(), |l| l.short());
        row.zaphook = show(steady.ack_during);
        row.baseline = show(steady.ack_outside);
        report.rows.push(row);
        let mut row = Row::new(
            "backup",
            "messages/s sent during that backup (the paced load's rate)",
        );
        row.zaphook = rate_cell(steady.sent_during_per_s);
        row.baseline = rate_cell(self.sizes.backup_rate);
        row.ratio = fmt_ratio(ratio(steady.sent_during_per_s, self.sizes.backup_rate));
        report.rows.push(row);

        let all: Vec<&Taken> = bare
            .iter()
            .chain(&backed)
            .flat_map(|r| &r.taken)
            .chain(&size.idle)
            .chain(size.steady.iter().map(|s| &s.backup))
            .collect();
        let mut row = Row::new(
            "backup",
            "backup files opened read-only: integrity_check \"ok\" and messages counted",
        );
        // A file that failed either would have ended the scenario with its error.
        row.zaphook = format!("{} of {}", all.len(), all.len());
        report.rows.push(row);

        let printed: Vec<f64> = all
            .iter()
            .filter_map(|t| t.printed_s.map(|p| t.secs - p))
            .collect();
        let gap = printed.iter().sum::<f64>() / printed.len().max(1) as f64;
        report.notes.push(format!(
            "backup: each backup is `zaphook backup --data-dir <the server's> --to <a new file>` run by the harness, timed by the harness from the process start to its exit (the copy, `integrity_check`, fsync and rename; the time the command printed was {gap:.2} s less on average, the process start and rounding to tenths); in the loaded passes the next starts as soon as one exits, from the first message until the last webhook arrived, and the one under way then is let finish; their CPU is not in zaphook's CPU s/1k"
        ));
        if self.repeat > 1 {
            let backups: Vec<String> = backed.iter().map(|r| r.taken.len().to_string()).collect();
            report.notes.push(format!(
                "backup: median of {} runs, alternating; delivered/s per run: without backups {}; with {}; backups per run: {}",
                self.repeat,
                per_run(&without_runs),
                per_run(&with_runs),
                backups.join(", ")
            ));
            report.notes.push(format!(
                "backup: single backups, s per 100 MiB per run: idle {}; under load {}",
                per_run_2(&idle_runs),
                per_run_2(&steady_runs)
            ));
        }
        report.notes.push(format!(
            "backup: the large database: a fresh zaphook filled with {} messages, unpaced, in {:.0} s (every webhook delivered before a backup starts); each backup under load starts {} s into a paced load of {}/s over the usual connections and contacts, which runs on after it",
            thousands(size.fill_messages as f64),
            size.fill_s,
            LEAD.as_secs(),
            thousands(self.sizes.backup_rate)
        ));
        if size.fill_errors > 0 {
            report.notes.push(format!(
                "backup: {} messages of the fill were not accepted",
                thousands(size.fill_errors as f64)
            ));
        }
        let slowest: Vec<String> = size
            .steady
            .iter()
            .filter_map(|s| {
                let at = s.slowest_sent_at_s?;
                let max = s.ack_during?.max_ms;
                Some(format!(
                    "{max:.0} ms, sent {at:.2} s into {:.2} s",
                    s.backup.secs
                ))
            })
            .collect();
        report.notes.push(format!(
            "backup: the slowest acknowledgement during each backup under load: {}",
            slowest.join("; ")
        ));
        for (i, s) in size.steady.iter().enumerate() {
            if !s.covered {
                report.notes.push(format!(
                    "backup: the paced load of backup {} stopped before the backup ended: only part of it ran under load",
                    i + 1
                ));
            }
            if s.errors > 0 {
                report.notes.push(format!(
                    "backup: {} messages of the paced load beside backup {} were not accepted",
                    s.errors,
                    i + 1
                ));
            }
        }
        if size.log_warnings + size.log_errors > 0 {
            report.notes.push(format!(
                "backup: the large database's zaphook logged {} warnings and {} errors; first: {}",
                size.log_warnings,
                size.log_errors,
                size.log_lines.join(" | ")
            ));
        }
        let counts = |runs: &[Run]| {
            runs.iter()
                .flat_map(|r| &r.taken)
                .map(|t| t.messages)
                .fold((u64::MAX, 0), |(lo, hi), m| (lo.min(m), hi.max(m)))
        };
        let (lo, hi) = counts(&backed);
        if hi > 0 {
            report.notes.push(format!(
                "backup: every backup file ({}) passed `PRAGMA integrity_check` opened read-only by rusqlite; the loaded passes' backups held {}–{} messages each (each at least as many as the one before, the last of each pass at least one), the large database's at least {}",
                all.len(),
                thousands(lo as f64),
                thousands(hi as f64),
                thousands(
                    size.idle
                        .iter()
                        .chain(size.steady.iter().map(|s| &s.backup))
                        .map(|t| t.messages)
                        .min()
                        .unwrap_or(0) as f64
                )
            ));
        }
        report.figure("without", &without);
        report.figure("with", &with);
        report.figure("without_runs_per_s", &without_runs);
        report.figure("with_runs_per_s", &with_runs);
        report.figure("size_point", &size);
        Ok(report)
    }

    /// A fresh zaphook set up as the `throughput` scenario's (one sandbox connection, one
    /// endpoint at the receiver), driven with `count` messages as fast as it answers; with
    /// `backups`, `zaphook backup` runs back to back from the start of the load until the last
    /// webhook arrived. The WAL's size is sampled all through either way.
    async fn backed_up_pass(&self, count: u64, backups: bool) -> crate::Result<Run> {
        let receiver = Receiver::bind().await?;
        let zaphook = Zaphook::start(&self.serve).await?;
        let target = Target {
            addrs: zaphook.addrs(),
            path: inbound_path(zaphook.create_connection().await?),
            token: Some(server::TOKEN.to_string()),
            payload: Payload::Sandbox,
        };
        zaphook.create_webhook(&receiver.url(0)).await?;
        let dir = tempfile::Builder::new()
            .prefix("zaphook-bench-backups-")
            .tempdir()?;
        let before = zaphook.usage()?;
        let me_before = server::usage(std::process::id()).unwrap_or_default();
        let stop = AtomicBool::new(false);
        let driven = async {
            let pass = drive(self.shape, target, count, None, &receiver, 1).await;
            stop.store(true, Ordering::Relaxed);
            pass
        };
        let backed = async {
            if !backups {
                return Ok(Vec::new());
            }
            back_to_back(&self.serve.bin, zaphook.data_dir(), dir.path(), &stop).await
        };
        let wal = largest_wal(zaphook.data_dir(), &stop);
        // zaphook is not waited for until `finish`: the children's CPU until then is the
        // backups'.
        let children_before = server::children_cpu_s().unwrap_or_default();
        let (pass, written, wal_max_bytes) = tokio::join!(driven, backed, wal);
        let backup_cpu_s = server::children_cpu_s().unwrap_or_default() - children_before;
        let zap = finish(zaphook, before, me_before, pass).await?;
        let taken = written?
            .into_iter()
            .map(Written::checked)
            .collect::<crate::Result<Vec<_>>>()?;
        // Each is a later snapshot of a database that only grows.
        if taken.windows(2).any(|w| w[1].messages < w[0].messages) {
            let counts: Vec<String> = taken.iter().map(|t| t.messages.to_string()).collect();
            return Err(format!(
                "a backup holds fewer messages than the one before it: {}",
                counts.join(", ")
            )
            .into());
        }
        if let Some(last) = taken.last()
            && last.messages == 0
        {
            return Err("the last backup of the pass holds no message".into());
        }
        Ok(Run {
            zap,
            taken,
            wal_max_bytes,
            backup_cpu_s,
        })
    }

    /// A fresh zaphook filled to `backup_db_mib` (unpaced loads of `throughput` messages
    /// until its `zaphook.db` is that large, every webhook delivered), then `repeat` times a
    /// backup with the server idle and one beside a paced load of `backup_rate`.
    async fn size_point(&self) -> crate::Result<SizePoint> {
        let receiver = Receiver::bind().await?;
        let zaphook = Zaphook::start(&self.serve).await?;
        let point = self.size_point_on(&zaphook, &receiver).await;
        zaphook.stop().await;
        point
    }

    async fn size_point_on(
        &self,
        zaphook: &Zaphook,
        receiver: &Receiver,
    ) -> crate::Result<SizePoint> {
        let path = inbound_path(zaphook.create_connection().await?);
        zaphook.create_webhook(&receiver.url(0)).await?;
        let spec = |count, rate| LoadSpec {
            addrs: zaphook.addrs(),
            path: path.clone(),
            token: Some(server::TOKEN.to_string()),
            count,
            rate,
            connections: self.shape.connections,
            contacts: self.shape.contacts,
            payload: Payload::Sandbox,
            progress: None,
        };
        let data_dir = zaphook.data_dir();
        let database = data_dir.join("zaphook.db");
        let size = || std::fs::metadata(&database).map_or(0, |m| m.len());
        let wanted = (self.sizes.backup_db_mib * MIB) as u64;
        let started = Instant::now();
        let (mut sent, mut accepted, mut fill_errors) = (0, 0, 0);
        eprintln!(
            "backup: filling a database to {:.0} MiB",
            self.sizes.backup_db_mib
        );
        while size() < wanted {
            let load = load::run(spec(self.sizes.throughput, None)).await?;
            if load.acked() == 0 {
                return Err(format!(
                    "the fill: no message was accepted; the first failure: {}",
                    load.first_error.as_deref().unwrap_or("none recorded")
                )
                .into());
            }
            sent += self.sizes.throughput;
            accepted += load.acked();
            fill_errors += load.errors;
            // The load's sequence numbers restart with each run, so the receiver cannot
            // tell this run's webhooks from the last one's: zaphook's own count is read.
            delivered(zaphook, accepted).await?;
        }
        let fill_s = started.elapsed().as_secs_f64();
        let db_bytes = size();
        let dir = tempfile::Builder::new()
            .prefix("zaphook-bench-backups-")
            .tempdir()?;
        let bin = &self.serve.bin;
        let rate = self.sizes.backup_rate;
        let (mut idle, mut steady) = (Vec::new(), Vec::new());
        for i in 0..self.repeat {
            let to = dir.path().join(format!("idle-{}.db", i + 1));
            let alone = take(bin, data_dir, to).await?.checked()?;
            // Long enough that the backup beside it, even four times as slow, ends before
            // the load does.
            let secs = LEAD.as_secs_f64() + 4.0 * alone.secs + 5.0;
            idle.push(alone);
            let loading = load::run(spec((rate * secs).round() as u64, Some(rate)));
            let to = dir.path().join(format!("loaded-{}.db", i + 1));
            let backing = async {
                tokio::time::sleep(LEAD).await;
                take(bin, data_dir, to).await
            };
            let (load, written) = tokio::join!(loading, backing);
            let (load, backup) = (load?, written?.checked()?);
            accepted += load.acked();
            delivered(zaphook, accepted).await?;
            steady.push(Steady::of(backup, &load));
        }
        let (log_warnings, log_errors) = zaphook.log_counts();
        Ok(SizePoint {
            fill_messages: sent,
            fill_s,
            fill_errors,
            db_bytes,
            idle,
            steady,
            log_warnings,
            log_errors,
            log_lines: zaphook.log_notable(),
        })
    }
}

/// One throughput pass, with the backups taken beside it (none in the bare passes).
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub zap: ZaphookPass,
    pub taken: Vec<Taken>,
    /// The largest `zaphook.db-wal` of the samples, bytes.
    pub wal_max_bytes: u64,
    /// CPU seconds of the `zaphook backup` processes.
    pub backup_cpu_s: f64,
}

/// The single backups of a large database.
#[derive(Debug, Clone, Serialize)]
pub struct SizePoint {
    /// Messages sent to fill the database, the seconds it took (every webhook delivered),
    /// and the messages not accepted.
    pub fill_messages: u64,
    pub fill_s: f64,
    pub fill_errors: u64,
    /// `zaphook.db` when the first backup began, bytes.
    pub db_bytes: u64,
    /// Backups with the server idle, and beside the paced load, alternating.
    pub idle: Vec<Taken>,
    pub steady: Vec<Steady>,
    pub log_warnings: u64,
    pub log_errors: u64,
    pub log_lines: Vec<String>,
}

/// A backup taken beside a steady paced load, and what the load saw meanwhile.
#[derive(Debug, Clone, Serialize)]
pub struct Steady {
    pub backup: Taken,
    /// Messages sent while the backup ran, and per second (the load's rate if it kept pace).
    pub sent_during: u64,
    pub sent_during_per_s: f64,
    /// Sent → acknowledged of the messages sent while the backup ran, and of the load's
    /// others.
    pub ack_during: Option<Latency>,
    pub ack_outside: Option<Latency>,
    /// Seconds into the backup that the message acknowledged slowest of those was sent.
    pub slowest_sent_at_s: Option<f64>,
    /// Messages of the load that got no 2xx.
    pub errors: u64,
    /// The load was still sending when the backup ended.
    pub covered: bool,
}

impl Steady {
    fn of(backup: Taken, load: &LoadResult) -> Self {
        let (during, outside) = ack_latencies(load, backup.from_us, backup.to_us);
        let last_send = load.sent.iter().map(|s| s.sent_us).max().unwrap_or(0);
        let slowest = load
            .sent
            .iter()
            .filter(|s| s.ok && (backup.from_us..=backup.to_us).contains(&s.sent_us))
            .max_by_key(|s| s.ack_us - s.sent_us);
        Steady {
            sent_during: during.len() as u64,
            sent_during_per_s: load::per_second(during.len() as u64, backup.from_us, backup.to_us),
            ack_during: Latency::from_us(during),
            ack_outside: Latency::from_us(outside),
            slowest_sent_at_s: slowest.map(|s| (s.sent_us - backup.from_us) as f64 / 1e6),
            errors: load.errors,
            covered: last_send >= backup.to_us,
            backup,
        }
    }
}

/// Sent → acknowledged (µs) of the accepted messages of `load` sent from `from_us` to
/// `to_us`, and of the others.
pub fn ack_latencies(load: &LoadResult, from_us: u64, to_us: u64) -> (Vec<i64>, Vec<i64>) {
    let (during, outside): (Vec<_>, Vec<_>) = load
        .sent
        .iter()
        .filter(|s| s.ok)
        .partition(|s| (from_us..=to_us).contains(&s.sent_us));
    let latency = |sent: Vec<&load::Sent>| -> Vec<i64> {
        sent.iter()
            .map(|s| s.ack_us as i64 - s.sent_us as i64)
            .collect()
    };
    (latency(during), latency(outside))
}

/// One `zaphook backup` that ran to completion, and what its file held.
#[derive(Debug, Clone, Serialize)]
pub struct Taken {
    /// When the command started and exited, µs of [`now_us`] (the clock of the load's sends
    /// and the receiver's arrivals), and the seconds between.
    pub from_us: u64,
    pub to_us: u64,
    pub secs: f64,
    /// The duration the command printed (tenths of a second, its process start left out).
    pub printed_s: Option<f64>,
    pub bytes: u64,
    /// `messages` rows in the file.
    pub messages: u64,
}

impl Taken {
    pub fn secs_per_100_mib(&self) -> f64 {
        self.secs / (self.bytes as f64 / (100.0 * MIB))
    }
}

/// A backup file the command wrote, not opened yet (opening it while a pass runs would take
/// CPU from the server).
struct Written {
    path: PathBuf,
    from_us: u64,
    to_us: u64,
    printed_s: Option<f64>,
    bytes: u64,
}

impl Written {
    /// The backup once [`sound`] passed; the file is removed then (a large database's
    /// backups would otherwise take a GiB or more until the scenario ends).
    fn checked(self) -> crate::Result<Taken> {
        let messages = sound(&self.path)?;
        std::fs::remove_file(&self.path)?;
        Ok(Taken {
            from_us: self.from_us,
            to_us: self.to_us,
            secs: (self.to_us - self.from_us) as f64 / 1e6,
            printed_s: self.printed_s,
            bytes: self.bytes,
            messages,
        })
    }
}

/// Opens the backup at `path` read-only, as a restore would find it: SQLite's
/// `integrity_check` must answer "ok"; answers how many `messages` rows it holds.
pub fn sound(path: &Path) -> crate::Result<u64> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let problems: Vec<String> = conn
        .prepare("PRAGMA integrity_check")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    if problems != ["ok"] {
        return Err(format!(
            "the backup {} is damaged; integrity_check says: {}",
            path.display(),
            problems.join("; ")
        )
        .into());
    }
    Ok(conn.query_row("SELECT count(*) FROM messages", [], |r| r.get(0))?)
}

/// Runs `zaphook backup --data-dir DATA_DIR --to TO` with `bin` and waits for it to exit.
async fn take(bin: &Path, data_dir: &Path, to: PathBuf) -> crate::Result<Written> {
    let mut command = Command::new(bin);
    command
        .arg("backup")
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--to")
        .arg(&to);
    flags_only(&mut command)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let from_us = now_us();
    let output = command
        .output()
        .await
        .map_err(|e| format!("cannot start {} backup: {e}", bin.display()))?;
    let to_us = now_us();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().find(|l| l.starts_with("backup written: "));
    let (true, Some(line)) = (output.status.success(), line) else {
        return Err(format!(
            "zaphook backup --to {} ({}): {}{}",
            to.display(),
            output.status,
            stdout.trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        )
        .into());
    };
    Ok(Written {
        printed_s: printed_secs(line),
        bytes: std::fs::metadata(&to)?.len(),
        path: to,
        from_us,
        to_us,
    })
}

/// The seconds of `backup written: FILE (12.3 MiB, schema 6, in 0.8 s)`.
pub fn printed_secs(line: &str) -> Option<f64> {
    let (_, took) = line.rsplit_once(", in ")?;
    took.strip_suffix(" s)")?.parse().ok()
}

/// Backups of `data_dir` into new files in `dir`, one after the other, until `stop` is set
/// (the one under way then finishes).
async fn back_to_back(
    bin: &Path,
    data_dir: &Path,
    dir: &Path,
    stop: &AtomicBool,
) -> crate::Result<Vec<Written>> {
    let mut written = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let to = dir.join(format!("backup-{}.db", written.len() + 1));
        written.push(take(bin, data_dir, to).await?);
    }
    Ok(written)
}

/// The largest `zaphook.db-wal` in `data_dir`, read every [`WAL_EVERY`] until `stop` is set.
async fn largest_wal(data_dir: &Path, stop: &AtomicBool) -> u64 {
    let wal = data_dir.join("zaphook.db-wal");
    let mut largest = 0;
    while !stop.load(Ordering::Relaxed) {
        // Absent only before the first write.
        largest = largest.max(std::fs::metadata(&wal).map_or(0, |m| m.len()));
        tokio::time::sleep(WAL_EVERY).await;
    }
    largest
}

/// Waits until zaphook has delivered `accepted` webhooks (by its `/metrics`); fails once
/// none more was delivered for [`STALL`].
async fn delivered(zaphook: &Zaphook, accepted: u64) -> crate::Result<()> {
    let (mut last, mut since) = (0, Instant::now());
    loop {
        let metrics = zaphook.metrics().await?;
        let label = "outcome=\"delivered\"";
        let done = metric_sum(&metrics, "zaphook_delivery_attempts_total", label) as u64;
        if done >= accepted {
            return Ok(());
        }
        if done != last {
            (last, since) = (done, Instant::now());
        } else if since.elapsed() >= STALL {
            return Err(format!(
                "zaphook delivered {done} of {accepted} webhooks and none more for {} s",
                STALL.as_secs()
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The median of `values` (the upper middle of an even count).
fn middle(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied()
}

/// Each run's figure with two decimals, for a note.
fn per_run_2(runs: &[f64]) -> String {
    runs.iter()
        .map(|r| format!("{r:.2}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::Sent;

    #[test]
    fn reads_the_seconds_zaphook_backup_prints() {
        let line = "backup written: /tmp/a, in 1/b.db (12.3 MiB, schema 6, in 0.8 s)";
        assert_eq!(printed_secs(line), Some(0.8));
        assert_eq!(
            printed_secs("backup written: x (1.0 MiB, schema 6, in 12.0 s)"),
            Some(12.0)
        );
        assert_eq!(printed_secs("backup written: x"), None);
    }

    #[test]
    fn a_sound_backup_answers_its_messages_and_a_damaged_one_fails() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("backup.db");
        let conn = Connection::open(&path).expect("create");
        conn.execute_batch(
            "CREATE TABLE messages (id INTEGER PRIMARY KEY, body TEXT);
             CREATE INDEX messages_body ON messages (body);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000)
             INSERT INTO messages (body) SELECT hex(randomblob(100)) FROM n;",
        )
        .expect("fill");
        drop(conn);
        assert_eq!(sound(&path).expect("sound"), 2_000);

        // Overwrite a page in the middle of the file: the table or its index no longer
        // agrees with itself.
        let mut bytes = std::fs::read(&path).expect("read");
        let page = 4096;
        let middle = bytes.len() / page / 2 * page;
        bytes[middle + 8..middle + page].fill(0x5a);
        let damaged = dir.path().join("damaged.db");
        std::fs::write(&damaged, &bytes).expect("write");
        let refused = sound(&damaged).expect_err("a damaged file");
        let why = refused.to_string();
        assert!(
            why.contains("integrity_check") || why.contains("malformed"),
            "{why}"
        );

        let empty = dir.path().join("no-messages.db");
        Connection::open(&empty)
            .and_then(|c| c.execute_batch("CREATE TABLE other (id INTEGER);"))
            .expect("create");
        assert!(
            sound(&empty).is_err(),
            "a file without messages is no backup"
        );
    }

    #[test]
    fn splits_the_acknowledgements_at_the_backup() {
        let sent = |sent_us, ack_us, ok| Sent {
            sent_us,
            ack_us,
            ok,
        };
        let load = LoadResult {
            sent: vec![
                sent(100, 110, true),
                sent(1_000, 1_500, true),
                sent(2_000, 2_900, true),
                sent(2_100, 0, false),
                sent(3_000, 3_020, true),
            ],
            ..LoadResult::default()
        };
        let (during, outside) = ack_latencies(&load, 1_000, 2_500);
        assert_eq!(during, vec![500, 900]);
        assert_eq!(outside, vec![10, 20]);
    }

    #[test]
    fn seconds_per_100_mib_scale_with_the_size() {
        let taken = |secs, bytes| Taken {
            from_us: 0,
            to_us: 0,
            secs,
            printed_s: None,
            bytes,
            messages: 1,
        };
        assert_eq!(taken(2.0, 200 << 20).secs_per_100_mib(), 1.0);
        assert_eq!(taken(0.5, 25 << 20).secs_per_100_mib(), 2.0);
        assert_eq!(middle(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(middle(&[]), None);
    }
}
