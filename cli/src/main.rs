//! `mailroom`: set-up checks, folder browser, mailbox configuration, import now, local mode and
//! a demo. Logic lives in the `mailroom` library; this binary parses arguments, builds the
//! backend and prints.

mod args;
mod commands;
mod config;
mod context;
mod progress;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // Usage errors exit 2 (clap's convention) before anything else happens.
    let cli = args::Cli::parse();
    init_tracing(cli.global.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(true) => ExitCode::SUCCESS,
        // The command already said what failed (doctor's ✗ lines, import's summary).
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr, warnings only unless -v; `RUST_LOG` overrides, but never lets the AWS SDK's
/// response bodies through ([`mailroom::redact::may_log`]).
fn init_tracing(verbose: u8) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let default = match verbose {
        0 => "warn",
        1 => "info,mailroom=info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal: a log file or a pipe gets plain text.
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .finish()
        .with(tracing_subscriber::filter::filter_fn(
            mailroom::redact::may_log,
        ))
        .init();
}
