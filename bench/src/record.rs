//! Results as JSON lines (one per run, appended by every subcommand given `--json-out`)
//! and the markdown report built from them: the scenario table with ratios to the
//! baseline of the same run, memory and restart figures, the audit cost, and issue 7's
//! targets with met / missed-by-how-much.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::runner::Outcome;

/// One result line.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Record {
    /// `load` (a scenario run), `rss` (resident set), `restart`, or `bulk` (a bulk load).
    pub kind: String,
    /// Scenario name (`load`, `bulk`).
    pub scenario: String,
    /// Free-form qualifier: `audit on`, `3-node`, `idle`, `after 1000000 secrets`, ...
    pub label: String,
    /// Connections.
    pub connections: u64,
    /// Measured requests.
    pub requests: u64,
    /// Errors among them.
    pub errors: u64,
    /// Measured seconds.
    pub seconds: f64,
    /// Requests per second.
    pub rps: f64,
    /// Latency percentiles, microseconds.
    pub p50_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Maximum.
    pub max_us: u64,
    /// TCP+TLS connections opened.
    pub connects: u64,
    /// The first few errors.
    pub first_errors: Vec<String>,
    /// Why the scenario could not run, when it could not.
    pub unavailable: Option<String>,
    /// Resident set, KiB (`rss`).
    pub kib: Option<u64>,
    /// Milliseconds (`restart`: process start to first successful read).
    pub ms: Option<f64>,
    /// Breakdown or other detail.
    pub detail: Option<String>,
    /// Secrets stored at the time (`rss`, `restart`, `bulk`).
    pub count: Option<u64>,
    /// Server CPU per measured request, microseconds (`load` with `--server-pid`).
    pub server_cpu_us: Option<f64>,
}

impl Record {
    /// A record of a finished run.
    pub fn from_outcome(scenario: &str, label: &str, connections: usize, o: &Outcome) -> Record {
        Record {
            kind: "load".into(),
            scenario: scenario.into(),
            label: label.into(),
            connections: connections as u64,
            requests: o.requests,
            errors: o.errors,
            seconds: o.seconds,
            rps: o.rps(),
            p50_us: o.hist.value_at_quantile(0.50),
            p99_us: o.hist.value_at_quantile(0.99),
            p999_us: o.hist.value_at_quantile(0.999),
            max_us: o.hist.max(),
            connects: o.connects,
            first_errors: o.first_errors.clone(),
            server_cpu_us: o.server_cpu_us_per_request(),
            ..Record::default()
        }
    }

    /// A scenario that could not run.
    pub fn unavailable(scenario: &str, label: &str, connections: usize, why: &str) -> Record {
        Record {
            kind: "load".into(),
            scenario: scenario.into(),
            label: label.into(),
            connections: connections as u64,
            unavailable: Some(why.into()),
            ..Record::default()
        }
    }

    /// Append as one JSON line to `path`.
    pub fn append(&self, path: &Path) -> Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        writeln!(f, "{}", serde_json::to_string(self)?)?;
        Ok(())
    }
}

/// Read every record of a JSON-lines file.
pub fn read_all(path: &Path) -> Result<Vec<Record>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).with_context(|| format!("bad record: {l}")))
        .collect()
}

fn ms(us: u64) -> String {
    format!("{:.3}", us as f64 / 1000.0)
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// Mean baseline requests/s per connection count.
fn baselines(records: &[Record]) -> BTreeMap<u64, f64> {
    let mut sums: BTreeMap<u64, (f64, u32)> = BTreeMap::new();
    for r in records.iter().filter(|r| is_baseline(r)) {
        let e = sums.entry(r.connections).or_default();
        e.0 += r.rps;
        e.1 += 1;
    }
    sums.into_iter()
        .map(|(c, (s, n))| (c, s / f64::from(n)))
        .collect()
}

fn is_baseline(r: &Record) -> bool {
    r.kind == "load" && r.scenario == "baseline" && r.unavailable.is_none()
}

/// The baseline to divide record `k` by. The machine's load drifts (other processes
/// share the two cores), so the baseline runs adjacent to `k` at the same connection
/// count are used: the mean of the nearest one before and the nearest one after. Without
/// any at that count, the mean at the largest count measured. The flag says whether the
/// connection counts match.
fn baseline_for(records: &[Record], k: usize) -> Option<(f64, bool)> {
    let r = &records[k];
    if is_baseline(r) {
        return Some((r.rps, true));
    }
    let same = |b: &&Record| is_baseline(b) && b.connections == r.connections;
    let before = records[..k].iter().rev().find(same);
    let after = records[k + 1..].iter().find(same);
    match (before, after) {
        (Some(a), Some(b)) => Some(((a.rps + b.rps) / 2.0, true)),
        (Some(a), None) | (None, Some(a)) => Some((a.rps, true)),
        (None, None) => baselines(records)
            .iter()
            .next_back()
            .map(|(_, v)| (*v, false)),
    }
}

/// The last successful run of `scenario` with `label` at `conns`, with its index.
fn find<'a>(
    records: &'a [Record],
    scenario: &str,
    label: &str,
    conns: u64,
) -> Option<(usize, &'a Record)> {
    records
        .iter()
        .enumerate()
        .rev()
        .find(|(_, r)| is_run(r, scenario, conns) && r.label == label)
}

/// Whether `r` is a run of `scenario` at `conns` that could run.
fn is_run(r: &Record, scenario: &str, conns: u64) -> bool {
    r.kind == "load" && r.scenario == scenario && r.connections == conns && r.unavailable.is_none()
}

/// A `>=` target: verdict text.
fn at_least(value: f64, target: f64, unit: &str) -> String {
    if value >= target {
        format!("met ({value:.2}{unit} >= {target}{unit})")
    } else {
        format!(
            "missed by {:.0}% ({value:.2}{unit} vs >= {target}{unit})",
            (1.0 - value / target) * 100.0
        )
    }
}

/// One adjacent "audit off" / "audit on" pair of kv-read-one runs.
struct AuditCost {
    /// Throughput lost, percent.
    percent: f64,
    /// Server CPU added per request, microseconds (when both runs measured it).
    cpu_us: Option<f64>,
}

/// The audit cost of each adjacent "audit off" / "audit on" pair of kv-read-one runs at
/// 64 connections (`scripts/bench.sh` interleaves `AUDIT_ROUNDS` of them).
fn audit_costs(records: &[Record]) -> Vec<AuditCost> {
    let mut costs = Vec::new();
    let mut off: Option<&Record> = None;
    for r in records.iter().filter(|r| is_run(r, "kv-read-one", 64)) {
        match r.label.as_str() {
            "audit off" => off = Some(r),
            "audit on" => {
                if let Some(off) = off.take() {
                    costs.push(AuditCost {
                        percent: (1.0 - r.rps / off.rps) * 100.0,
                        cpu_us: r
                            .server_cpu_us
                            .zip(off.server_cpu_us)
                            .map(|(on, off)| on - off),
                    });
                }
            }
            _ => {}
        }
    }
    costs
}

/// An `rss` record's resident set as text (MiB and MB) and in MB (10^6 bytes), the
/// unit of the targets: 20 MB is 19.07 MiB.
fn resident_mb(r: &Record) -> (String, f64) {
    let kib = r.kib.unwrap_or(0) as f64;
    let mb = kib * 1024.0 / 1e6;
    (format!("{:.1} MiB = {mb:.1} MB", kib / 1024.0), mb)
}

/// A `<=` target: verdict text.
fn at_most(value: f64, target: f64, unit: &str) -> String {
    if value <= target {
        format!("met ({value:.2}{unit} <= {target}{unit})")
    } else {
        format!(
            "missed by {:.0}% ({value:.2}{unit} vs <= {target}{unit})",
            (value / target - 1.0) * 100.0
        )
    }
}

/// The markdown report.
pub fn report(records: &[Record]) -> String {
    let mut out = String::new();
    let base = baselines(records);
    let ratio =
        |k: usize| -> Option<f64> { baseline_for(records, k).map(|b| records[k].rps / b.0) };
    let _ = writeln!(
        out,
        "| scenario | connections | req/s | ratio to baseline | p50 ms | p99 ms | p99.9 ms | errors | server CPU µs/request |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|");
    let mut footnote = false;
    let mut unavailable = Vec::new();
    for (k, r) in records.iter().enumerate().filter(|(_, r)| r.kind == "load") {
        let name = if r.label.is_empty() {
            r.scenario.clone()
        } else {
            format!("{} ({})", r.scenario, r.label)
        };
        if let Some(why) = &r.unavailable {
            let _ = writeln!(
                out,
                "| {name} | {} | n/a | n/a | | | | not available¹ | |",
                r.connections
            );
            unavailable.push(format!("{name}: {why}"));
            continue;
        }
        let ratio_text = match baseline_for(records, k) {
            Some((b, same)) => {
                if !same {
                    footnote = true;
                }
                format!("{:.3}{}", r.rps / b, if same { "" } else { "²" })
            }
            None => "no baseline".into(),
        };
        let _ = writeln!(
            out,
            "| {name} | {} | {:.0} | {ratio_text} | {} | {} | {} | {} | {} |",
            r.connections,
            r.rps,
            ms(r.p50_us),
            ms(r.p99_us),
            ms(r.p999_us),
            r.errors,
            r.server_cpu_us
                .map(|us| format!("{us:.1}"))
                .unwrap_or_default()
        );
    }
    let _ = writeln!(out);
    for (c, v) in &base {
        let _ = writeln!(
            out,
            "Baseline (bare actix-web + rustls, same TLS setup) at {c} connection(s): {v:.0} req/s (mean of its runs; each ratio uses the baseline runs just before and after it)."
        );
    }
    if footnote {
        let _ = writeln!(
            out,
            "\n² no baseline at that connection count; compared with the baseline at the largest count."
        );
    }
    if !unavailable.is_empty() {
        let _ = writeln!(out, "\n¹ not available in this run:");
        for u in &unavailable {
            let _ = writeln!(out, "- {u}");
        }
    }
    let errors: Vec<&Record> = records
        .iter()
        .filter(|r| (r.kind == "load" || r.kind == "bulk") && r.errors > 0)
        .collect();
    if !errors.is_empty() {
        let _ = writeln!(out, "\nFirst errors:");
        for r in errors {
            for e in r.first_errors.iter().take(3) {
                let name = if r.label.is_empty() {
                    r.scenario.clone()
                } else {
                    format!("{} ({})", r.scenario, r.label)
                };
                let _ = writeln!(
                    out,
                    "- {name}, {} errors: `{}`",
                    r.errors,
                    e.replace('`', "'")
                );
            }
        }
    }

    // Memory and restart.
    let rss: Vec<&Record> = records.iter().filter(|r| r.kind == "rss").collect();
    let restarts: Vec<&Record> = records.iter().filter(|r| r.kind == "restart").collect();
    let bulks: Vec<&Record> = records.iter().filter(|r| r.kind == "bulk").collect();
    if !rss.is_empty() || !restarts.is_empty() {
        let _ = writeln!(out, "\n| memory / restart | secrets stored | value |");
        let _ = writeln!(out, "|---|---|---|");
        for r in &bulks {
            let _ = writeln!(
                out,
                "| bulk load of KV v2 secrets ({} connections) | {} | {:.0} writes/s, {:.1} s, {} errors |",
                r.connections,
                r.count.unwrap_or(r.requests),
                r.rps,
                r.seconds,
                r.errors
            );
        }
        for r in &rss {
            let _ = writeln!(
                out,
                "| resident set (VmRSS), {} | {} | {} |",
                r.label,
                r.count.unwrap_or(0),
                r.kib.map(mib).unwrap_or_default()
            );
        }
        for r in &restarts {
            let _ = writeln!(
                out,
                "| restart: process start to unsealed and serving a read | {} | {:.0} ms ({}) |",
                r.count.unwrap_or(0),
                r.ms.unwrap_or_default(),
                r.detail.clone().unwrap_or_default()
            );
        }
    }

    // Targets.
    let _ = writeln!(out, "\n| issue 7 target | measured | verdict |");
    let _ = writeln!(out, "|---|---|---|");
    let mut target = |name: &str, measured: String, verdict: String| {
        let _ = writeln!(out, "| {name} | {measured} | {verdict} |");
    };
    let not_measured = || ("not measured".to_string(), "not measured".to_string());
    let (m, v) = match find(records, "kv-read-one", "", 64) {
        Some((k, _)) => match ratio(k) {
            Some(x) => (
                format!("{x:.3} of baseline"),
                at_least(x * 100.0, 60.0, "%"),
            ),
            None => not_measured(),
        },
        None => not_measured(),
    };
    target("KV v2 read of one key >= 60% of baseline (64 conns)", m, v);
    let (m, v) = match find(records, "kv-write", "", 64) {
        Some((k, r)) => (
            format!(
                "{:.0} writes/s ({:.3} of baseline)",
                r.rps,
                ratio(k).unwrap_or(0.0)
            ),
            at_least(r.rps, 20000.0, "/s"),
        ),
        None => not_measured(),
    };
    target("KV v2 write, 1 node, fsync >= 20,000/s (64 conns)", m, v);
    let (m, v) = match find(records, "kv-write", "", 1) {
        Some((_, r)) => (
            format!("p50 {} ms", ms(r.p50_us)),
            at_most(r.p50_us as f64 / 1000.0, 0.5, " ms"),
        ),
        None => not_measured(),
    };
    target("KV v2 write, 1 connection, p50 <= 0.5 ms", m, v);
    let (m, v) = match find(records, "kv-write", "3-node", 64) {
        Some((k, r)) => (
            format!(
                "{:.0} writes/s ({:.3} of baseline)",
                r.rps,
                ratio(k).unwrap_or(0.0)
            ),
            at_least(r.rps, 8000.0, "/s"),
        ),
        None => (
            "not measured".into(),
            "pending (no 3-node run in this report)".into(),
        ),
    };
    target("3-node KV v2 write >= 8,000/s (64 conns)", m, v);
    let (m, v) = match find(records, "transit-encrypt", "", 64) {
        Some((k, _)) => match ratio(k) {
            Some(x) => (
                format!("{x:.3} of baseline"),
                at_least(x * 100.0, 50.0, "%"),
            ),
            None => not_measured(),
        },
        None => (
            "not available".into(),
            "not measured (transit not available in this run)".into(),
        ),
    };
    target("transit encrypt 1 KiB >= 50% of baseline (64 conns)", m, v);
    let loaded = rss
        .iter()
        .filter(|r| r.label.starts_with("after loading"))
        .max_by_key(|r| r.count.unwrap_or(0));
    let (m, v) = match loaded {
        Some(r) => {
            let (text, mb) = resident_mb(r);
            (
                format!("{text} with {} secrets", r.count.unwrap_or(0)),
                at_most(mb, 500.0, " MB"),
            )
        }
        None => not_measured(),
    };
    target("1M KV v2 secrets: resident set <= 500 MB", m, v);
    let (m, v) = match restarts.iter().max_by_key(|r| r.count.unwrap_or(0)) {
        Some(r) => {
            let s = r.ms.unwrap_or_default() / 1000.0;
            (
                format!("{s:.2} s with {} secrets", r.count.unwrap_or(0)),
                at_most(s, 5.0, " s"),
            )
        }
        None => not_measured(),
    };
    target("restart to unsealed-and-serving <= 5 s", m, v);
    let (m, v) = match rss.iter().find(|r| r.label == "idle") {
        Some(r) => {
            let (text, mb) = resident_mb(r);
            (text, at_most(mb, 20.0, " MB"))
        }
        None => not_measured(),
    };
    target("idle resident set <= 20 MB", m, v);
    let (m, v) = match audit_costs(records) {
        costs if costs.is_empty() => not_measured(),
        costs => {
            let n = costs.len() as f64;
            let mean = costs.iter().map(|c| c.percent).sum::<f64>() / n;
            let (lo, hi) = costs.iter().fold((f64::MAX, f64::MIN), |(lo, hi), c| {
                (lo.min(c.percent), hi.max(c.percent))
            });
            let cpu: Option<Vec<f64>> = costs.iter().map(|c| c.cpu_us).collect();
            let cpu = cpu
                .map(|v| {
                    format!(
                        "; server CPU +{:.1} µs per request on average",
                        v.iter().sum::<f64>() / n
                    )
                })
                .unwrap_or_default();
            (
                format!(
                    "{mean:.1}% lower on average over {} off/on pairs ({lo:.1}% to {hi:.1}%){cpu}",
                    costs.len()
                ),
                at_most(mean.max(0.0), 15.0, "%"),
            )
        }
    };
    target("file audit device costs <= 15% of KV read throughput", m, v);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(scenario: &str, label: &str, connections: u64, rps: f64) -> Record {
        Record {
            kind: "load".into(),
            scenario: scenario.into(),
            label: label.into(),
            connections,
            rps,
            ..Record::default()
        }
    }

    #[test]
    fn ratios_use_the_adjacent_baselines_at_the_same_connection_count() {
        let records = vec![
            load("baseline", "", 64, 100.0),
            load("baseline", "", 1, 10.0),
            load("kv-read-one", "", 64, 50.0),
            load("baseline", "", 64, 200.0),
            load("kv-read-one", "", 1, 5.0),
            load("kv-write", "", 8, 30.0),
        ];
        // Bracketed by 100 and 200.
        assert_eq!(baseline_for(&records, 2), Some((150.0, true)));
        // Only the 1-connection baseline before it.
        assert_eq!(baseline_for(&records, 4), Some((10.0, true)));
        // No 8-connection baseline: the mean at the largest count, flagged.
        assert_eq!(baseline_for(&records, 5), Some((150.0, false)));
        let report = report(&records);
        assert!(
            report.contains("| kv-read-one | 64 | 50 | 0.333 |"),
            "{report}"
        );
        assert!(
            report.contains("| kv-write | 8 | 30 | 0.200² |"),
            "{report}"
        );
    }

    #[test]
    fn verdicts_say_by_how_much() {
        assert_eq!(
            at_least(30.0, 60.0, "%"),
            "missed by 50% (30.00% vs >= 60%)"
        );
        assert!(at_least(60.0, 60.0, "%").starts_with("met"));
        assert_eq!(
            at_most(0.75, 0.5, " ms"),
            "missed by 50% (0.75 ms vs <= 0.5 ms)"
        );
        assert!(at_most(0.4, 0.5, " ms").starts_with("met"));
    }

    #[test]
    fn audit_cost_and_unavailable_scenarios_are_reported() {
        let mut records = vec![
            load("baseline", "", 64, 100.0),
            load("kv-read-one", "audit off", 64, 80.0),
            load("kv-read-one", "audit on", 64, 60.0),
        ];
        records.push(Record::unavailable(
            "transit-encrypt",
            "",
            64,
            "probe -> 404",
        ));
        let report = report(&records);
        assert!(
            report.contains("25.0% lower on average over 1 off/on pairs (25.0% to 25.0%)"),
            "{report}"
        );
        assert!(
            report.contains("| transit-encrypt | 64 | n/a |"),
            "{report}"
        );
        assert!(
            report.contains("- transit-encrypt: probe -> 404"),
            "{report}"
        );
    }

    #[test]
    fn audit_cost_averages_the_interleaved_pairs() {
        let records = vec![
            load("kv-read-one", "audit off", 64, 100.0),
            load("kv-read-one", "audit on", 64, 90.0),
            load("kv-read-one", "", 64, 1000.0),
            load("kv-read-one", "audit off", 64, 100.0),
            load("kv-read-one", "audit on", 1, 10.0),
            load("kv-read-one", "audit on", 64, 70.0),
            load("kv-read-one", "audit on", 64, 50.0),
        ];
        let costs: Vec<f64> = audit_costs(&records).iter().map(|c| c.percent).collect();
        assert_eq!(
            costs.len(),
            2,
            "an unpaired 'on' run is not a pair: {costs:?}"
        );
        assert!((costs[0] - 10.0).abs() < 1e-9 && (costs[1] - 30.0).abs() < 1e-9);
        // Without the server's CPU measured, no CPU figure.
        let text = report(&records);
        assert!(text.contains("20.0% lower on average over 2 off/on pairs (10.0% to 30.0%) |"));

        // With it, the CPU each pair added, averaged.
        let with_cpu = |label: &str, rps: f64, us: f64| Record {
            server_cpu_us: Some(us),
            ..load("kv-read-one", label, 64, rps)
        };
        let records = vec![
            with_cpu("audit off", 100.0, 17.0),
            with_cpu("audit on", 80.0, 25.0),
            with_cpu("audit off", 100.0, 18.0),
            with_cpu("audit on", 90.0, 22.0),
        ];
        let text = report(&records);
        assert!(
            text.contains("15.0% lower on average over 2 off/on pairs (10.0% to 20.0%); server CPU +6.0 µs per request on average"),
            "{text}"
        );
        assert!(
            text.contains("| kv-read-one (audit on) | 64 | 80 | no baseline | "),
            "{text}"
        );
        assert!(text.contains(" | 25.0 |\n"), "{text}");
    }

    #[test]
    fn resident_set_targets_are_in_megabytes() {
        let rss = |label: &str, kib: u64, count: u64| Record {
            kind: "rss".into(),
            label: label.into(),
            kib: Some(kib),
            count: Some(count),
            ..Record::default()
        };
        // 19,600 KiB is 19.1 MiB but 20.07 MB: over a 20 MB target.
        let text = report(&[
            rss("idle", 19_600, 0),
            rss("after loading", 400_000, 1_000_000),
        ]);
        assert!(
            text.contains("19.1 MiB = 20.1 MB | missed by 0% (20.07 MB vs <= 20 MB)"),
            "{text}"
        );
        assert!(
            text.contains("390.6 MiB = 409.6 MB with 1000000 secrets | met (409.60 MB <= 500 MB)"),
            "{text}"
        );
    }

    #[test]
    fn records_round_trip_through_json_lines() {
        let dir = std::env::temp_dir().join(format!("coffer-bench-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("results.jsonl");
        let _ = std::fs::remove_file(&path);
        load("health", "", 64, 1.5).append(&path).unwrap();
        Record {
            kind: "rss".into(),
            label: "idle".into(),
            kib: Some(2048),
            ..Record::default()
        }
        .append(&path)
        .unwrap();
        let back = read_all(&path).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[0].scenario, "health");
        assert_eq!(back[1].kib, Some(2048));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
