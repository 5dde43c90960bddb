//! How endpoints fare, as the pages show it: an endpoint's last hour's and day's attempts,
//! success rate and latency percentiles, its backlog, and two charts drawn here as SVG
//! (attempts per five minutes by outcome, and their latency) of one endpoint or of all the
//! company's, from the store's per-minute attempt counts.

use std::fmt::Write;

use super::i18n::Texts;
use crate::store::dashboard::minute_of;
use crate::store::dashboard::{AttemptTally, LATENCY_BOUNDS_MS};
use crate::store::{EndpointBacklog, StoreError, Tx};

/// Minutes the charts cover, and the minutes each bar adds up.
const CHART_MINUTES: i64 = 6 * 60;
const BAR_MINUTES: i64 = 5;
const BARS: usize = (CHART_MINUTES / BAR_MINUTES) as usize;

/// One period's figures, as text.
pub struct Period {
    pub attempts: i64,
    pub success: Option<String>,
    pub p50: Option<String>,
    pub p95: Option<String>,
}

impl Period {
    fn of(tally: &AttemptTally) -> Period {
        Period {
            attempts: tally.attempts(),
            success: tally.success_rate().map(|r| format!("{:.1} %", r * 100.0)),
            p50: tally.latency_bound(0.5).map(bound),
            p95: tally.latency_bound(0.95).map(bound),
        }
    }
}

/// The two charts, as SVG markup.
pub struct Charts {
    pub outcomes_svg: String,
    pub latency_svg: String,
}

/// The charts of the company's attempts (or one endpoint's) up to `now`.
pub fn charts(
    tx: &mut dyn Tx,
    t: &Texts,
    company_id: i64,
    webhook_id: Option<i64>,
    now: i64,
) -> Result<Charts, StoreError> {
    // Bars end with the current five minutes.
    let first = (minute_of(now).div_euclid(BAR_MINUTES) + 1) * BAR_MINUTES - CHART_MINUTES;
    let series = tx.attempt_minutes(company_id, webhook_id, first)?;
    let bars = bars(&series, first);
    Ok(Charts {
        outcomes_svg: outcomes_svg(&bars, first, t),
        latency_svg: latency_svg(&bars, first, t),
    })
}

/// What an endpoint's page shows of its health.
pub struct Health {
    /// The last hour's and the last day's, with their names.
    pub periods: Vec<(&'static str, Period)>,
    pub pending: i64,
    /// How long the oldest waiting delivery has waited.
    pub oldest_age: Option<String>,
}

/// Reads an endpoint's health at `now`, inside the page's read.
pub fn health(tx: &mut dyn Tx, t: &Texts, webhook_id: i64, now: i64) -> Result<Health, StoreError> {
    let minute = minute_of(now);
    let hour = tx.attempt_tally(webhook_id, minute - 59)?;
    let day = tx.attempt_tally(webhook_id, minute - 24 * 60 + 1)?;
    let backlog = tx.backlog(webhook_id)?;
    Ok(Health {
        periods: vec![
            (t.last_hour, Period::of(&hour)),
            (t.last_day, Period::of(&day)),
        ],
        pending: backlog.map_or(0, |b| b.pending),
        oldest_age: backlog.map(|b: EndpointBacklog| age(now - b.oldest_created_at)),
    })
}

/// An endpoint's last hour and how many of its deliveries wait, as the list shows them.
pub fn last_hour(tx: &mut dyn Tx, webhook_id: i64, now: i64) -> Result<(Period, i64), StoreError> {
    let hour = tx.attempt_tally(webhook_id, minute_of(now) - 59)?;
    let waiting = tx.backlog(webhook_id)?.map_or(0, |b| b.pending);
    Ok((Period::of(&hour), waiting))
}

/// "≤ 250 ms", "≤ 2.5 s", "> 10 s".
fn bound(b: Option<i64>) -> String {
    match b {
        Some(ms) if ms < 1_000 => format!("≤ {ms} ms"),
        Some(ms) => format!("≤ {} s", ms as f64 / 1_000.0),
        None => format!(
            "> {} s",
            LATENCY_BOUNDS_MS[LATENCY_BOUNDS_MS.len() - 1] / 1_000
        ),
    }
}

/// "45 s", "12 min", "3 h 5 min", "2 d 4 h".
fn age(ms: i64) -> String {
    let s = ms.max(0) / 1_000;
    match s {
        0..60 => format!("{s} s"),
        60..3_600 => format!("{} min", s / 60),
        3_600..86_400 => format!("{} h {} min", s / 3_600, s % 3_600 / 60),
        _ => format!("{} d {} h", s / 86_400, s % 86_400 / 3_600),
    }
}

/// The per-minute counts added up into bars of [`BAR_MINUTES`], from minute `first` on.
fn bars(series: &[(i64, AttemptTally)], first: i64) -> Vec<AttemptTally> {
    let mut bars = vec![AttemptTally::default(); BARS];
    for (minute, tally) in series {
        let i = (minute - first).div_euclid(BAR_MINUTES);
        if let Some(bar) = usize::try_from(i).ok().and_then(|i| bars.get_mut(i)) {
            bar.add(tally);
        }
    }
    bars
}

/// `HH:MM` (UTC) of a minute.
fn clock(minute: i64) -> String {
    let m = minute.rem_euclid(24 * 60);
    format!("{:02}:{:02}", m / 60, m % 60)
}

const WIDTH: usize = 720;
const HEIGHT: usize = 160;
const TOP: usize = 16;
const BOTTOM: usize = 20;
const BAR: usize = WIDTH / BARS;

fn svg_start(out: &mut String, label: &str) {
    let _ = write!(
        out,
        r#"<svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{label}" class="chart" preserveAspectRatio="none"><title>{label}</title>"#,
        label = escape(label)
    );
}

fn time_axis(out: &mut String, first: i64) {
    let y = HEIGHT - 4;
    for (x, minute, anchor) in [
        (0, first, "start"),
        (WIDTH / 2, first + CHART_MINUTES / 2, "middle"),
        (WIDTH, first + CHART_MINUTES, "end"),
    ] {
        let _ = write!(
            out,
            r#"<text x="{x}" y="{y}" text-anchor="{anchor}">{} UTC</text>"#,
            clock(minute)
        );
    }
}

/// Stacked bars of delivered, failed and given-up attempts.
fn outcomes_svg(bars: &[AttemptTally], first: i64, t: &Texts) -> String {
    let total: AttemptTally = bars.iter().fold(AttemptTally::default(), |mut s, b| {
        s.add(b);
        s
    });
    let label = format!(
        "{}: {} {}, {} {}, {} {}",
        t.chart_outcomes,
        total.delivered,
        t.outcome_delivered,
        total.failed,
        t.outcome_failed,
        total.dead,
        t.outcome_dead
    );
    let mut out = String::new();
    svg_start(&mut out, &label);
    let peak = bars
        .iter()
        .map(AttemptTally::attempts)
        .max()
        .unwrap_or(0)
        .max(1);
    let plot = (HEIGHT - TOP - BOTTOM) as f64;
    for (i, bar) in bars.iter().enumerate() {
        let mut base = (HEIGHT - BOTTOM) as f64;
        for (count, class) in [
            (bar.delivered, "delivered"),
            (bar.failed, "failed"),
            (bar.dead, "dead"),
        ] {
            if count == 0 {
                continue;
            }
            let h = (count as f64 / peak as f64 * plot).max(1.0);
            base -= h;
            let _ = write!(
                out,
                r#"<rect class="{class}" x="{}" y="{base:.1}" width="{}" height="{h:.1}"/>"#,
                i * BAR,
                BAR - 2
            );
        }
    }
    let _ = write!(
        out,
        r#"<text x="0" y="12">{} {peak}/{BAR_MINUTES} min</text>"#,
        escape(t.chart_peak)
    );
    time_axis(&mut out, first);
    out.push_str("</svg>");
    out
}

/// The median and 95th percentile latency of each bar, on the buckets' scale.
fn latency_svg(bars: &[AttemptTally], first: i64, t: &Texts) -> String {
    let mut out = String::new();
    svg_start(&mut out, t.chart_latency);
    let levels = LATENCY_BOUNDS_MS.len() + 1;
    let plot = (HEIGHT - TOP - BOTTOM) as f64;
    let y_of =
        |level: usize| (HEIGHT - BOTTOM) as f64 - (level as f64 + 0.5) / levels as f64 * plot;
    for (level, ms) in [(0, 50), (4, 1_000), (7, 10_000)] {
        let y = y_of(level);
        let _ = write!(
            out,
            r#"<line class="grid" x1="0" x2="{WIDTH}" y1="{y:.1}" y2="{y:.1}"/><text x="{WIDTH}" y="{:.1}" text-anchor="end">{}</text>"#,
            y - 2.0,
            bound(Some(ms)).trim_start_matches("≤ ")
        );
    }
    for (q, class) in [(0.5, "p50"), (0.95, "p95")] {
        let points: Vec<String> = bars
            .iter()
            .enumerate()
            .filter_map(|(i, bar)| {
                let level = match bar.latency_bound(q)? {
                    Some(b) => LATENCY_BOUNDS_MS.iter().position(|x| *x == b)?,
                    None => LATENCY_BOUNDS_MS.len(),
                };
                Some(format!("{},{:.1}", i * BAR + BAR / 2, y_of(level)))
            })
            .collect();
        if !points.is_empty() {
            let _ = write!(
                out,
                r#"<polyline class="{class}" points="{}"/>"#,
                points.join(" ")
            );
        }
    }
    let _ = write!(
        out,
        r#"<text x="0" y="12"><tspan class="p50">— p50</tspan> <tspan class="p95">— p95</tspan></text>"#
    );
    time_axis(&mut out, first);
    out.push_str("</svg>");
    out
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_add_up_five_minutes_each_and_drop_what_is_outside() {
        let one = AttemptTally {
            delivered: 1,
            ..AttemptTally::default()
        };
        let series = vec![
            (95, one),
            (100, one),
            (104, one),
            (105, one),
            (100 + CHART_MINUTES, one),
        ];
        let bars = bars(&series, 100);
        assert_eq!(bars.len(), BARS);
        assert_eq!((bars[0].delivered, bars[1].delivered), (2, 1));
        assert_eq!(bars.iter().map(|b| b.delivered).sum::<i64>(), 3);
    }

    #[test]
    fn figures_read_as_people_write_them() {
        assert_eq!(bound(Some(250)), "≤ 250 ms");
        assert_eq!(bound(Some(2_500)), "≤ 2.5 s");
        assert_eq!(bound(None), "> 10 s");
        assert_eq!(age(45_000), "45 s");
        assert_eq!(age(12 * 60_000 + 5), "12 min");
        assert_eq!(age(3 * 3_600_000 + 5 * 60_000), "3 h 5 min");
        assert_eq!(age(2 * 86_400_000 + 4 * 3_600_000), "2 d 4 h");
        assert_eq!(clock(-1), "23:59");
    }

    #[test]
    fn an_empty_chart_is_still_a_labelled_image() {
        let t = super::super::i18n::Lang::En.texts();
        let svg = outcomes_svg(&vec![AttemptTally::default(); BARS], 0, t);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"), "{svg}");
        assert!(
            svg.contains("role=\"img\"") && !svg.contains("<rect"),
            "{svg}"
        );
        let svg = latency_svg(&vec![AttemptTally::default(); BARS], 0, t);
        assert!(!svg.contains("<polyline"), "{svg}");
    }
}
