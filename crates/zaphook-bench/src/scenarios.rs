//! The scenarios: each drives load through zaphook (a fresh process per pass, or with
//! `--processes N` N fresh ones on one PostgreSQL schema, the load alternating between them)
//! and, where it makes sense, through the bare relay, waits for the webhooks at the receiver,
//! and turns what happened into rows with their goals.

use serde::Serialize;

use crate::load::{self, LoadSpec, Payload, per_second};
use crate::pass::{Pass, STALL, Shape, Target, analyze, drive, receiver_pass, relay_pass};
use crate::receiver::{Hang, Receiver, ReservedPort, hook_url};
use crate::relay::RelayConfig;
use crate::report::{
    Latency, Row, ScenarioReport, fmt_ratio, median, mib, rate_cell, ratio, thousands,
};
use crate::server::{self, ServeOptions, Zaphook};
use crate::{cloud, inbound_path, now_us};

/// The scenarios of a run that names none.
pub const SCENARIOS: [&str; 6] = [
    "throughput",
    "latency",
    "fanout",
    "isolation",
    "backlog",
    "cloud",
];

/// Scenarios that run only when named with `--scenario`: too long for the default run.
pub const OPT_IN: [&str; 2] = ["soak", "backup"];

/// How much each scenario sends.
#[derive(Debug, Clone, Serialize)]
pub struct Sizes {
    /// Messages straight at the receiver, to show its own ceiling.
    pub ceiling: u64,
    /// Messages of `throughput` (and of `isolation`, so the two compare, and of `cloud`,
    /// whose callback bodies carry four each).
    pub throughput: u64,
    pub latency_rate: f64,
    pub latency_secs: u64,
    /// Messages of `fanout`; each goes to every endpoint.
    pub fanout: u64,
    pub fanout_endpoints: u16,
    /// Messages accepted while the receiver is down.
    pub backlog: u64,
    /// How long `soak` runs, at how many messages per second, sampled how often.
    pub soak_minutes: f64,
    pub soak_rate: f64,
    pub soak_sample_secs: u64,
    /// How large `backup` fills a database (MiB of `zaphook.db`) before it times single
    /// backups of it, and the paced load (messages/s) beside half of them.
    pub backup_db_mib: f64,
    pub backup_rate: f64,
}

impl Sizes {
    /// Sizes that give stable figures (the whole run takes a few minutes).
    pub fn standard() -> Self {
        Sizes {
            ceiling: 20_000,
            throughput: 20_000,
            latency_rate: 1_000.0,
            latency_secs: 20,
            fanout: 5_000,
            fanout_endpoints: 10,
            backlog: 100_000,
            soak_minutes: 10.0,
            soak_rate: 200.0,
            soak_sample_secs: 30,
            backup_db_mib: 200.0,
            backup_rate: 200.0,
        }
    }

    /// Every scenario small (the whole run is well under 2 minutes).
    pub fn quick() -> Self {
        Sizes {
            ceiling: 3_000,
            throughput: 3_000,
            latency_rate: 1_000.0,
            latency_secs: 5,
            fanout: 500,
            fanout_endpoints: 10,
            backlog: 10_000,
            soak_minutes: 1.0,
            soak_rate: 200.0,
            soak_sample_secs: 10,
            backup_db_mib: 20.0,
            backup_rate: 200.0,
        }
    }
}

/// What one zaphook pass produced, with what it cost zaphook.
#[derive(Debug, Clone, Serialize)]
pub struct ZaphookPass {
    pub pass: Pass,
    /// zaphook processes that ran the pass; `cpu_s` and `peak_rss_mib` are sums over them.
    pub processes: usize,
    /// zaphook's CPU seconds from the first message to the last webhook.
    pub cpu_s: f64,
    /// Each process's peak RSS (VmHWM), added up.
    pub peak_rss_mib: f64,
    /// This harness's own CPU seconds over the same span (load, receiver).
    pub harness_cpu_s: f64,
    pub log_warnings: u64,
    pub log_errors: u64,
    /// The first warning and error lines zaphook logged (up to ten per process).
    pub log_lines: Vec<String>,
}

/// How a zaphook pass is fed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Feed {
    /// A sandbox connection, one message per inbound request.
    Sandbox,
    /// A Cloud API connection, signed callback bodies of four messages (and four statuses,
    /// with `statuses`).
    Cloud { statuses: bool },
}

impl ZaphookPass {
    pub fn cpu_s_per_1k(&self) -> Option<f64> {
        (self.pass.delivered > 0).then(|| self.cpu_s / self.pass.delivered as f64 * 1000.0)
    }
}

/// Runs the scenarios and remembers what later ones compare against.
pub struct Bench {
    pub serve: ServeOptions,
    pub shape: Shape,
    pub sizes: Sizes,
    /// Runs of `throughput`, `fanout`, `isolation`, `cloud` and `backup`, of which the median
    /// is reported.
    pub repeat: usize,
    /// zaphook's `throughput` pass, once run.
    reference: Option<ZaphookPass>,
}

impl Bench {
    pub fn new(serve: ServeOptions, shape: Shape, sizes: Sizes, repeat: usize) -> Self {
        Bench {
            serve,
            shape,
            sizes,
            repeat: repeat.max(1),
            reference: None,
        }
    }

    /// `repeat` runs of the relay and of zaphook, alternating so both see the same machine;
    /// the median run of each (by webhooks per second) and a note with every run's figure.
    async fn repeated(
        &self,
        report: &mut ScenarioReport,
        endpoints: u16,
        hang: bool,
        count: u64,
        with_relay: bool,
    ) -> crate::Result<(Option<Pass>, ZaphookPass)> {
        let mut relays = Vec::new();
        let mut zaps = Vec::new();
        for _ in 0..self.repeat {
            if with_relay {
                relays.push(
                    relay_pass(self.shape, endpoints, count, None, RelayConfig::default()).await?,
                );
            }
            zaps.push(self.zaphook_pass(endpoints, hang, count, None).await?);
        }
        let (zap, zap_runs) = median(&zaps, |z| z.pass.delivered_per_s);
        let relay = (!relays.is_empty()).then(|| median(&relays, |p| p.delivered_per_s));
        if self.repeat > 1 {
            let mut note = format!(
                "{}: median of {} runs; zaphook webhooks/s per run: {}",
                report.name,
                self.repeat,
                per_run(&zap_runs)
            );
            if let Some((_, relay_runs)) = &relay {
                note.push_str(&format!("; relay: {}", per_run(relay_runs)));
                report.figure("relay_runs_per_s", relay_runs);
            }
            report.notes.push(note);
            report.figure("zaphook_runs_per_s", &zap_runs);
        }
        Ok((relay.map(|(r, _)| r), zap))
    }

    pub async fn run(&mut self, name: &str) -> crate::Result<ScenarioReport> {
        match name {
            "ceiling" => self.ceiling().await,
            "throughput" => self.throughput().await,
            "latency" => self.latency().await,
            "fanout" => self.fanout().await,
            "isolation" => self.isolation().await,
            "backlog" => self.backlog().await,
            "cloud" => self.cloud().await,
            "soak" => self.soak().await,
            "backup" => self.backup().await,
            other => Err(format!("no scenario named {other}").into()),
        }
    }

    /// A fresh zaphook with `endpoints` receiver paths (and a hanging endpoint first when
    /// `hang`), through which `count` messages are driven.
    async fn zaphook_pass(
        &self,
        endpoints: u16,
        hang: bool,
        count: u64,
        rate: Option<f64>,
    ) -> crate::Result<ZaphookPass> {
        self.zaphook_pass_fed(Feed::Sandbox, endpoints, hang, count, rate)
            .await
    }

    /// [`Bench::zaphook_pass`] through a connection of the channel `feed` says.
    async fn zaphook_pass_fed(
        &self,
        feed: Feed,
        endpoints: u16,
        hang: bool,
        count: u64,
        rate: Option<f64>,
    ) -> crate::Result<ZaphookPass> {
        let receiver = Receiver::bind().await?;
        let hanging = if hang {
            Some(Hang::bind().await?)
        } else {
            None
        };
        let zaphook = Zaphook::start(&self.serve).await?;
        let target = match feed {
            Feed::Sandbox => Target {
                addrs: zaphook.addrs(),
                path: inbound_path(zaphook.create_connection().await?),
                token: Some(server::TOKEN.to_string()),
                payload: Payload::Sandbox,
            },
            Feed::Cloud { statuses } => Target {
                addrs: zaphook.addrs(),
                path: cloud::callback_path(zaphook.create_cloud_connection().await?),
                token: None,
                payload: Payload::Cloud {
                    app_secret: cloud::APP_SECRET.into(),
                    statuses,
                },
            },
        };
        if let Some(hanging) = &hanging {
            zaphook.create_webhook(&hanging.url()).await?;
        }
        for n in 0..endpoints {
            zaphook.create_webhook(&receiver.url(n)).await?;
        }
        let before = zaphook.usage()?;
        let me_before = server::usage(std::process::id()).unwrap_or_default();
        let endpoints = u64::from(endpoints);
        let pass = drive(self.shape, target, count, rate, &receiver, endpoints).await;
        finish(zaphook, before, me_before, pass).await
    }

    async fn ceiling(&mut self) -> crate::Result<ScenarioReport> {
        let pass = receiver_pass(self.shape, self.sizes.ceiling).await?;
        let mut report = ScenarioReport::new("ceiling");
        let mut row = Row::new("ceiling", "receiver alone, requests/s");
        row.baseline = rate_cell(pass.delivered_per_s);
        report.rows.push(row);
        report.notes.push(format!(
            "receiver ceiling: {} requests/s (load generator straight at the receiver); every figure below must stay well under it",
            thousands(pass.delivered_per_s)
        ));
        report.figure("receiver", &pass);
        Ok(report)
    }

    async fn throughput(&mut self) -> crate::Result<ScenarioReport> {
        let count = self.sizes.throughput;
        let mut report = ScenarioReport::new("throughput");
        let (relay, zap) = self.repeated(&mut report, 1, false, count, true).await?;
        let relay = relay.expect("the relay ran");
        let mut row = rates_row(
            "throughput",
            "delivered/s (first send → last arrival)",
            zap.pass.delivered_per_s,
            relay.delivered_per_s,
        )
        .with_usage(&zap);
        row.goal = "ratio ≥ 0.5".into();
        row.met = ratio(zap.pass.delivered_per_s, relay.delivered_per_s).map(|r| r >= 0.5);
        report.rows.push(row);
        report.rows.push(accepted_row("throughput", &zap, &relay));
        self.durable_relay(&mut report, &zap, &relay, count).await?;
        compared(&mut report, &zap, &relay);
        self.reference = Some(zap);
        Ok(report)
    }

    /// The same load through the durable relay (`journal`): how far durability alone takes
    /// the bare relay down, beside how far zaphook is.
    async fn durable_relay(
        &self,
        report: &mut ScenarioReport,
        zap: &ZaphookPass,
        relay: &Pass,
        count: u64,
    ) -> crate::Result<()> {
        let durable = RelayConfig {
            durable: true,
            ..RelayConfig::default()
        };
        let mut runs = Vec::new();
        for _ in 0..self.repeat {
            runs.push(relay_pass(self.shape, 1, count, None, durable.clone()).await?);
        }
        let (durable, runs_per_s) = median(&runs, |p| p.delivered_per_s);
        if durable.missing() > 0 || durable.errors > 0 {
            return Err(format!(
                "the durable relay lost messages: {} missing, {} errors",
                durable.missing(),
                durable.errors
            )
            .into());
        }
        report.rows.push(rates_row(
            "throughput",
            "delivered/s; baseline: durable relay (a SQLite insert before the 202, an update after the forward)",
            zap.pass.delivered_per_s,
            durable.delivered_per_s,
        ));
        if let Some(cost) = ratio(durable.delivered_per_s, relay.delivered_per_s) {
            report.notes.push(format!(
                "throughput: the durable relay runs at {cost:.2} of the bare relay ({} vs {}/s): what durability alone costs here; runs: {}",
                thousands(durable.delivered_per_s),
                thousands(relay.delivered_per_s),
                per_run(&runs_per_s)
            ));
        }
        report.figure("durable_relay", &durable);
        report.figure("durable_relay_runs_per_s", &runs_per_s);
        Ok(())
    }

    async fn latency(&mut self) -> crate::Result<ScenarioReport> {
        let rate = self.sizes.latency_rate;
        let count = (rate * self.sizes.latency_secs as f64) as u64;
        let relay = relay_pass(self.shape, 1, count, Some(rate), RelayConfig::default()).await?;
        let zap = self.zaphook_pass(1, false, count, Some(rate)).await?;
        let mut report = ScenarioReport::new("latency");
        let show = |l: Option<Latency>| l.map_or("—".into(), |l| l.short());
        let metric = format!(
            "acknowledged → arrived, p50/p99/p99.9/max ms at {} msg/s",
            thousands(rate)
        );
        let mut row = Row::new("latency", &metric).with_usage(&zap);
        row.zaphook = show(zap.pass.ack_to_arrival);
        row.goal = "p99 ≤ 20 ms".into();
        row.met = zap.pass.ack_to_arrival.map(|l| l.p99_ms <= 20.0);
        report.rows.push(row);
        let mut row = Row::new("latency", "sent → arrived, p50/p99/p99.9/max ms");
        row.zaphook = show(zap.pass.send_to_arrival);
        row.baseline = show(relay.send_to_arrival);
        report.rows.push(row);
        let mut row = Row::new("latency", "sent → acknowledged (API), p50/p99/p99.9/max ms");
        row.zaphook = show(zap.pass.send_to_ack);
        row.baseline = show(relay.send_to_ack);
        report.rows.push(row);
        report.notes.push(
            "latency: open loop (each message has its scheduled send time); the relay acknowledges only after forwarding, so its \"acknowledged → arrived\" is ≤ 0 and not shown".into(),
        );
        compared(&mut report, &zap, &relay);
        Ok(report)
    }

    async fn fanout(&mut self) -> crate::Result<ScenarioReport> {
        let (count, endpoints) = (self.sizes.fanout, self.sizes.fanout_endpoints);
        let mut report = ScenarioReport::new("fanout");
        let (relay, zap) = self
            .repeated(&mut report, endpoints, false, count, true)
            .await?;
        let relay = relay.expect("the relay ran");
        let metric = format!("deliveries/s, {endpoints} endpoints");
        report.rows.push(
            rates_row(
                "fanout",
                &metric,
                zap.pass.delivered_per_s,
                relay.delivered_per_s,
            )
            .with_usage(&zap),
        );
        report.rows.push(accepted_row("fanout", &zap, &relay));
        compared(&mut report, &zap, &relay);
        Ok(report)
    }

    async fn isolation(&mut self) -> crate::Result<ScenarioReport> {
        let count = self.sizes.throughput;
        let mut report = ScenarioReport::new("isolation");
        if self.reference.is_none() {
            report.notes.push(
                "isolation: `throughput` did not run in this invocation, so zaphook-only throughput runs came first as the reference".into(),
            );
            let (_, reference) = self.repeated(&mut report, 1, false, count, false).await?;
            self.reference = Some(reference);
        }
        let reference = self.reference.clone().expect("reference set above");
        let (_, zap) = self.repeated(&mut report, 1, true, count, false).await?;
        let mut row = rates_row(
            "isolation",
            "healthy endpoint delivered/s beside a hanging one (baseline: throughput)",
            zap.pass.delivered_per_s,
            reference.pass.delivered_per_s,
        )
        .with_usage(&zap);
        row.goal = "ratio ≥ 0.9".into();
        row.met = ratio(zap.pass.delivered_per_s, reference.pass.delivered_per_s).map(|r| r >= 0.9);
        report.rows.push(row);
        report.notes.push(
            "isolation: the hanging endpoint accepts connections and never answers (zaphook's default 15 s delivery timeout); it was created first, so it has the lower id".into(),
        );
        check(&mut report, "zaphook", &zap.pass);
        report.figure("zaphook", &zap);
        report.figure("reference", &reference);
        Ok(report)
    }

    async fn backlog(&mut self) -> crate::Result<ScenarioReport> {
        let count = self.sizes.backlog;
        // Every retry 1 s later, for an hour: the backlog waits at most ~1.2 s once the
        // receiver is up, and nothing goes dead while it is down.
        let schedule = vec![1_000; 3_600];
        let serve = ServeOptions {
            retry_schedule_ms: Some(schedule),
            ..self.serve.clone()
        };
        let port = ReservedPort::new()?;
        let zaphook = Zaphook::start(&serve).await?;
        let connection = zaphook.create_connection().await?;
        zaphook.create_webhook(&hook_url(port.addr(), 0)).await?;
        let before = zaphook.usage()?;
        let me_before = server::usage(std::process::id()).unwrap_or_default();
        let load = load::run(LoadSpec {
            addrs: zaphook.addrs(),
            path: inbound_path(connection),
            token: Some(server::TOKEN.to_string()),
            count,
            rate: None,
            connections: self.shape.connections,
            contacts: self.shape.contacts,
            payload: Payload::Sandbox,
            progress: None,
        })
        .await;
        let load = match load {
            Ok(load) => load,
            Err(e) => {
                zaphook.stop().await;
                return Err(e);
            }
        };
        let accepted_rss = zaphook.usage().map(|u| mib(u.peak_rss_kib)).unwrap_or(0.0);
        let summed = match zaphook.processes() {
            1 => String::new(),
            n => format!(" (summed over its {n} processes)"),
        };
        let receiver = Receiver::start(port.listen()?);
        let up_us = now_us();
        receiver.wait_for(load.acked(), STALL).await;
        let pass = analyze(&load, &receiver.arrivals(), 1);
        let zap = finish(zaphook, before, me_before, Ok(pass)).await?;
        let drain = per_second(zap.pass.delivered, up_us, zap.pass.last_arrival_us);
        let wait_ms = zap.pass.first_arrival_us.saturating_sub(up_us) as f64 / 1000.0;
        let mut report = ScenarioReport::new("backlog");
        let metric = format!(
            "drain deliveries/s after the receiver came up ({} queued)",
            thousands(zap.pass.acked as f64)
        );
        let mut row = Row::new("backlog", &metric).with_usage(&zap);
        row.zaphook = rate_cell(drain);
        row.goal = "≥ 5,000/s".into();
        row.met = Some(drain >= 5_000.0);
        report.rows.push(row);
        let mut row = Row::new("backlog", "delivered of accepted");
        row.zaphook = format!(
            "{} / {}",
            thousands(zap.pass.delivered as f64),
            thousands(zap.pass.acked as f64)
        );
        row.goal = "all".into();
        row.met = Some(zap.pass.missing() == 0);
        report.rows.push(row);
        let mut row = Row::new("backlog", "accepted/s while the receiver was down");
        row.zaphook = rate_cell(zap.pass.acked_per_s);
        report.rows.push(row);
        let mut row = Row::new("backlog", "peak RSS MiB (baseline: throughput's)");
        row.zaphook = format!("{:.0}", zap.peak_rss_mib);
        if let Some(reference) = &self.reference {
            let r = ratio(zap.peak_rss_mib, reference.peak_rss_mib);
            row.baseline = format!("{:.0}", reference.peak_rss_mib);
            row.ratio = fmt_ratio(r);
            row.met = r.map(|r| r <= 2.0);
        } else {
            report.notes.push(
                "backlog: `throughput` did not run in this invocation: no peak RSS to compare with"
                    .into(),
            );
        }
        row.goal = "≤ 2× throughput".into();
        report.rows.push(row);
        report.notes.push(format!(
            "backlog: zaphook ran with --retry-schedule-ms 1000 ×3600 (retry every 1 s ±20 %) so deliveries resume within ~1.2 s of the receiver coming up; the first webhook arrived {wait_ms:.0} ms after it did; the drain rate counts from the receiver coming up; peak RSS was {accepted_rss:.0} MiB{summed} when the last message was accepted"
        ));
        check(&mut report, "zaphook", &zap.pass);
        report.figure("zaphook", &zap);
        report.figure("drain_per_s", drain);
        report.figure("first_webhook_after_up_ms", wait_ms);
        report.figure("peak_rss_mib_when_accepted", accepted_rss);
        Ok(report)
    }

    /// The same messages through a Cloud API connection (signed callback bodies of four
    /// messages and four statuses each, posted to its callback URL), through a sandbox
    /// connection, and through a Cloud API connection again with bodies of four messages and
    /// no statuses (which tells what the statuses cost), alternating `repeat` times; the
    /// median of each.
    async fn cloud(&mut self) -> crate::Result<ScenarioReport> {
        let count = self.sizes.throughput;
        let per_body = cloud::MESSAGES_PER_BODY;
        let mut report = ScenarioReport::new("cloud");
        let (mut sandboxes, mut mixed, mut plain) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..self.repeat {
            let pass = |feed| self.zaphook_pass_fed(feed, 1, false, count, None);
            sandboxes.push(pass(Feed::Sandbox).await?);
            mixed.push(pass(Feed::Cloud { statuses: true }).await?);
            plain.push(pass(Feed::Cloud { statuses: false }).await?);
        }
        // Every run is checked, not only the median: a lost message in any run matters.
        let all = [
            ("cloud", &mixed),
            ("cloud without statuses", &plain),
            ("sandbox", &sandboxes),
        ];
        for (who, runs) in all {
            for (i, run) in runs.iter().enumerate() {
                let who = if runs.len() > 1 {
                    format!("{who}, run {}", i + 1)
                } else {
                    who.to_string()
                };
                check(&mut report, &who, &run.pass);
                logged(&mut report, &who, run);
            }
        }
        let by_rate = |z: &ZaphookPass| z.pass.delivered_per_s;
        let (zap, zap_runs) = median(&mixed, by_rate);
        let (plain, plain_runs) = median(&plain, by_rate);
        let (sandbox, sandbox_runs) = median(&sandboxes, by_rate);
        report.rows.push(
            rates_row(
                "cloud",
                "webhooks delivered/s, first send → last arrival (baseline: sandbox, same messages)",
                zap.pass.delivered_per_s,
                sandbox.pass.delivered_per_s,
            )
            .with_usage(&zap),
        );
        let metric =
            format!("callbacks accepted/s (200s), {per_body} messages + {per_body} statuses each");
        let mut row = Row::new("cloud", &metric);
        row.zaphook = rate_cell(zap.pass.requests_acked_per_s);
        report.rows.push(row);
        let mut row = Row::new("cloud", "notifications accepted/s (messages + statuses)");
        // Each body carries as many statuses as messages.
        row.zaphook = rate_cell(2.0 * zap.pass.acked_per_s);
        report.rows.push(row);
        report.rows.push(rates_row(
            "cloud",
            "messages accepted/s (cloud: in 200'd bodies; sandbox: 202s)",
            zap.pass.acked_per_s,
            sandbox.pass.acked_per_s,
        ));
        let show = |l: Option<Latency>| l.map_or("—".into(), |l| l.short());
        let mut row = Row::new(
            "cloud",
            "acknowledged → arrived, p50/p99/p99.9/max ms (closed loop; baseline: sandbox)",
        );
        row.zaphook = show(zap.pass.ack_to_arrival);
        row.baseline = show(sandbox.pass.ack_to_arrival);
        report.rows.push(row);
        let mut row = Row::new("cloud", "CPU s per 1,000 webhooks (baseline: sandbox)");
        let cpu = |z: &ZaphookPass| z.cpu_s_per_1k().map_or("—".into(), |c| format!("{c:.3}"));
        row.zaphook = cpu(&zap);
        row.baseline = cpu(&sandbox);
        row.ratio = fmt_ratio(
            zap.cpu_s_per_1k()
                .zip(sandbox.cpu_s_per_1k())
                .and_then(|(c, s)| ratio(c, s)),
        );
        report.rows.push(row);
        let metric = format!(
            "webhooks delivered/s, bodies of {per_body} messages and no statuses (baseline: sandbox)"
        );
        report.rows.push(
            rates_row(
                "cloud",
                &metric,
                plain.pass.delivered_per_s,
                sandbox.pass.delivered_per_s,
            )
            .with_usage(&plain),
        );
        let mut row = Row::new(
            "cloud",
            "acknowledged → arrived, p50/p99/p99.9/max ms, bodies without statuses",
        );
        row.zaphook = show(plain.pass.ack_to_arrival);
        report.rows.push(row);
        report.notes.push(format!(
            "cloud: {} messages in {} signed callback bodies to /channels/cloud/{{id}} (each {per_body} text messages from {per_body} contacts, their contacts entries, and {per_body} `delivered` statuses of messages zaphook never sent); the sandbox pass sends the same {} messages one per request; zaphook answers a callback 200 once the body is stored and reads it into messages afterwards, so \"acknowledged → arrived\" includes the wait in the inbox under closed-loop load",
            thousands(count as f64),
            thousands(count.div_ceil(per_body) as f64),
            thousands(count as f64),
        ));
        if self.repeat > 1 {
            report.notes.push(format!(
                "cloud: median of {} runs, alternating; webhooks/s per run: cloud {}; without statuses {}; sandbox {}",
                self.repeat,
                per_run(&zap_runs),
                per_run(&plain_runs),
                per_run(&sandbox_runs)
            ));
            report.figure("cloud_runs_per_s", &zap_runs);
            report.figure("without_statuses_runs_per_s", &plain_runs);
            report.figure("sandbox_runs_per_s", &sandbox_runs);
        }
        report.figure("zaphook", &zap);
        report.figure("without_statuses", &plain);
        report.figure("sandbox", &sandbox);
        Ok(report)
    }
}

/// Reads what zaphook and this harness used since `before`, then stops zaphook; the pass
/// with what it cost (zaphook is stopped whether the pass succeeded or not).
pub(crate) async fn finish(
    zaphook: Zaphook,
    before: server::Usage,
    me_before: server::Usage,
    pass: crate::Result<Pass>,
) -> crate::Result<ZaphookPass> {
    let after = zaphook.usage();
    let me_after = server::usage(std::process::id()).unwrap_or_default();
    let (log_warnings, log_errors) = zaphook.log_counts();
    let log_lines = zaphook.log_notable();
    let tail = zaphook.log_tail(20);
    let processes = zaphook.processes();
    zaphook.stop().await;
    let after = after.map_err(|e| format!("{e}; zaphook's last lines:\n{}", tail.join("\n")))?;
    Ok(ZaphookPass {
        pass: pass?,
        cpu_s: after.cpu_s - before.cpu_s,
        peak_rss_mib: mib(after.peak_rss_kib),
        harness_cpu_s: me_after.cpu_s - me_before.cpu_s,
        processes,
        log_warnings,
        log_errors,
        log_lines,
    })
}

/// The row comparing how fast zaphook and the relay accepted the messages.
fn accepted_row(scenario: &str, zap: &ZaphookPass, relay: &Pass) -> Row {
    rates_row(
        scenario,
        "accepted/s (202s)",
        zap.pass.acked_per_s,
        relay.acked_per_s,
    )
}

/// A row comparing zaphook's rate with a baseline's, and their ratio.
pub(crate) fn rates_row(scenario: &str, metric: &str, zaphook: f64, baseline: f64) -> Row {
    let mut row = Row::new(scenario, metric);
    row.zaphook = rate_cell(zaphook);
    row.baseline = rate_cell(baseline);
    row.ratio = fmt_ratio(ratio(zaphook, baseline));
    row
}

impl Row {
    /// With zaphook's CPU per 1,000 webhooks and peak RSS in the pass.
    pub(crate) fn with_usage(mut self, zap: &ZaphookPass) -> Row {
        self.cpu_s_per_1k = zap.cpu_s_per_1k();
        self.peak_rss_mib = Some(zap.peak_rss_mib);
        self
    }
}

/// Notes what went wrong in both passes and keeps their figures in the report.
fn compared(report: &mut ScenarioReport, zap: &ZaphookPass, relay: &Pass) {
    check(report, "zaphook", &zap.pass);
    check(report, "relay", relay);
    report.figure("zaphook", zap);
    report.figure("relay", relay);
}

/// Notes the warnings and errors zaphook logged in a pass, with the first of those lines.
pub(crate) fn logged(report: &mut ScenarioReport, who: &str, zap: &ZaphookPass) {
    if zap.log_warnings + zap.log_errors == 0 {
        return;
    }
    let name = report.name.clone();
    report.notes.push(format!(
        "{name}: {who}: zaphook logged {} warnings and {} errors; first: {}",
        zap.log_warnings,
        zap.log_errors,
        zap.log_lines.join(" | ")
    ));
}

/// Notes what went wrong in a pass: failed requests, webhooks that never came.
pub(crate) fn check(report: &mut ScenarioReport, who: &str, pass: &Pass) {
    let waited = format!("none arrived for {} s", STALL.as_secs());
    check_waited(report, who, pass, &waited);
}

/// [`check`], saying how the wait for the missing webhooks ended (`waited`).
pub(crate) fn check_waited(report: &mut ScenarioReport, who: &str, pass: &Pass, waited: &str) {
    let name = report.name.clone();
    if pass.errors > 0 {
        report.notes.push(format!(
            "{name}: {who}: {} of {} messages were not accepted; first failure: {}",
            pass.errors,
            pass.messages,
            pass.first_error.as_deref().unwrap_or("?")
        ));
    }
    if pass.missing() > 0 {
        report.notes.push(format!(
            "{name}: {who}: MISSING {} of {} webhooks ({waited})",
            pass.missing(),
            pass.expected,
        ));
    }
    if pass.duplicates > 0 {
        report.notes.push(format!(
            "{name}: {who}: {} duplicate webhooks (allowed: at least once)",
            pass.duplicates
        ));
    }
}

/// Each run's rate, for a note.
pub(crate) fn per_run(runs: &[f64]) -> String {
    runs.iter()
        .map(|r| thousands(*r))
        .collect::<Vec<_>>()
        .join(", ")
}
