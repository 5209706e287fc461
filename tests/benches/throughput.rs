//! How busy the import keeps Graph's 4 request slots per mailbox.
//!
//! Graph allows 4 requests in flight per app and mailbox (docs/graph.md §7). With a fixed latency
//! `L` per request, that is a ceiling of `4 / L` requests per second; a `move` import needs two
//! requests per message (`$value`, `move`), so at most `2 / L` messages per second. This prints
//! what the engine achieves against the sandbox (with the real AWS adapters on moto), as a
//! fraction of that ceiling, for the default pipeline and for one message at a time.
//!
//! Run: `cargo bench -p mailroom-tests --bench throughput` (add `-- 800 25` for 800 messages at
//! 25 ms latency).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use graph_sandbox::{DEFAULT_TENANT, Mailbox, World};
use mailroom::domain::AfterImport;
use mailroom::engine::{EngineOptions, NoObserver};
use mailroom_tests::stack::Stack;

const MAILBOX: &str = "reports@contoso.com";
const FOLDER: &str = "Inbox/Backup Reports";

struct Figures {
    messages: u64,
    seconds: f64,
    graph_requests: usize,
    /// From the first Graph request's start to the last one's end.
    graph_window: f64,
    busy_fraction: f64,
}

async fn measure(messages: usize, latency: Duration, options: EngineOptions) -> Figures {
    let world = World::default_test().mailbox(
        DEFAULT_TENANT,
        Mailbox::new(MAILBOX)
            .folder(FOLDER)
            .folder("Inbox/Processed")
            .messages(FOLDER, messages),
    );
    let stack = Stack::start(world).await;
    stack
        .configure(
            MAILBOX,
            FOLDER,
            AfterImport::Move {
                processed_folder: "Inbox/Processed".into(),
            },
        )
        .await;
    stack.sandbox.set_latency(latency);
    let engine = stack.engine_with(Arc::new(NoObserver), options);
    // Warm the token and the folder ids out of the measurement.
    stack.sandbox.clear_requests();
    let started = Instant::now();
    let report = stack.run_with(engine).await;
    let seconds = started.elapsed().as_secs_f64();
    let imported = report.imported();
    assert_eq!(imported, messages as u64, "{report:#?}");

    let requests: Vec<_> = stack
        .sandbox
        .requests()
        .into_iter()
        .filter(|r| r.mailbox.as_deref() == Some(MAILBOX))
        .collect();
    let first = requests.iter().map(|r| r.started).min().unwrap();
    let last = requests.iter().map(|r| r.finished).max().unwrap();
    let busy: f64 = requests
        .iter()
        .map(|r| (r.finished - r.started).as_secs_f64())
        .sum();
    Figures {
        messages: imported,
        seconds,
        graph_requests: requests.len(),
        graph_window: (last - first).as_secs_f64(),
        busy_fraction: busy / (4.0 * (last - first).as_secs_f64()),
    }
}

fn print(label: &str, f: &Figures, latency: Duration) {
    let ceiling = 2.0 / latency.as_secs_f64();
    let rate = f.messages as f64 / f.seconds;
    println!(
        "{label:<22} {:>5} messages in {:>6.2} s = {:>6.1} msg/s; ceiling {:>5.1} msg/s; ratio {:.2}",
        f.messages,
        f.seconds,
        rate,
        ceiling,
        rate / ceiling
    );
    println!(
        "{:<22} {} Graph requests in a {:.2} s window; the 4 slots were busy {:.2} of it; fixed per-run overhead {:.2} s",
        "",
        f.graph_requests,
        f.graph_window,
        f.busy_fraction,
        f.seconds - f.graph_window
    );
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let messages: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(400);
    let latency = Duration::from_millis(args.get(1).and_then(|a| a.parse().ok()).unwrap_or(20));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        println!(
            "Graph latency {} ms per request, 4 slots per mailbox",
            latency.as_millis()
        );
        let pipelined = measure(messages, latency, EngineOptions::default()).await;
        print("pipelined (default)", &pipelined, latency);
        let sequential = EngineOptions {
            message_concurrency: 1,
            ..EngineOptions::default()
        };
        let one_at_a_time = measure(messages / 4, latency, sequential).await;
        print("one message at a time", &one_at_a_time, latency);
        println!(
            "pipelining speed-up: {:.1}x",
            (pipelined.messages as f64 / pipelined.seconds)
                / (one_at_a_time.messages as f64 / one_at_a_time.seconds)
        );
    });
}
