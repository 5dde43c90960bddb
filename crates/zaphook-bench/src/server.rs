//! The system under test: the `zaphook` release binary started as a child process on a fresh
//! data directory (or, on PostgreSQL, as several processes sharing one scratch schema), its
//! API (connections, webhooks, `/metrics`), and what it costs (CPU time, RSS and open file
//! descriptors read from /proc, summed over the processes). The children are killed, their
//! directories removed and the schema dropped when dropped.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, Request};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};

use crate::relay::{HttpClient, http_client};

/// The admin token of company 1 of every benchmark server.
pub const TOKEN: &str = "zaphook-bench-admin-token";

/// How zaphook is started.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub bin: PathBuf,
    /// Passed through as `--database-url` when set.
    pub database_url: Option<String>,
    /// Passed as the hidden `--retry-schedule-ms` when set.
    pub retry_schedule_ms: Option<Vec<u64>>,
    /// `zaphook serve` processes per pass, all on the pass's one schema; more than one needs
    /// `database_url` (on SQLite each process would have a database of its own).
    pub processes: usize,
}

impl ServeOptions {
    /// Refuses options no pass can run with.
    pub fn check(&self) -> crate::Result<()> {
        if self.processes == 0 {
            return Err("--processes must be at least 1".into());
        }
        if self.processes > 1 && self.database_url.is_none() {
            return Err(format!(
                "--processes {} needs --database-url postgres://…: several zaphook processes share one PostgreSQL database, while on SQLite each would have a database of its own",
                self.processes
            )
            .into());
        }
        Ok(())
    }
}

/// The secret key every process of a multi-process pass is given. Alone, each would generate
/// one into its own data directory, and the second would refuse to start because the first
/// sealed the database's check value with another key. Safe to fix: the schema lives for one
/// pass and only holds the benchmark's made-up Cloud API secrets.
/// (Hex of the 32 bytes `zaphook-bench-shared-secret-key!`.)
const SHARED_SECRET_KEY: &str = "7a6170686f6f6b2d62656e63682d7368617265642d7365637265742d6b657921";

/// The default binary: `target/release/zaphook` beside (or above) this benchmark's binary.
pub fn default_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    match exe.parent() {
        Some(dir) if dir.file_name().is_some_and(|n| n == "release") => dir.join("zaphook"),
        Some(dir) => dir.parent().unwrap_or(dir).join("release").join("zaphook"),
        None => PathBuf::from("target/release/zaphook"),
    }
}

/// CPU time and memory of a process.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    /// User + system CPU seconds so far.
    pub cpu_s: f64,
    /// Peak resident set size (VmHWM), KiB.
    pub peak_rss_kib: u64,
    /// Resident set size now (VmRSS), KiB.
    pub rss_kib: u64,
}

/// Clock ticks per second of /proc's CPU times, and whether it was assumed (100) because
/// `getconf CLK_TCK` did not answer.
pub fn clock_ticks() -> (u64, bool) {
    static TICKS: OnceLock<(u64, bool)> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .map(|t| (t, false))
            .unwrap_or((100, true))
    })
}

/// The usage of process `pid`, from /proc/PID/stat and /proc/PID/status.
pub fn usage(pid: u32) -> Option<Usage> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some(Usage {
        cpu_s: cpu_ticks(&stat)? as f64 / clock_ticks().0 as f64,
        peak_rss_kib: status_kib(&status, "VmHWM:")?,
        rss_kib: status_kib(&status, "VmRSS:")?,
    })
}

/// How many file descriptors process `pid` has open (the entries of /proc/PID/fd).
pub fn open_fds(pid: u32) -> Option<u64> {
    let entries = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    Some(entries.count() as u64)
}

/// utime + stime (fields 14 and 15 of /proc/PID/stat).
fn cpu_ticks(stat: &str) -> Option<u64> {
    stat_sum(stat, 14)
}

/// CPU seconds of this process's children that exited and were waited for, so far.
pub fn children_cpu_s() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    Some(children_ticks(&stat)? as f64 / clock_ticks().0 as f64)
}

/// cutime + cstime (fields 16 and 17 of /proc/PID/stat): the children waited for.
fn children_ticks(stat: &str) -> Option<u64> {
    stat_sum(stat, 16)
}

/// Field `n` + field `n + 1` of /proc/PID/stat (the command name before them may hold spaces
/// and parentheses, so count from its closing one).
fn stat_sum(stat: &str, n: usize) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // `after` starts at field 3 (state).
    let first: u64 = fields.get(n - 3)?.parse().ok()?;
    let second: u64 = fields.get(n + 1 - 3)?.parse().ok()?;
    Some(first + second)
}

/// The KiB of the /proc/PID/status line that starts with `key` (`VmHWM:`, `VmRSS:`).
fn status_kib(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Warning and error lines kept as they came, to show.
const NOTABLE_KEPT: usize = 10;

/// What the child wrote on stderr: the last lines, how many warnings and errors, and the first
/// of those lines.
#[derive(Default)]
struct Stderr {
    tail: Mutex<VecDeque<String>>,
    warnings: AtomicU64,
    errors: AtomicU64,
    notable: Mutex<Vec<String>>,
}

/// The zaphook under test: one `zaphook serve`, or several sharing one PostgreSQL schema.
pub struct Zaphook {
    /// The first created the schema's tables; the API set-up goes to it, and the others see
    /// what it creates since they share the database.
    processes: Vec<Process>,
    client: HttpClient,
    /// Declared after `processes` so it is dropped after them: the schema goes once, when no
    /// process uses it any more.
    _schema: Option<Scratch>,
}

/// One running `zaphook serve` child.
struct Process {
    child: Child,
    pid: u32,
    addr: SocketAddr,
    stderr: Arc<Stderr>,
    dir: tempfile::TempDir,
}

/// A schema of its own on the PostgreSQL database, for one pass, dropped afterwards (so every
/// pass starts as empty as on SQLite).
struct Scratch {
    base: String,
    name: String,
}

impl Scratch {
    async fn create(base: &str) -> crate::Result<Self> {
        let name = format!("zaphook_bench_{}_{}", std::process::id(), crate::now_us());
        run_sql(base, format!("CREATE SCHEMA {name}")).await?;
        Ok(Scratch {
            base: base.to_string(),
            name,
        })
    }

    /// The URL that selects this schema.
    fn url(&self) -> String {
        let separator = if self.base.contains('?') { '&' } else { '?' };
        format!(
            "{}{separator}options=-csearch_path%3D{}",
            self.base, self.name
        )
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let (base, sql) = (
            self.base.clone(),
            format!("DROP SCHEMA {} CASCADE", self.name),
        );
        // The blocking client cannot run on the runtime's threads.
        let _ = std::thread::spawn(move || blocking_sql(&base, &sql)).join();
    }
}

fn blocking_sql(url: &str, sql: &str) -> Result<(), String> {
    let mut client = postgres::Client::connect(url, postgres::NoTls)
        .map_err(|e| format!("--database-url: {e}"))?;
    client.batch_execute(sql).map_err(|e| e.to_string())
}

async fn run_sql(url: &str, sql: String) -> crate::Result<()> {
    let url = url.to_string();
    tokio::task::spawn_blocking(move || blocking_sql(&url, &sql))
        .await
        .map_err(|e| e.to_string())??;
    Ok(())
}

impl Zaphook {
    /// Starts `options.processes` zaphooks, each on a loopback port and a fresh data
    /// directory, on PostgreSQL all on one fresh schema.
    pub async fn start(options: &ServeOptions) -> crate::Result<Self> {
        options.check()?;
        if !options.bin.is_file() {
            return Err(format!(
                "the zaphook binary is missing at {}: build it with `cargo build --release --workspace` (or pass --zaphook-bin PATH)",
                options.bin.display()
            )
            .into());
        }
        let schema = match &options.database_url {
            Some(url) => Some(Scratch::create(url).await?),
            None => None,
        };
        let url = schema.as_ref().map(Scratch::url);
        let mut processes = Vec::with_capacity(options.processes);
        // One after the other: the first migrates the empty schema, and the others must not
        // race it to do so.
        for n in 1..=options.processes {
            match Process::start(options, url.as_deref()).await {
                Ok(process) => processes.push(process),
                Err(e) => {
                    // Gone before the schema is dropped, which their connections would hold up.
                    for process in processes {
                        process.stop().await;
                    }
                    return Err(match options.processes {
                        1 => e,
                        all => format!("zaphook process {n} of {all}: {e}").into(),
                    });
                }
            }
        }
        Ok(Zaphook {
            processes,
            client: http_client(),
            _schema: schema,
        })
    }

    /// How many processes run.
    pub fn processes(&self) -> usize {
        self.processes.len()
    }

    /// Every process's address, for the load to spread over.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.processes.iter().map(|p| p.addr).collect()
    }

    /// CPU seconds and peak RSS, each the sum over the processes (their peaks need not have
    /// come at the same moment, so the summed peak may exceed what they ever held at once).
    pub fn usage(&self) -> crate::Result<Usage> {
        let mut sum = Usage::default();
        for process in &self.processes {
            let one = usage(process.pid)
                .ok_or_else(|| format!("cannot read /proc/{} (did zaphook exit?)", process.pid))?;
            sum.cpu_s += one.cpu_s;
            sum.peak_rss_kib += one.peak_rss_kib;
            sum.rss_kib += one.rss_kib;
        }
        Ok(sum)
    }

    /// File descriptors open, summed over the processes.
    pub fn open_fds(&self) -> crate::Result<u64> {
        let mut sum = 0;
        for process in &self.processes {
            sum += open_fds(process.pid).ok_or_else(|| {
                format!("cannot read /proc/{}/fd (did zaphook exit?)", process.pid)
            })?;
        }
        Ok(sum)
    }

    /// The first process's data directory: on SQLite, where its `zaphook.db` and the
    /// database's WAL are.
    pub fn data_dir(&self) -> &Path {
        self.processes[0].dir.path()
    }

    /// The Prometheus text of the first process's `/metrics`.
    pub async fn metrics(&self) -> crate::Result<String> {
        let request = Request::builder()
            .uri(format!("http://{}/metrics", self.processes[0].addr))
            .body(Full::new(Bytes::new()))?;
        let response = self.client.request(request).await?;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        if !status.is_success() {
            return Err(format!("GET /metrics answered {status}").into());
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Warning and error lines zaphook logged so far, over every process.
    pub fn log_counts(&self) -> (u64, u64) {
        self.processes.iter().fold((0, 0), |(w, e), p| {
            (
                w + p.stderr.warnings.load(Ordering::Relaxed),
                e + p.stderr.errors.load(Ordering::Relaxed),
            )
        })
    }

    /// The first warning and error lines zaphook logged (up to ten of each process), each
    /// saying which process when there are several.
    pub fn log_notable(&self) -> Vec<String> {
        self.labelled(|p| p.stderr.notable.lock().expect("notable").clone())
    }

    /// The last `n` lines each process logged.
    pub fn log_tail(&self, n: usize) -> Vec<String> {
        self.labelled(|p| {
            let tail = p.stderr.tail.lock().expect("tail");
            tail.iter()
                .skip(tail.len().saturating_sub(n))
                .cloned()
                .collect()
        })
    }

    /// The lines `of` each process, prefixed with the process's number when there are several.
    fn labelled(&self, of: impl Fn(&Process) -> Vec<String>) -> Vec<String> {
        let several = self.processes.len() > 1;
        let mut out = Vec::new();
        for (i, process) in self.processes.iter().enumerate() {
            for line in of(process) {
                out.push(if several {
                    format!("[process {}] {line}", i + 1)
                } else {
                    line
                });
            }
        }
        out
    }

    /// Creates a sandbox connection; returns its id.
    pub async fn create_connection(&self) -> crate::Result<i64> {
        let created = self
            .call(
                "/api/v1/connections",
                json!({"name": "bench", "channel": "sandbox"}),
            )
            .await?;
        created["id"]
            .as_i64()
            .ok_or_else(|| format!("no id in {created}").into())
    }

    /// Creates a WhatsApp Cloud API connection with [`crate::cloud::connection_settings`];
    /// returns its id.
    pub async fn create_cloud_connection(&self) -> crate::Result<i64> {
        let created = self
            .call(
                "/api/v1/connections",
                json!({"name": "Cloud", "channel": "cloud", "cloud": crate::cloud::connection_settings()}),
            )
            .await?;
        created["id"]
            .as_i64()
            .ok_or_else(|| format!("no id in {created}").into())
    }

    /// Creates an endpoint for `message.created` at `url`; returns its id.
    pub async fn create_webhook(&self, url: &str) -> crate::Result<i64> {
        let created = self
            .call(
                "/api/v1/webhooks",
                json!({"url": url, "events": ["message.created"]}),
            )
            .await?;
        created["id"]
            .as_i64()
            .ok_or_else(|| format!("no id in {created}").into())
    }

    /// POSTs `body` to the first process's API as the admin; fails unless the answer is 2xx.
    async fn call(&self, path: &str, body: Value) -> crate::Result<Value> {
        let request = Request::builder()
            .method(Method::POST)
            .uri(format!("http://{}{path}", self.processes[0].addr))
            .header(CONTENT_TYPE, "application/json")
            .header(AUTHORIZATION, format!("Bearer {TOKEN}"))
            .body(Full::new(Bytes::from(body.to_string())))?;
        let response = self.client.request(request).await?;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        if !status.is_success() {
            return Err(format!(
                "POST {path} answered {status}: {}",
                String::from_utf8_lossy(&bytes)
            )
            .into());
        }
        Ok(serde_json::from_slice(&bytes)?)
    }

    /// The PostgreSQL URL of the pass's scratch schema, when on PostgreSQL.
    pub fn database_url(&self) -> Option<String> {
        self._schema.as_ref().map(Scratch::url)
    }

    /// One request to the first process, as a browser makes it: `cookie` sent, no redirect
    /// followed. Answers the status, the `Set-Cookie` values and the body.
    pub async fn browse(
        &self,
        method: Method,
        path: &str,
        cookie: &str,
        form: Option<String>,
    ) -> crate::Result<(u16, Vec<String>, String)> {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.processes[0].addr));
        if !cookie.is_empty() {
            request = request.header(hyper::header::COOKIE, cookie);
        }
        if form.is_some() {
            request = request.header(CONTENT_TYPE, "application/x-www-form-urlencoded");
        }
        let request = request.body(Full::new(Bytes::from(form.unwrap_or_default())))?;
        let response = self.client.request(request).await?;
        let status = response.status().as_u16();
        let cookies = response
            .headers()
            .get_all(hyper::header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_string)
            .collect();
        let bytes = response.into_body().collect().await?.to_bytes();
        Ok((
            status,
            cookies,
            String::from_utf8_lossy(&bytes).into_owned(),
        ))
    }

    /// Kills every process and waits for them to go, then drops the schema (with `self`).
    pub async fn stop(self) {
        let Zaphook {
            processes,
            _schema: schema,
            ..
        } = self;
        for process in processes {
            process.stop().await;
        }
        drop(schema);
    }
}

impl Process {
    /// Starts `zaphook serve` on a loopback port and a fresh data directory (on the database
    /// at `database_url` when given), and waits for its `zaphook listening on http://ADDR`
    /// line.
    async fn start(options: &ServeOptions, database_url: Option<&str>) -> crate::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("zaphook-bench-")
            .tempdir()?;
        let mut command = Command::new(&options.bin);
        command
            .arg("serve")
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .args(["--bootstrap-token", TOKEN, "--allow-private-targets"]);
        if let Some(url) = database_url {
            command.args(["--database-url", url]);
        }
        if options.processes > 1 {
            command.args(["--secret-key", SHARED_SECRET_KEY]);
        }
        if let Some(schedule) = &options.retry_schedule_ms {
            let list: Vec<String> = schedule.iter().map(u64::to_string).collect();
            command.arg(format!("--retry-schedule-ms={}", list.join(",")));
        }
        flags_only(&mut command)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", options.bin.display()))?;
        let pid = child.id().ok_or("zaphook exited at once")?;
        let stderr = Arc::new(Stderr::default());
        let stderr_task = tokio::spawn(drain_stderr(
            child.stderr.take().ok_or("no stderr")?,
            Arc::clone(&stderr),
        ));
        let mut stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
        let listening = tokio::time::timeout(Duration::from_secs(60), async {
            while let Ok(Some(line)) = stdout.next_line().await {
                if let Some(addr) = line.strip_prefix("zaphook listening on http://") {
                    return addr.trim().parse::<SocketAddr>().ok();
                }
            }
            None
        })
        .await;
        let addr = match listening {
            Ok(Some(addr)) => addr,
            Ok(None) => {
                let status = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
                let _ = tokio::time::timeout(Duration::from_secs(1), stderr_task).await;
                let tail: Vec<String> = stderr.tail.lock().expect("tail").iter().cloned().collect();
                let status = match status {
                    Ok(Ok(s)) => s.to_string(),
                    _ => "still running".into(),
                };
                return Err(format!(
                    "zaphook exited before listening ({status}); its stderr:\n{}",
                    tail.join("\n")
                )
                .into());
            }
            Err(_) => return Err("zaphook did not print its listening line within 60 s".into()),
        };
        // Keep reading stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = stdout.next_line().await {} });
        Ok(Process {
            child,
            pid,
            addr,
            stderr,
            dir,
        })
    }

    /// Kills zaphook and waits for it to go; the data directory goes with `self`.
    async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}

/// Makes only `command`'s flags configure the zaphook it runs, whatever this shell exports
/// (`ZAPHOOK_*`, backtraces, colours).
pub(crate) fn flags_only(command: &mut Command) -> &mut Command {
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("ZAPHOOK_") {
            command.env_remove(name);
        }
    }
    command
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .env("NO_COLOR", "1")
}

async fn drain_stderr(stream: impl AsyncRead + Unpin, into: Arc<Stderr>) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let warning = line.contains(" WARN ");
        let error = line.contains(" ERROR ");
        if warning {
            into.warnings.fetch_add(1, Ordering::Relaxed);
        }
        if error {
            into.errors.fetch_add(1, Ordering::Relaxed);
        }
        if warning || error {
            let mut notable = into.notable.lock().expect("notable");
            if notable.len() < NOTABLE_KEPT {
                notable.push(line.clone());
            }
        }
        let mut tail = into.tail.lock().expect("tail");
        if tail.len() == 50 {
            tail.pop_front();
        }
        tail.push_back(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cpu_ticks_and_peak_rss() {
        let stat = "1234 (my (odd) name) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 9 0 100 200 300";
        assert_eq!(cpu_ticks(stat), Some(300));
        let waited = "1234 (x) S 1 2 3 4 5 6 7 8 9 10 250 50 70 5 20 0 9 0 100 200 300";
        assert_eq!(children_ticks(waited), Some(75));
        let status = "Name:\tzaphook\nVmPeak:\t  9000 kB\nVmHWM:\t    4321 kB\nVmRSS:\t 4000 kB\n";
        assert_eq!(status_kib(status, "VmHWM:"), Some(4321));
        assert_eq!(status_kib(status, "VmRSS:"), Some(4000));
        assert_eq!(status_kib(status, "VmSwap:"), None);
    }

    #[test]
    fn several_processes_need_postgresql() {
        let options = |database_url: Option<&str>, processes| ServeOptions {
            bin: PathBuf::from("zaphook"),
            database_url: database_url.map(String::from),
            retry_schedule_ms: None,
            processes,
        };
        let pg = Some("postgres://localhost/test");
        assert!(options(None, 1).check().is_ok());
        assert!(options(pg, 3).check().is_ok());
        let refused = options(None, 2)
            .check()
            .expect_err("SQLite with 2 processes");
        assert!(refused.to_string().contains("--database-url"), "{refused}");
        assert!(options(pg, 0).check().is_err());
    }

    #[test]
    fn reads_this_process() {
        let me = usage(std::process::id()).expect("/proc of this process");
        assert!(me.peak_rss_kib > 0);
        assert!(me.rss_kib > 0 && me.rss_kib <= me.peak_rss_kib);
        let _file = std::fs::File::open("/proc/self/status").expect("open a file");
        let fds = open_fds(std::process::id()).expect("/proc/PID/fd of this process");
        assert!(fds >= 1, "{fds}");
    }
}
