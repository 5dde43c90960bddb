//! The `zaphook-bench` command line: picks the scenarios and sizes, runs them, prints the
//! table with the goals beside the figures, and writes the JSON.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use zaphook_bench::pass::Shape;
use zaphook_bench::report::{self, Report, ScenarioReport};
use zaphook_bench::scenarios::{Bench, OPT_IN, SCENARIOS, Sizes};
use zaphook_bench::server::{self, ServeOptions};

/// Measures how fast zaphook turns inbound messages into delivered webhooks, beside a bare
/// relay doing "HTTP in, HTTP out" on the same machine in the same run. Everything runs on
/// loopback and is cleaned up afterwards.
#[derive(Debug, Parser)]
#[command(name = "zaphook-bench", version)]
struct Args {
    /// Small sizes: the whole run takes well under 2 minutes.
    #[arg(long)]
    quick: bool,
    /// Run one scenario only (`soak` and `backup` run only when named here).
    #[arg(long, value_parser = scenario_names())]
    scenario: Option<String>,
    /// Also write every figure as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// The zaphook binary (default: target/release/zaphook beside this binary).
    #[arg(long)]
    zaphook_bin: Option<PathBuf>,
    /// Passed through to `zaphook serve --database-url`.
    #[arg(long)]
    database_url: Option<String>,
    /// `zaphook serve` processes per pass, all on the pass's one scratch schema (needs
    /// --database-url); the load's connections alternate between them, and their CPU and
    /// peak RSS are added up.
    #[arg(long, default_value_t = 1)]
    processes: usize,
    /// Keep-alive connections of the load generator.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Distinct contacts (hence tickets) the messages are spread over.
    #[arg(long, default_value_t = 1_000)]
    contacts: u64,
    /// Runs of `throughput`, `fanout`, `isolation`, `cloud` and `backup` whose median is
    /// reported (default 3; 1 with --quick).
    #[arg(long)]
    repeat: Option<usize>,
    /// Minutes `soak` sends for (default 10; 1 with --quick).
    #[arg(long)]
    soak_minutes: Option<f64>,
    /// Messages per second `soak` sends, paced (default 200).
    #[arg(long)]
    soak_rate: Option<f64>,
    /// Instead of the scenarios: fill a fresh zaphook's delivery log with this many
    /// deliveries (straight into its database) and time the dashboard's log pages over HTTP.
    #[arg(long)]
    delivery_log: Option<u64>,
    /// Requests timed per page with --delivery-log.
    #[arg(long, default_value_t = 50)]
    samples: usize,
}

/// Every scenario `--scenario` takes: the default run's and the opt-in ones.
fn scenario_names() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(SCENARIOS.into_iter().chain(OPT_IN))
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    tokio::select! {
        code = run(args) => code,
        signal = interrupted() => {
            // Returning drops the running scenario: its zaphook is killed, its temp dir removed.
            eprintln!("{signal}: stopped");
            ExitCode::from(130)
        }
    }
}

/// Waits for Ctrl-C or SIGTERM.
async fn interrupted() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}

async fn run(args: Args) -> ExitCode {
    let mut sizes = if args.quick {
        Sizes::quick()
    } else {
        Sizes::standard()
    };
    for (flag, value, size) in [
        ("--soak-minutes", args.soak_minutes, &mut sizes.soak_minutes),
        ("--soak-rate", args.soak_rate, &mut sizes.soak_rate),
    ] {
        match value {
            Some(v) if !(v.is_finite() && v > 0.0) => {
                eprintln!("error: {flag} must be a positive number, not {v}");
                return ExitCode::from(2);
            }
            Some(v) => *size = v,
            None => {}
        }
    }
    let serve = ServeOptions {
        bin: args.zaphook_bin.clone().unwrap_or_else(server::default_bin),
        database_url: args.database_url.clone(),
        retry_schedule_ms: None,
        processes: args.processes,
    };
    if let Err(e) = serve.check() {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    if args.connections < serve.processes {
        eprintln!(
            "error: --connections {} is fewer than --processes {}: some zaphook processes would get no load",
            args.connections, serve.processes
        );
        return ExitCode::from(2);
    }
    let shape = Shape {
        connections: args.connections,
        contacts: args.contacts,
    };
    let machine = report::machine();
    let command: Vec<String> = std::env::args().collect();
    let started = report::utc_now();
    println!("zaphook-bench — {started}");
    println!(
        "machine: {} cores, {} GiB, {}; load average {}",
        machine.cores, machine.memory_gib, machine.cpu_model, machine.load_average
    );
    let store = match (&serve.database_url, serve.processes) {
        (None, _) => "SQLite, a fresh data directory".to_string(),
        (Some(_), 1) => "PostgreSQL, a scratch schema".to_string(),
        (Some(_), n) => format!("PostgreSQL, one scratch schema shared by the {n}"),
    };
    println!(
        "zaphook: {}; {} process(es) per pass ({store})",
        serve.bin.display(),
        serve.processes
    );
    println!(
        "load: {} keep-alive connections, {} contacts; sizes: {}",
        shape.connections,
        shape.contacts,
        serde_json::to_string(&sizes).unwrap_or_default()
    );
    if machine.clk_tck_assumed {
        println!("CPU times: `getconf CLK_TCK` did not answer; assuming 100 ticks/s");
    }
    if let Some(n) = args.delivery_log {
        println!(
            "\n== delivery log at {n} deliveries, {} requests per page",
            args.samples
        );
        return match zaphook_bench::log_page::run(&serve, n, args.samples.max(1)).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("delivery log: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let mut names = vec!["ceiling"];
    match &args.scenario {
        Some(one) => names.push(one.as_str()),
        None => names.extend(SCENARIOS),
    }
    let repeat = args.repeat.unwrap_or(if args.quick { 1 } else { 3 });
    println!(
        "repeat: median of {repeat} run(s) for throughput, fanout, isolation, cloud and backup"
    );
    let mut bench = Bench::new(serve, shape, sizes.clone(), repeat);
    let mut done: Vec<ScenarioReport> = Vec::new();
    let mut failure = None;
    for name in names {
        println!("\n== {name} (load average {})", report::load_average());
        match bench.run(name).await {
            Ok(scenario) => {
                print!("{}", report::table(&scenario.rows));
                for table in &scenario.tables {
                    print!("\n{table}");
                }
                for note in &scenario.notes {
                    println!("note: {note}");
                }
                done.push(scenario);
            }
            Err(e) => {
                eprintln!("{name} failed: {e}");
                failure = Some(name);
                break;
            }
        }
    }
    let rows: Vec<_> = done.iter().flat_map(|s| s.rows.iter().cloned()).collect();
    println!("\n== all results\n{}", report::table(&rows));
    let notes: Vec<&String> = done.iter().flat_map(|s| &s.notes).collect();
    for note in notes {
        println!("note: {note}");
    }
    let usage_legend = report::usage_legend(args.processes);
    println!("{usage_legend}. Goals are reported, not enforced.");
    if let Some(path) = &args.json {
        let report = Report {
            date: started,
            command: command.join(" "),
            machine,
            zaphook_processes: args.processes,
            usage_legend,
            sizes: serde_json::to_value(&sizes).unwrap_or_default(),
            scenarios: done,
        };
        let written = serde_json::to_vec_pretty(&report)
            .map_err(|e| e.to_string())
            .and_then(|json| std::fs::write(path, json).map_err(|e| e.to_string()));
        match written {
            Ok(()) => println!("JSON written to {}", path.display()),
            Err(e) => {
                eprintln!("cannot write {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        }
    }
    match failure {
        Some(f) => {
            eprintln!(
                "error: the {f} scenario failed (see above); the scenarios after it did not run"
            );
            ExitCode::FAILURE
        }
        None => ExitCode::SUCCESS,
    }
}
