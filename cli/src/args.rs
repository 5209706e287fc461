//! Command-line arguments. The doc comments are the `--help` text.

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

/// Import mail from Microsoft 365 mailboxes through Microsoft Graph: set-up checks, folder
/// browser, mailbox configuration, "import now", a local single-machine mode and a demo.
#[derive(Debug, Parser)]
#[command(name = "mailroom", version, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// Configuration file of local mode
    #[arg(
        long,
        global = true,
        env = "MAILROOM_CONFIG",
        default_value = "mailroom.toml"
    )]
    pub config: PathBuf,

    /// Where local mode keeps its database (state.db) and messages (messages/)
    #[arg(
        long,
        global = true,
        env = "MAILROOM_DATA_DIR",
        default_value = "mailroom-data"
    )]
    pub data_dir: PathBuf,

    /// Where mailbox configuration and state live: this machine (mailroom.toml + SQLite), or the
    /// serverless deployment (DynamoDB table MAILROOM_TABLE, S3 bucket MAILROOM_BUCKET, secrets in
    /// Secrets Manager, AWS credentials from the usual environment)
    #[arg(
        long,
        global = true,
        value_enum,
        env = "MAILROOM_BACKEND",
        default_value = "local"
    )]
    pub backend: Backend,

    /// More log output (-v info, -vv debug); logs go to stderr
    #[arg(short, long, global = true, action = ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    Local,
    Aws,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a commented example mailroom.toml
    Init {
        /// Overwrite an existing file
        #[arg(long)]
        force: bool,
    },

    /// Check each mailbox's set-up: token, mailbox, folders, permission for the action, access
    /// scope, secret expiry; exits 1 if any check fails
    Doctor {
        /// Only this mailbox
        #[arg(long, value_name = "ADDRESS")]
        mailbox: Option<String>,
        /// Also send a test message from each mailbox (needs Mail.Send) and, when it goes to the
        /// mailbox itself, wait for it to arrive in its Inbox
        #[arg(long)]
        send_test: bool,
        /// Where the test message goes (default: each mailbox to itself)
        #[arg(long, value_name = "ADDRESS", requires = "send_test")]
        to: Option<String>,
    },

    /// Show a mailbox's folder tree with full paths and message counts
    Folders {
        /// The mailbox address, e.g. reports@contoso.com
        mailbox: String,
        /// The credential to use (default: the one the mailbox is configured with, or the only one)
        #[arg(long)]
        credential: Option<String>,
    },

    /// Add, list or remove watched mailbox folders
    Mailbox {
        #[command(subcommand)]
        command: MailboxCommand,
    },

    /// Apply the [[discover]] rules now: read each tenant's directory, add the new users'
    /// mailboxes, disable those of users gone or excluded (their mail stays); `add`, `list` and
    /// `remove` manage the rules
    #[command(args_conflicts_with_subcommands = true)]
    Discover {
        /// Print what would be added, enabled, updated and disabled; change nothing
        #[arg(long)]
        dry_run: bool,
        #[command(subcommand)]
        command: Option<DiscoverCommand>,
    },

    /// Import now: every enabled mailbox folder (or one mailbox), with progress and a summary
    Import {
        /// Only this mailbox
        #[arg(long, value_name = "ADDRESS")]
        mailbox: Option<String>,
    },

    /// Send a message from a configured mailbox, once per idempotency key: a retry with the same
    /// key never sends twice (needs Mail.Send, and Mail.ReadWrite for the draft)
    Send(SendArgs),

    /// Per mailbox: last run, result, messages stored, cursor state
    Status,

    /// The app credentials the mailboxes use: when they expire
    Credentials {
        #[command(subcommand)]
        command: CredentialsCommand,
    },

    /// Run the import on a schedule until Ctrl-C or SIGTERM (the message in hand is finished);
    /// with --listen and --public-url, also receive Graph change notifications and import new mail
    /// within seconds
    Serve {
        /// Minutes between runs (default: settings.schedule_minutes, else 15)
        #[arg(long, value_name = "MINUTES", value_parser = clap::value_parser!(u64).range(1..=1440))]
        every: Option<u64>,
        /// Serve the webhook on this address, e.g. 127.0.0.1:8080 (put an HTTPS reverse proxy or
        /// tunnel in front: Graph only calls https:// URLs)
        #[arg(long, value_name = "ADDR", requires = "public_url")]
        listen: Option<std::net::SocketAddr>,
        /// The https:// URL at which Graph reaches --listen; subscriptions point Graph at
        /// URL/notifications and URL/lifecycle
        #[arg(long, value_name = "URL", requires = "listen")]
        public_url: Option<String>,
    },

    /// Watch Mailroom work against a built-in Graph sandbox with realistic mail: no tenant, no AWS
    /// account, no network
    #[cfg(feature = "demo")]
    Demo {
        /// Keep `serve` running against the sandbox afterwards (Ctrl-C stops)
        #[arg(long)]
        keep_running: bool,
        /// Keep the demo's files (configuration, database, messages) in this directory instead of
        /// a temporary one
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct SendArgs {
    /// The mailbox to send from (a configured one: its credential is used)
    #[arg(long, value_name = "ADDRESS")]
    pub from: String,
    /// A recipient; repeat for more
    #[arg(long, value_name = "ADDRESS", required_unless_present_any = ["cc", "bcc"])]
    pub to: Vec<String>,
    /// A copy recipient; repeat for more
    #[arg(long, value_name = "ADDRESS")]
    pub cc: Vec<String>,
    /// A blind copy recipient; repeat for more
    #[arg(long, value_name = "ADDRESS")]
    pub bcc: Vec<String>,
    /// The subject
    #[arg(long)]
    pub subject: String,
    /// The body
    #[arg(
        long,
        value_name = "TEXT",
        required_unless_present = "body_file",
        conflicts_with = "body_file"
    )]
    pub body: Option<String>,
    /// The body, from a file (UTF-8)
    #[arg(long, value_name = "FILE")]
    pub body_file: Option<PathBuf>,
    /// The body is HTML, not plain text
    #[arg(long)]
    pub html: bool,
    /// A file to attach; repeat for more (up to 150 MB each; large ones go in an upload session)
    #[arg(long, value_name = "FILE")]
    pub attach: Vec<PathBuf>,
    /// Reply to this stored message (its immutable id, as in `mailroom status` records or the
    /// stored event's messageId): the reply threads with it
    #[arg(long, value_name = "ID")]
    pub reply_to: Option<String>,
    /// Sends with the same key send once (default: a new key, printed)
    #[arg(long, value_name = "KEY")]
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum CredentialsCommand {
    /// For every credential in use, when it expires (from the app registration in Graph, else
    /// the stored expires_at) and what is wrong, one line each; exits 1 if any is expired, of
    /// unknown expiry, or within the first threshold. Local mode also prints each threshold's
    /// alert once; with --backend aws it only reports (the deployed function alerts)
    Check {
        /// Alert thresholds, in days before expiry, comma-separated (e.g. 30,14,7,3,1)
        #[arg(
            long,
            value_name = "DAYS",
            default_value = mailroom::expiry::Thresholds::DEFAULT,
            value_parser = mailroom::expiry::Thresholds::parse
        )]
        thresholds: mailroom::expiry::Thresholds,
    },
    /// Sign a person in for a delegated credential (kind = "delegated" in mailroom.toml, or a
    /// Secrets Manager secret with "kind": "delegated" with --backend aws): in the browser
    /// (authorization code with PKCE, answered on http://localhost), or with --device-code on a
    /// machine without one. The refresh token is stored under the data dir, readable by you
    /// only (with --backend aws: in the secret, as a new version), and never printed
    Login(LoginArgs),
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The credential: a [credential.NAME] of mailroom.toml with kind = "delegated"; with
    /// --backend aws, the name of its Secrets Manager secret (as mailbox configurations name it)
    pub name: String,
    /// Sign in on another device: print a code to enter on Microsoft's sign-in page
    #[arg(long)]
    pub device_code: bool,
    /// Print the sign-in URL but do not open a browser
    #[arg(long)]
    pub no_browser: bool,
    /// The port on 127.0.0.1 the browser comes back to (default: any free port)
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// The account to sign in as (fills in the sign-in page)
    #[arg(long, value_name = "ADDRESS")]
    pub login_hint: Option<String>,
    /// Seconds to wait for the sign-in before giving up
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    pub timeout: u64,
}

#[derive(Debug, Subcommand)]
pub enum DiscoverCommand {
    /// Add a rule: mailboxes to archive from the directory (a [[discover]] table in
    /// mailroom.toml, or an item in the DynamoDB table with --backend aws)
    Add(DiscoverArgs),
    /// List the rules and when each last ran
    List,
    /// Remove a rule by its id (as `discover list` shows it); its mailboxes are disabled at the
    /// next discovery, their mail kept
    Remove {
        /// The rule's id: CREDENTIAL/all/FOLDER or CREDENTIAL/group=GROUP/FOLDER
        id: String,
    },
}

#[derive(Debug, Args)]
pub struct DiscoverArgs {
    /// The credential: a [credential.NAME] of mailroom.toml, or a Secrets Manager secret id with
    /// --backend aws
    #[arg(long)]
    pub credential: String,
    /// Every mail-enabled user of the tenant
    #[arg(long, conflicts_with = "group", required_unless_present = "group")]
    pub all_users: bool,
    /// The users of this group (its object id or display name), through nested groups
    #[arg(long, value_name = "GROUP")]
    pub group: Option<String>,
    /// An address or glob pattern (`*`, `?`) not to archive; repeat for more
    #[arg(long, value_name = "PATTERN")]
    pub exclude: Vec<String>,
    /// Include shared mailboxes
    #[arg(long)]
    pub shared_mailboxes: bool,
    /// The folder to import in each mailbox, e.g. Inbox, or "*" for every folder (but Deleted
    /// Items, Junk Email and search folders; with --action none or mark_read)
    #[arg(long)]
    pub folder: String,
    /// What to do with a message once it is stored
    #[arg(long, value_parser = ["move", "mark_read", "delete", "none"])]
    pub action: String,
    /// Where `move` puts messages, e.g. "Inbox/Processed"
    #[arg(long, value_name = "FOLDER")]
    pub processed_folder: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum MailboxCommand {
    /// Add a mailbox folder after checking it works (token, folder, permission); refuses to save
    /// an invalid one
    Add(AddArgs),
    /// List the configured mailbox folders
    List,
    /// Remove a mailbox (all its folders, or one)
    Remove {
        /// The mailbox address
        address: String,
        /// Only this folder
        #[arg(long)]
        folder: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct AddArgs {
    /// The mailbox address, e.g. reports@contoso.com
    pub address: String,
    /// The folder to import, e.g. "Inbox/Backup Reports" (well-known names like inbox work)
    #[arg(long)]
    pub folder: String,
    /// What to do with a message once it is stored
    #[arg(long, value_parser = ["move", "mark_read", "delete", "none"])]
    pub action: String,
    /// Where `move` puts messages, e.g. "Inbox/Processed"
    #[arg(long, value_name = "FOLDER")]
    pub processed_folder: Option<String>,
    /// The credential: a [credential.NAME] of mailroom.toml, or a Secrets Manager secret id with
    /// --backend aws
    #[arg(long)]
    pub credential: String,
    /// Save it disabled (not imported until enabled)
    #[arg(long)]
    pub disabled: bool,
    /// Save without checking it against Graph first
    #[arg(long)]
    pub no_validate: bool,
}
