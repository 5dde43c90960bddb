//! Configuration: command-line flags, each also read from `ZAPHOOK_<NAME>`, with defaults
//! that work on a laptop.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::backup::Schedule;
use crate::channels::ChannelConfig;
use crate::delivery::DeliveryConfig;
use crate::delivery::housekeeping::HousekeepingConfig;
use crate::delivery::http::HttpConfig;
use crate::delivery::ssrf::{Cidr, TargetPolicy};
use crate::store::sqlite::Durability;

#[derive(Debug, Parser)]
#[command(
    name = "zaphook",
    version,
    about = "WhatsApp conversations → signed webhooks"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the API, the channels and the delivery workers.
    Serve(ServeArgs),
    /// Apply pending database migrations and exit.
    Migrate(StoreArgs),
    /// A local webhook receiver: verify signatures, print events, answer or forward them.
    Listen(ListenArgs),
    /// Queue again the failed and dead deliveries of an endpoint since a time, and follow them.
    Replay(ReplayArgs),
    /// Write a consistent copy of the SQLite database to a file, while the server runs.
    Backup(BackupArgs),
    /// Put a backup in place of a data directory's database (the server stopped); the
    /// database it replaces is kept in `<data-dir>/replaced/`.
    Restore(RestoreArgs),
    /// Manage companies.
    Company {
        #[command(subcommand)]
        command: CompanyCommand,
    },
    /// Manage API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum CompanyCommand {
    /// Create a company; prints its id and an admin token for it.
    Create {
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create an API token for a company; it is printed once and stored hashed.
    Create {
        #[arg(long)]
        company: i64,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Revoke the tokens that start with the given prefix.
    Revoke {
        prefix: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Debug, Clone, Args)]
pub struct ListenArgs {
    /// Port to listen on (127.0.0.1).
    #[arg(long, default_value_t = 9000)]
    pub port: u16,
    /// The endpoint's `whsec_…` secret, to verify each request's signature.
    #[arg(long, env = "ZAPHOOK_LISTEN_SECRET")]
    pub secret: Option<String>,
    /// Forward each request to this URL and answer what it answers.
    #[arg(long)]
    pub forward_to: Option<String>,
    /// Status to answer when not forwarding.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u16).range(100..=599))]
    pub status: u16,
    /// Seconds `webhook-timestamp` may be away from now.
    #[arg(long, default_value_t = 300)]
    pub tolerance: i64,
}

#[derive(Debug, Clone, Args)]
pub struct ReplayArgs {
    /// The endpoint's id.
    #[arg(long)]
    pub webhook: i64,
    /// RFC 3339 time: deliveries created since then are queued again.
    #[arg(long)]
    pub since: String,
    /// Queue and exit without following the deliveries.
    #[arg(long)]
    pub no_wait: bool,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Clone, Args)]
pub struct BackupArgs {
    /// The backup file to write (replaced, once the new copy is whole, if it exists).
    #[arg(long)]
    pub to: PathBuf,
    /// Directory of the SQLite database to back up.
    #[arg(long, env = "ZAPHOOK_DATA_DIR", default_value = "./zaphook-data")]
    pub data_dir: PathBuf,
    /// Refused when set: a PostgreSQL database is backed up with PostgreSQL's tools.
    #[arg(long, env = "ZAPHOOK_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct RestoreArgs {
    /// The backup to restore (made by `zaphook backup` or `serve --backup-every`).
    #[arg(long)]
    pub from: PathBuf,
    /// Data directory to restore into (created if missing); no zaphook may be running on it.
    #[arg(long, env = "ZAPHOOK_DATA_DIR", default_value = "./zaphook-data")]
    pub data_dir: PathBuf,
    /// The secret key the backup's server ran with, when it was not kept in its data
    /// directory's secret.key.
    #[arg(long, env = "ZAPHOOK_SECRET_KEY", hide_env_values = true)]
    pub secret_key: Option<String>,
}

/// Where the data lives.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// Directory of the SQLite database and stored media.
    #[arg(long, env = "ZAPHOOK_DATA_DIR", default_value = "./zaphook-data")]
    pub data_dir: PathBuf,
    /// `postgres://…` to use PostgreSQL instead of SQLite.
    #[arg(long, env = "ZAPHOOK_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// PostgreSQL connections this process opens (half of them for writes).
    #[arg(long, env = "ZAPHOOK_DATABASE_POOL", default_value_t = 8, value_parser = clap::value_parser!(u16).range(2..=512))]
    pub database_pool: u16,
    /// `full` (default): a commit survives power loss; `normal`: it survives a crash of the
    /// process but may be lost with the machine's power.
    #[arg(
        long,
        env = "ZAPHOOK_SQLITE_SYNCHRONOUS",
        value_enum,
        default_value = "full"
    )]
    pub sqlite_synchronous: Synchronous,
    /// Key that seals connection secrets at rest: 32 bytes as base64 or hex. Default: the key
    /// in `<data-dir>/secret.key`, generated on first start.
    #[arg(long, env = "ZAPHOOK_SECRET_KEY", hide_env_values = true)]
    pub secret_key: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Synchronous {
    Full,
    Normal,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address the HTTP server listens on.
    #[arg(long, env = "ZAPHOOK_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub store: StoreArgs,
    /// Admin token of company 1 (created on an empty database); generated and printed when
    /// not given.
    #[arg(long, env = "ZAPHOOK_BOOTSTRAP_TOKEN")]
    pub bootstrap_token: Option<String>,
    /// Let webhooks reach loopback and private addresses (local development and tests).
    #[arg(long, env = "ZAPHOOK_ALLOW_PRIVATE_TARGETS", value_parser = BoolishValueParser::new())]
    pub allow_private_targets: bool,
    /// Internal networks webhooks may reach, comma separated CIDRs (e.g. 10.20.0.0/16).
    #[arg(long, env = "ZAPHOOK_ALLOW_PRIVATE_CIDRS", value_delimiter = ',')]
    pub allow_private_cidrs: Vec<Cidr>,
    /// Public base URL of this server (the base of `mediaUrl`).
    #[arg(long, env = "ZAPHOOK_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Whole-request timeout of a webhook delivery, in seconds.
    #[arg(long, env = "ZAPHOOK_DELIVERY_TIMEOUT", default_value_t = 15)]
    pub delivery_timeout: u64,
    /// How long a claimed delivery is held before another worker may take it, in seconds;
    /// must exceed the delivery timeout (default: the timeout + 30 s).
    #[arg(long, env = "ZAPHOOK_DELIVERY_LEASE")]
    pub delivery_lease: Option<u64>,
    /// Seconds shutdown waits for attempts in flight before giving them back to the queue.
    #[arg(long, env = "ZAPHOOK_SHUTDOWN_GRACE", default_value_t = 10)]
    pub shutdown_grace: u64,
    /// Days delivered and dead deliveries are kept in the delivery log.
    #[arg(long, env = "ZAPHOOK_RETENTION_DAYS", default_value_t = 30)]
    pub retention_days: u64,
    /// Attempts in flight at once to one endpoint.
    #[arg(long, env = "ZAPHOOK_ENDPOINT_CONCURRENCY", default_value_t = 64)]
    pub endpoint_concurrency: usize,
    /// Delays between attempts in milliseconds, comma separated (replaces the default
    /// schedule; for tests and special setups).
    #[arg(
        long,
        env = "ZAPHOOK_RETRY_SCHEDULE_MS",
        value_delimiter = ',',
        hide = true
    )]
    pub retry_schedule_ms: Vec<u64>,
    /// Take a backup of the SQLite database this often (`30m`, `6h`, `1d`); none when unset.
    #[arg(long, env = "ZAPHOOK_BACKUP_EVERY", value_parser = parse_interval)]
    pub backup_every: Option<Duration>,
    /// Scheduled backups kept; the oldest beyond are removed.
    #[arg(long, env = "ZAPHOOK_BACKUP_KEEP", default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..))]
    pub backup_keep: u32,
    /// Directory of the scheduled backups (default `<data-dir>/backups`; another disk is
    /// better).
    #[arg(long, env = "ZAPHOOK_BACKUP_DIR")]
    pub backup_dir: Option<PathBuf>,
    /// Milliseconds a claimed Cloud API callback body is held before another worker may read
    /// it again (default 120 s; for tests).
    #[arg(long, env = "ZAPHOOK_INBOX_LEASE_MS", hide = true)]
    pub inbox_lease_ms: Option<u64>,
}

/// Everything the application needs to start.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
    /// PostgreSQL connections to open.
    pub database_pool: usize,
    pub durability: Durability,
    pub secret_key: Option<String>,
    pub bootstrap_token: Option<String>,
    pub public_url: Option<String>,
    pub http: HttpConfig,
    pub delivery: DeliveryConfig,
    pub housekeeping: HousekeepingConfig,
    pub channels: ChannelConfig,
    /// Whether the delivery workers run (tests turn them off to play a dead worker).
    pub run_workers: bool,
    /// Scheduled backups of the SQLite database, if any.
    pub backup: Option<Schedule>,
}

/// A time interval as a number and a unit: `90s`, `30m`, `6h`, `1d`.
pub fn parse_interval(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?}: give a number and a unit, like 30m, 6h or 1d"))?;
    let unit_secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{text:?}: the unit must be s, m, h or d")),
    };
    match number.checked_mul(unit_secs) {
        Some(0) => Err(format!("{text:?}: the interval must be longer than 0")),
        Some(secs) => Ok(Duration::from_secs(secs)),
        None => Err(format!("{text:?} is too long")),
    }
}

impl StoreArgs {
    pub fn durability(&self) -> Durability {
        match self.sqlite_synchronous {
            Synchronous::Full => Durability::Full,
            Synchronous::Normal => Durability::Normal,
        }
    }
}

impl Settings {
    /// Defaults for a server on `listen` keeping its data in `data_dir`.
    pub fn new(listen: SocketAddr, data_dir: PathBuf) -> Self {
        let channels = ChannelConfig::new(&data_dir);
        Settings {
            listen,
            data_dir,
            database_url: None,
            database_pool: 8,
            durability: Durability::Full,
            secret_key: None,
            bootstrap_token: None,
            public_url: None,
            http: HttpConfig::default(),
            delivery: DeliveryConfig::default(),
            housekeeping: HousekeepingConfig::default(),
            channels,
            run_workers: true,
            backup: None,
        }
    }

    pub fn from_serve(args: ServeArgs) -> Self {
        let mut s = Settings::new(args.listen, args.store.data_dir.clone());
        s.database_url = args.store.database_url.clone();
        s.database_pool = args.store.database_pool.into();
        s.durability = args.store.durability();
        s.secret_key = args.store.secret_key.clone();
        s.bootstrap_token = args.bootstrap_token;
        s.public_url = args.public_url;
        s.http.targets = TargetPolicy {
            allow_private: args.allow_private_targets,
            allowed: args.allow_private_cidrs,
        };
        s.http.request_timeout = Duration::from_secs(args.delivery_timeout.max(1));
        s.delivery.per_endpoint = args.endpoint_concurrency.max(1);
        s.delivery.drain_timeout = Duration::from_secs(args.shutdown_grace);
        s.housekeeping.retention = Duration::from_secs(args.retention_days.max(1) * 24 * 3600);
        s.delivery.lease = match args.delivery_lease {
            Some(secs) => Duration::from_secs(secs),
            None => s.http.request_timeout + Duration::from_secs(30),
        };
        s.backup = args.backup_every.map(|every| Schedule {
            every,
            keep: args.backup_keep as usize,
            dir: args
                .backup_dir
                .clone()
                .unwrap_or_else(|| args.store.data_dir.join("backups")),
        });
        if let Some(ms) = args.inbox_lease_ms {
            s.channels.inbox_lease = Duration::from_millis(ms);
        }
        if !args.retry_schedule_ms.is_empty() {
            s.delivery.retry.schedule = args
                .retry_schedule_ms
                .iter()
                .map(|ms| Duration::from_millis(*ms))
                .collect();
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_read_as_operators_write_them() {
        assert_eq!(parse_interval("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_interval("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_interval(" 6h "), Ok(Duration::from_secs(6 * 3600)));
        assert_eq!(parse_interval("1d"), Ok(Duration::from_secs(86_400)));
        for bad in [
            "",
            "6",
            "h",
            "0h",
            "6 h",
            "6hours",
            "-1h",
            "1.5h",
            "99999999999999999999d",
        ] {
            assert!(parse_interval(bad).is_err(), "{bad:?} was taken");
        }
    }
}
