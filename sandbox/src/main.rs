//! `graph-sandbox`: run the Graph sandbox as a standalone server (demo, manual testing).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use graph_sandbox::{
    DEFAULT_CLIENT_ID, DEFAULT_DOMAIN, DEFAULT_SECRET, DEFAULT_TENANT, Sandbox, World,
};

/// An emulator of the Entra ID token endpoint and the Microsoft Graph mail API.
#[derive(Parser, Debug)]
#[command(name = "graph-sandbox", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Initial state: the demo mailboxes, or only the default tenant and app.
    #[arg(long, value_enum, default_value_t = WorldKind::Demo)]
    world: WorldKind,
    /// Latency added to every Graph request, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum WorldKind {
    Demo,
    Empty,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let world = match args.world {
        WorldKind::Demo => World::demo(),
        WorldKind::Empty => World::default_test(),
    };
    let sandbox = match Sandbox::start_on(args.listen, world).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot listen on {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    if args.latency_ms > 0 {
        sandbox.set_latency(Duration::from_millis(args.latency_ms));
    }
    let url = sandbox.url();
    println!("graph-sandbox listening on {url}");
    println!();
    println!("  tenant:        {DEFAULT_TENANT} ({DEFAULT_DOMAIN})");
    println!("  client id:     {DEFAULT_CLIENT_ID}");
    println!("  client secret: {DEFAULT_SECRET}");
    if matches!(args.world, WorldKind::Demo) {
        println!(
            "  mailboxes:     reports@contoso.com (Inbox/Backup Reports), invoices@contoso.com (Inbox/Invoices)"
        );
    }
    println!();
    println!("Point Mailroom at it:");
    println!("  export MAILROOM_GRAPH_URL={url}");
    println!("  export MAILROOM_LOGIN_URL={url}");
    println!();
    println!(
        "Control API: {url}/_sandbox/stats, /_sandbox/requests, /_sandbox/mailboxes/{{address}}/messages"
    );
    println!(
        "Subscriptions: POST {url}/v1.0/subscriptions (http:// notification URLs accepted); /_sandbox/subscriptions, /_sandbox/subscriptions/deliveries"
    );
    println!(
        "Applications: {url}/v1.0/applications(appId='{DEFAULT_CLIENT_ID}') once the app holds an Application.* permission (POST /_sandbox/apps/{{client_id}}/permissions); /_sandbox/apps/{{client_id}}, /_sandbox/sent-mail"
    );
    println!("Press Ctrl-C to stop.");
    if let Err(e) = tokio::signal::ctrl_c().await {
        eprintln!("error: cannot wait for Ctrl-C: {e}");
    }
    sandbox.shutdown().await;
    ExitCode::SUCCESS
}
