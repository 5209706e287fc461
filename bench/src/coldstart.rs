//! Cold start: each function binary started under a loopback Lambda Runtime API
//! (`mailroom_tests::lambda::RuntimeApi`), timed from exec to its first `invocation/next`
//! request (the end of Lambda's init phase), against a hello-world `lambda_runtime` binary
//! (`bench/hello-lambda`) built the same way in the same run.
//!
//! The full run builds all four with `cargo lambda build --release` for this machine's
//! architecture, as `sam build` does with the template's `Architecture` set to it. `--quick`
//! times the debug binaries the test suite has already built, beside the benchmark's own.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use mailroom_tests::lambda::RuntimeApi;
use mailroom_tests::watch::{cargo_lambda, workspace};
use serde::Serialize;

pub const BASELINE: &str = "hello-lambda";
pub const FUNCTIONS: [&str; 3] = [
    "mailroom-import",
    "mailroom-webhook",
    "mailroom-secret-expiry",
];

/// One binary's figures.
#[derive(Debug, Serialize)]
pub struct Start {
    pub binary: String,
    pub size_bytes: u64,
    /// Median time from exec to the first `invocation/next`, in milliseconds.
    pub init_ms: f64,
    pub init_ms_min: f64,
    /// `init_ms` ÷ the baseline's.
    pub ratio: f64,
}

/// The Lambda architecture of this machine, as the template and cargo-lambda name it.
pub fn architecture() -> &'static str {
    if cfg!(target_arch = "aarch64") {
        "arm64"
    } else {
        "x86_64"
    }
}

/// Builds the four binaries (or, with `quick`, finds the debug builds) and returns their paths
/// with how they were built.
pub fn binaries(quick: bool) -> anyhow::Result<(Vec<(String, PathBuf)>, String)> {
    let names = std::iter::once(BASELINE).chain(FUNCTIONS);
    if quick {
        let exe = std::env::current_exe()?;
        let dir = exe.parent().context("the benchmark binary's directory")?;
        let found: Vec<_> = names.map(|n| (n.to_owned(), dir.join(n))).collect();
        if let Some((_, missing)) = found.iter().find(|(_, p)| !p.exists()) {
            bail!(
                "{} is not built; `cargo build --workspace` builds the functions and the baseline",
                missing.display()
            );
        }
        return Ok((found, format!("debug builds in {}", dir.display())));
    }
    let cargo_lambda = cargo_lambda().map_err(anyhow::Error::msg)?;
    let root = workspace();
    let mut command = Command::new(&cargo_lambda);
    command
        .current_dir(&root)
        .args(["lambda", "build", "--release"]);
    if architecture() == "arm64" {
        command.arg("--arm64");
    }
    for name in names.clone() {
        command.args(["-p", name]);
    }
    // cargo-lambda finds zig (its linker) through the virtualenv's Python, as in scripts/test.
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut paths = vec![root.join(".venv/bin")];
    paths.extend(std::env::split_paths(&path));
    command.env("PATH", std::env::join_paths(paths)?);
    println!("building: {command:?}");
    let status = command.status().context("running cargo lambda build")?;
    if !status.success() {
        bail!(
            "cargo lambda build failed ({status}); it needs zig: `.venv/bin/pip install ziglang`"
        );
    }
    let found = names
        .map(|n| {
            (
                n.to_owned(),
                root.join("target/lambda").join(n).join("bootstrap"),
            )
        })
        .collect();
    Ok((
        found,
        format!("cargo lambda build --release ({})", architecture()),
    ))
}

/// What each function reads at start-up, with values that let it start; nothing is called
/// before the first invocation.
fn environment() -> Vec<(&'static str, String)> {
    [
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_SESSION_TOKEN", "testing"),
        ("MAILROOM_TABLE", "mailroom-bench"),
        ("MAILROOM_BUCKET", "mailroom-bench"),
        (
            "MAILROOM_QUEUE_URL",
            "https://sqs.us-east-1.amazonaws.com/123456789012/mailroom-jobs.fifo",
        ),
        (
            "MAILROOM_WEBHOOK_URL",
            "https://example.lambda-url.us-east-1.on.aws/",
        ),
        (
            "MAILROOM_ALERT_TOPIC_ARN",
            "arn:aws:sns:us-east-1:123456789012:mailroom-alerts",
        ),
        ("MAILROOM_EXPIRY_THRESHOLDS", "30,14,7,3,1"),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.to_owned()))
    .collect()
}

/// Starts `binary` once: the time from exec to its first `invocation/next`, in milliseconds.
async fn init_time(name: &str, binary: &Path) -> anyhow::Result<f64> {
    let log = std::env::temp_dir().join(format!("mailroom-bench-{name}.log"));
    let runtime = RuntimeApi::start().await;
    let started = Instant::now();
    let mut child = runtime.spawn(binary, &environment(), &log);
    let polled = runtime.first_poll(Duration::from_secs(30)).await;
    let _ = child.kill();
    let _ = child.wait();
    match polled {
        Some(at) => Ok((at - started).as_secs_f64() * 1000.0),
        None => bail!(
            "{name} did not reach invocation/next (init error {:?}); its log: {}",
            runtime.init_error(),
            log.display()
        ),
    }
}

/// Times every binary, `runs` starts each, interleaved so machine noise hits them alike.
pub async fn measure(binaries: &[(String, PathBuf)], runs: usize) -> anyhow::Result<Vec<Start>> {
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); binaries.len()];
    for _ in 0..runs {
        for (i, (name, path)) in binaries.iter().enumerate() {
            samples[i].push(init_time(name, path).await?);
        }
    }
    for times in &mut samples {
        times.sort_by(f64::total_cmp);
    }
    let median = |times: &[f64]| times[times.len() / 2];
    let baseline = median(&samples[0]);
    binaries
        .iter()
        .zip(samples)
        .map(|((name, path), times)| {
            let init_ms = median(&times);
            Ok(Start {
                binary: name.clone(),
                size_bytes: std::fs::metadata(path)?.len(),
                init_ms,
                init_ms_min: times[0],
                ratio: init_ms / baseline,
            })
        })
        .collect()
}
