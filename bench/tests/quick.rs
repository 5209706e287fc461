//! The benchmark still works: `mailroom-bench --quick` runs every section against the sandbox,
//! moto and the function binaries, and writes a report with every figure the README names.
//! It asserts nothing about speed: these machines are shared and noisy.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use serde_json::Value;

/// The figures `target/bench/report.json` promises (README, "Benchmarks").
const FIGURES: &[&str] = &[
    "ceiling_ratio_move",
    "ceiling_ratio_mark_read",
    "ceiling_ratio_none",
    "ceiling_ratio_budget",
    "throttled_after_warmup",
    "throttled_after_warmup_unpaced",
    "requests_per_message_move",
    "requests_per_message_mark_read",
    "requests_per_message_none",
    "scaling_efficiency_32",
    "fanout_efficiency_16",
    "fanout_throttled_after_warmup",
    "fanout_tick_seconds",
    "push_latency_p50_ms",
    "push_latency_p99_ms",
    "webhook_rate_per_s",
    "webhook_latency_p99_ms",
    "webhook_answers_over_3s",
    "peak_rss_mb_150mb",
    "peak_rss_mb_1000x50kb",
    "cpu_ms_per_message",
    "init_ratio_max",
    "speedup_vs_naive",
];

#[test]
fn the_quick_benchmark_runs_every_section_and_reports_every_figure() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report.json");
    let output = Command::new(env!("CARGO_BIN_EXE_mailroom-bench"))
        .arg("--quick")
        .arg("--out")
        .arg(&out)
        .output()
        .expect("mailroom-bench runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "mailroom-bench --quick failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    for figure in FIGURES {
        assert!(
            report[figure].is_number(),
            "{figure} is {} in the report",
            report[figure]
        );
    }
    let calls = report["aws_calls_per_message"].as_object().unwrap();
    assert!(calls.contains_key("s3.PutObject"), "{calls:?}");
    assert!(calls.contains_key("dynamodb.PutItem"), "{calls:?}");
    assert_eq!(
        report["cores"],
        std::thread::available_parallelism().unwrap().get()
    );
    assert!(report["commit"].is_string());
    assert_eq!(report["quick"], true);
    // Every figure is in the printed table too.
    for figure in FIGURES {
        assert!(stdout.contains(figure), "{figure} is not printed");
    }
}
