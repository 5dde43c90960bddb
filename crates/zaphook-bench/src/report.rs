//! Figures and how they are shown: percentiles, the rows of the results table with their
//! goals, the machine description, and the JSON document `--json` writes.

use serde::Serialize;
use serde_json::{Map, Value};

/// The nearest-rank percentile `p` (0–100) of sorted values; `None` when there are none.
pub fn percentile(sorted: &[i64], p: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    // The epsilon keeps float noise (99.9 / 100 × 1000 = 999.0000000000001) off the next rank.
    let rank = (p / 100.0 * sorted.len() as f64 - 1e-9).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// The run whose `key` is the median (the upper middle of an even count), and every run's key
/// in run order.
pub fn median<T: Clone>(runs: &[T], key: impl Fn(&T) -> f64) -> (T, Vec<f64>) {
    let keys: Vec<f64> = runs.iter().map(&key).collect();
    let mut order: Vec<usize> = (0..runs.len()).collect();
    order.sort_by(|a, b| keys[*a].total_cmp(&keys[*b]));
    (runs[order[runs.len() / 2]].clone(), keys)
}

/// KiB → MiB.
pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// `a / b`, when `b` is a figure.
pub fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0).then(|| a / b)
}

/// A ratio with two decimals.
pub fn fmt_ratio(r: Option<f64>) -> String {
    r.map_or("—".into(), |r| format!("{r:.2}"))
}

/// `12,345/s`.
pub fn rate_cell(per_s: f64) -> String {
    format!("{}/s", thousands(per_s))
}

/// A latency distribution in milliseconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Latency {
    pub count: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    /// From samples in microseconds (negative ones are kept: they mean the webhook arrived
    /// before the acknowledgement did).
    pub fn from_us(mut samples: Vec<i64>) -> Option<Self> {
        samples.sort_unstable();
        let ms = |p: f64| percentile(&samples, p).map(|us| us as f64 / 1000.0);
        Some(Latency {
            count: samples.len(),
            p50_ms: ms(50.0)?,
            p99_ms: ms(99.0)?,
            p999_ms: ms(99.9)?,
            max_ms: ms(100.0)?,
        })
    }

    /// `p50 / p99 / p99.9 / max` in ms.
    pub fn short(&self) -> String {
        format!(
            "{:.1} / {:.1} / {:.1} / {:.1}",
            self.p50_ms, self.p99_ms, self.p999_ms, self.max_ms
        )
    }
}

/// One line of the results table.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub scenario: String,
    pub metric: String,
    pub zaphook: String,
    pub baseline: String,
    pub ratio: String,
    pub goal: String,
    /// Whether the goal is met; `None` when the row has no goal or no figure.
    pub met: Option<bool>,
    pub cpu_s_per_1k: Option<f64>,
    pub peak_rss_mib: Option<f64>,
}

impl Row {
    pub fn new(scenario: &str, metric: &str) -> Self {
        Row {
            scenario: scenario.into(),
            metric: metric.into(),
            zaphook: "—".into(),
            baseline: "—".into(),
            ratio: "—".into(),
            goal: "—".into(),
            met: None,
            cpu_s_per_1k: None,
            peak_rss_mib: None,
        }
    }
}

/// Everything one scenario produced.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioReport {
    pub name: String,
    pub rows: Vec<Row>,
    /// Every figure measured, by name, for the JSON.
    pub figures: Map<String, Value>,
    pub notes: Vec<String>,
    /// Tables of the scenario's own, in Markdown, shown after the rows (their figures are in
    /// `figures` too).
    #[serde(skip)]
    pub tables: Vec<String>,
}

impl ScenarioReport {
    pub fn new(name: &str) -> Self {
        ScenarioReport {
            name: name.into(),
            rows: Vec::new(),
            figures: Map::new(),
            notes: Vec::new(),
            tables: Vec::new(),
        }
    }

    pub fn figure(&mut self, name: &str, value: impl Serialize) {
        let value = serde_json::to_value(value).unwrap_or(Value::Null);
        self.figures.insert(name.into(), value);
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cores: usize,
    pub memory_gib: f64,
    pub cpu_model: String,
    /// 1-minute load average when the run started.
    pub load_average: String,
    pub clk_tck: u64,
    pub clk_tck_assumed: bool,
}

pub fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("unknown")
        .trim()
        .to_string();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib: f64 = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0.0);
    let (clk_tck, clk_tck_assumed) = crate::server::clock_ticks();
    Machine {
        cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
        memory_gib: (mem_kib / 1024.0 / 1024.0 * 10.0).round() / 10.0,
        cpu_model,
        load_average: load_average(),
        clk_tck,
        clk_tck_assumed,
    }
}

/// The 1, 5 and 15-minute load averages.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// UTC now as RFC 3339 (from `date`, to keep the dependencies lean).
pub fn utc_now() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// The document `--json` writes.
#[derive(Debug, Serialize)]
pub struct Report {
    /// When the run started (UTC).
    pub date: String,
    pub command: String,
    pub machine: Machine,
    /// zaphook processes per pass (more than one share one PostgreSQL schema).
    pub zaphook_processes: usize,
    /// What the CPU and peak RSS figures of zaphook measure.
    pub usage_legend: String,
    pub sizes: Value,
    pub scenarios: Vec<ScenarioReport>,
}

/// What the table's "CPU s/1k" and "peak RSS MiB" columns are, with `processes` zaphooks per
/// pass.
pub fn usage_legend(processes: usize) -> String {
    match processes {
        1 => "CPU s/1k = zaphook's CPU seconds per 1,000 webhooks delivered; peak RSS = zaphook's VmHWM (a fresh process per pass)".into(),
        n => format!(
            "CPU s/1k = the CPU seconds of all {n} zaphook processes, summed, per 1,000 webhooks delivered; peak RSS = the sum of their {n} VmHWMs (fresh processes per pass; their peaks need not coincide, so the sum may exceed what they held at once)"
        ),
    }
}

/// `12345.6` → `12,346`.
pub fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if value < 0.0 && digits != "0" {
        out.insert(0, '-');
    }
    out
}

const HEADERS: [&str; 9] = [
    "scenario",
    "metric",
    "zaphook",
    "baseline",
    "ratio",
    "goal",
    "met",
    "CPU s/1k",
    "peak RSS MiB",
];

fn cells(row: &Row) -> [String; 9] {
    [
        row.scenario.clone(),
        row.metric.clone(),
        row.zaphook.clone(),
        row.baseline.clone(),
        row.ratio.clone(),
        row.goal.clone(),
        match row.met {
            Some(true) => "yes".into(),
            Some(false) => "NO".into(),
            None => "—".into(),
        },
        row.cpu_s_per_1k.map_or("—".into(), |c| format!("{c:.3}")),
        row.peak_rss_mib.map_or("—".into(), |m| format!("{m:.0}")),
    ]
}

/// The rows as a Markdown table with aligned columns.
pub fn table(rows: &[Row]) -> String {
    let body: Vec<Vec<String>> = rows.iter().map(|r| cells(r).to_vec()).collect();
    markdown(&HEADERS, &body)
}

/// A Markdown table of `headers` over `body` (rows of as many cells), columns aligned.
pub fn markdown(headers: &[&str], body: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for cells in body {
        for (w, c) in widths.iter_mut().zip(cells) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
            .collect();
        format!("| {} |\n", padded.join(" | "))
    };
    let mut out = line(&headers.iter().map(|h| h.to_string()).collect::<Vec<_>>());
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    out.push_str(&line(&rule));
    for cells in body {
        out.push_str(&line(cells));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_is_nearest_rank() {
        let values: Vec<i64> = (1..=100).collect();
        assert_eq!(percentile(&values, 50.0), Some(50));
        assert_eq!(percentile(&values, 99.0), Some(99));
        assert_eq!(percentile(&values, 99.9), Some(100));
        assert_eq!(percentile(&values, 100.0), Some(100));
        assert_eq!(percentile(&values, 0.0), Some(1));
        assert_eq!(percentile(&[7], 99.9), Some(7));
        assert_eq!(percentile(&[], 50.0), None);
        let ten: Vec<i64> = (1..=10).map(|v| v * 10).collect();
        assert_eq!(percentile(&ten, 50.0), Some(50));
        assert_eq!(percentile(&ten, 51.0), Some(60));
        assert_eq!(percentile(&ten, 99.0), Some(100));
    }

    #[test]
    fn latency_summary_in_ms() {
        let samples: Vec<i64> = (1..=1000).map(|v| v * 1000).rev().collect();
        let l = Latency::from_us(samples).expect("samples");
        assert_eq!(l.count, 1000);
        assert_eq!(l.p50_ms, 500.0);
        assert_eq!(l.p99_ms, 990.0);
        assert_eq!(l.p999_ms, 999.0);
        assert_eq!(l.max_ms, 1000.0);
        assert!(Latency::from_us(Vec::new()).is_none());
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0.4), "0");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1234.0), "1,234");
        assert_eq!(thousands(1234567.8), "1,234,568");
        assert_eq!(thousands(-1234.0), "-1,234");
    }

    #[test]
    fn table_aligns_columns() {
        let mut row = Row::new("throughput", "delivered/s");
        row.zaphook = "1,234".into();
        row.met = Some(true);
        let text = table(&[row]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(
            lines
                .iter()
                .all(|l| l.chars().count() == lines[0].chars().count())
        );
        assert!(lines[2].contains("| yes "));
    }

    #[test]
    fn median_picks_the_middle_run() {
        let runs = [5.0, 1.0, 9.0];
        assert_eq!(median(&runs, |r| *r), (5.0, vec![5.0, 1.0, 9.0]));
        assert_eq!(median(&[3.0], |r| *r).0, 3.0);
        assert_eq!(median(&[1.0, 2.0], |r| *r).0, 2.0);
    }
}
