//! The `zaphook` command line: `serve`, `migrate`, `listen`, `replay`, `backup`, `restore`,
//! `company create`, `token create|revoke`.

use anyhow::Context;
use clap::Parser;
use tracing_subscriber::EnvFilter;

use zaphook::app::{self, Application};
use zaphook::clock::Clock;
use zaphook::settings::{
    BackupArgs, Cli, Command, CompanyCommand, ListenArgs, ReplayArgs, RestoreArgs, Settings,
    StoreArgs, TokenCommand,
};
use zaphook::store;

// mimalloc, also in place of the C library's malloc (the `override` feature), so SQLite's
// many small allocations on the writer thread take no lock and reuse freed blocks quickly.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Runs the command; a failure is one line on stderr (with its causes, joined by `: `) and
/// exit status 1.
fn main() -> std::process::ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("zaphook: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("zaphook: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("ZAPHOOK_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colours for a terminal only: a log file or a journal gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match Cli::parse().command {
        Command::Serve(args) => serve(Settings::from_serve(args)).await,
        Command::Listen(args) => listen(args).await,
        Command::Replay(args) => replay(args).await,
        Command::Backup(args) => backup(args),
        Command::Restore(args) => restore(args),
        Command::Migrate(args) => {
            open(&args)?;
            println!("migrations applied");
            Ok(())
        }
        Command::Company {
            command: CompanyCommand::Create { name, store },
        } => {
            let (id, token) = app::create_company(&open(&store)?, &name).await?;
            println!("company {id} created");
            println!("admin token (shown once): {token}");
            Ok(())
        }
        Command::Token {
            command: TokenCommand::Create { company, store },
        } => {
            let token = app::create_token(&open(&store)?, company).await?;
            println!("token (shown once): {token}");
            Ok(())
        }
        Command::Token {
            command: TokenCommand::Revoke { prefix, store },
        } => {
            anyhow::ensure!(
                prefix.len() >= 6,
                "give at least the first 6 characters of the token"
            );
            let now = Clock::System.now_ms();
            let revoked =
                store::write(&open(&store)?, move |tx| tx.revoke_tokens(&prefix, now)).await?;
            println!("{revoked} token(s) revoked");
            Ok(())
        }
    }
}

fn open(args: &StoreArgs) -> anyhow::Result<std::sync::Arc<dyn store::Store>> {
    app::open_store(
        &args.data_dir,
        args.database_url.as_deref(),
        args.database_pool.into(),
        args.durability(),
        args.secret_key.as_deref(),
    )
    .context("opening the database")
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let app = Application::build(settings).await?;
    if let Some(token) = &app.generated_token {
        println!("Admin token of company 1 (shown only now; keep it): {token}");
    }
    println!("zaphook listening on http://{}", app.local_addr());
    app.run_until_stopped(shutdown_signal()).await?;
    Ok(())
}

async fn listen(args: ListenArgs) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port))
        .await
        .with_context(|| format!("cannot listen on 127.0.0.1:{}", args.port))?;
    println!(
        "zaphook listen on http://{}/ — point a webhook there (start the server with --allow-private-targets); Ctrl-C to stop",
        listener.local_addr()?
    );
    if args.secret.is_none() {
        println!("no --secret given: signatures are shown but not checked");
    }
    let options = zaphook::listen::ListenOptions {
        secret: args.secret,
        forward_to: args.forward_to,
        status: args.status,
        tolerance_secs: args.tolerance,
    };
    zaphook::listen::serve(
        listener,
        options,
        Box::new(std::io::stdout()),
        shutdown_signal(),
    )
    .await?;
    Ok(())
}

async fn replay(args: ReplayArgs) -> anyhow::Result<()> {
    let since = zaphook::domain::rfc3339::parse(args.since.trim())
        .context("--since must be an RFC 3339 time, like 2026-11-27T00:00:00Z")?;
    let store = open(&args.store)?;
    let (queued, mark) = zaphook::replay::queue(&store, args.webhook, since).await?;
    println!(
        "replay: {queued} deliveries of webhook {} queued again",
        args.webhook
    );
    if queued == 0 || args.no_wait {
        return Ok(());
    }
    let done = zaphook::replay::follow(&store, args.webhook, mark, queued).await?;
    println!(
        "replay: done: {} delivered, {} failed again, {} dead",
        done.delivered, done.failed, done.dead
    );
    Ok(())
}

fn backup(args: BackupArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.database_url.is_none(),
        "zaphook backup copies the embedded SQLite database; a PostgreSQL database is backed up with pg_dump or the provider's backups (--database-url / ZAPHOOK_DATABASE_URL is set)"
    );
    let database = args.data_dir.join(app::DATABASE_FILE);
    let taken = zaphook::backup::take(&database, &args.to)?;
    println!(
        "backup written: {} ({}, schema {}, in {:.1} s)",
        taken.path.display(),
        mebibytes(taken.bytes),
        taken.schema,
        taken.took.as_secs_f64()
    );
    let key = args.data_dir.join(zaphook::secrets::KEY_FILE);
    if key.exists() {
        println!(
            "the secret key is not in the backup: keep a copy of {} too, in another place",
            key.display()
        );
    }
    Ok(())
}

fn restore(args: RestoreArgs) -> anyhow::Result<()> {
    let restored =
        zaphook::backup::restore(&args.from, &args.data_dir, args.secret_key.as_deref())?;
    println!(
        "restored {} into {} ({}, schema {})",
        args.from.display(),
        args.data_dir.display(),
        mebibytes(restored.bytes),
        restored.schema
    );
    if let Some(replaced) = restored.replaced {
        println!("the database it replaced is in {}", replaced.display());
    }
    Ok(())
}

fn mebibytes(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
    tracing::info!("shutting down");
}
