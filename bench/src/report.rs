//! The report: every figure of a run, printed as a table and written as JSON
//! (`target/bench/report.json`) with the parameters, the machine's core count and the commit.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;
use serde_json::{Map, Value};

/// Figures as they are measured, under the names the report promises. Sections add theirs; a
/// section that was not run leaves its names out.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub commit: String,
    pub cores: usize,
    pub quick: bool,
    pub parameters: Map<String, Value>,
    #[serde(flatten)]
    pub figures: BTreeMap<String, Value>,
    /// Each section's details: one entry per run.
    pub details: BTreeMap<String, Value>,
}

impl Report {
    pub fn new(quick: bool) -> Self {
        Self {
            commit: git_commit(),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            quick,
            ..Self::default()
        }
    }

    pub fn parameter(&mut self, name: &str, value: impl Serialize) {
        self.parameters.insert(name.to_owned(), to_value(value));
    }

    pub fn figure(&mut self, name: &str, value: impl Serialize) {
        self.figures.insert(name.to_owned(), to_value(value));
    }

    pub fn detail(&mut self, name: &str, value: impl Serialize) {
        self.details.insert(name.to_owned(), to_value(value));
    }

    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, serde_json::to_string_pretty(self)? + "\n")?;
        Ok(())
    }

    /// The headline figures, one per line, with the goal each is held to.
    pub fn print_summary(&self) {
        println!();
        println!("{:<34} {:>12}   goal", "figure", "value");
        for (name, goal) in GOALS {
            if let Some(value) = self.figures.get(*name) {
                println!("{name:<34} {:>12}   {goal}", format_value(value));
            }
        }
    }
}

/// The figures the report always names, with their goals.
const GOALS: &[(&str, &str)] = &[
    ("ceiling_ratio_move", ">= 0.9"),
    ("ceiling_ratio_mark_read", ">= 0.9"),
    ("ceiling_ratio_none", ">= 0.9"),
    ("ceiling_ratio_budget", ">= 0.9"),
    ("throttled_after_warmup", "0"),
    (
        "throttled_after_warmup_unpaced",
        "(no pacing, for comparison)",
    ),
    ("requests_per_message_move", "<= 2.05 (1,000 messages)"),
    ("requests_per_message_mark_read", ""),
    ("requests_per_message_none", "-> 1"),
    ("aws_calls_per_message", "(scheduled import, move)"),
    ("aws_calls_per_message_push", "(push through SQS, move)"),
    ("speedup_vs_naive", ""),
    ("scaling_efficiency_32", ">= 0.8"),
    ("fanout_efficiency_16", ">= 0.8"),
    ("fanout_throttled_after_warmup", "0"),
    ("fanout_tick_seconds", "<= 5 (1,000 mailboxes)"),
    ("push_latency_p50_ms", "<= 1000"),
    ("push_latency_p99_ms", "<= 3000"),
    ("webhook_rate_per_s", "(the burst's rate, held)"),
    ("webhook_latency_p99_ms", "<= 3000"),
    ("webhook_answers_over_3s", "0"),
    ("peak_rss_mb_150mb", "<= 64"),
    ("peak_rss_mb_1000x50kb", ""),
    ("cpu_ms_per_message", ""),
    ("init_ratio_max", "<= 1.2"),
];

fn format_value(value: &Value) -> String {
    match value {
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() => format!("{f:.2}"),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

fn to_value(value: impl Serialize) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// `git rev-parse HEAD`, with `-dirty` when the work tree has changes; `unknown` without git.
fn git_commit() -> String {
    let run = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    match run(&["rev-parse", "HEAD"]) {
        Some(commit) => match run(&["status", "--porcelain", "--untracked-files=no"]) {
            Some(changes) if !changes.is_empty() => format!("{commit}-dirty"),
            _ => commit,
        },
        None => "unknown".to_owned(),
    }
}

/// Rounds to two decimals for the report.
pub fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}
