//! Configuration from environment variables, parsed once at start-up into typed values. Every
//! problem is reported at once, naming the variable and what it should hold.

use std::time::Duration;

use url::Url;

use crate::domain::MailboxAddress;
use crate::engine::PushOptions;
use crate::expiry::Thresholds;
use crate::graph::{GraphConfig, RequestBudget};
use crate::push::PushUrls;

/// One or more configuration problems.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {}", .problems.join("; "))]
pub struct ConfigError {
    pub problems: Vec<String>,
}

/// Reads variables through `lookup` (the process environment in production, a map in tests) and
/// collects problems instead of stopping at the first.
pub struct Env<F> {
    lookup: F,
    problems: Vec<String>,
}

impl<F: Fn(&str) -> Option<String>> Env<F> {
    pub fn new(lookup: F) -> Self {
        Self {
            lookup,
            problems: Vec::new(),
        }
    }

    fn get(&self, name: &str) -> Option<String> {
        (self.lookup)(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    /// A variable that must be set.
    pub fn required(&mut self, name: &str, what: &str) -> String {
        self.get(name).unwrap_or_else(|| {
            self.problems.push(format!("{name} is not set ({what})"));
            String::new()
        })
    }

    /// An `http(s)` URL, or `default` (a literal, valid URL).
    pub fn url(&mut self, name: &str, default: &'static str) -> Url {
        let raw = self.get(name).unwrap_or_else(|| default.to_owned());
        match Url::parse(&raw) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => url,
            _ => {
                self.problems.push(format!(
                    "{name} must be an http(s) URL such as {default}, not '{raw}'"
                ));
                // Never used: `finish` fails when there are problems.
                literal_url(default)
            }
        }
    }

    /// A variable that may be unset.
    pub fn optional(&self, name: &str) -> Option<String> {
        self.get(name)
    }

    /// Records a problem found while interpreting a variable's value.
    pub fn problem(&mut self, problem: String) {
        self.problems.push(problem);
    }

    /// A whole number within `min..=max`, or `default`.
    pub fn number(&mut self, name: &str, default: u64, min: u64, max: u64) -> u64 {
        match self.get(name) {
            None => default,
            Some(raw) => match raw.parse::<u64>() {
                Ok(n) if (min..=max).contains(&n) => n,
                _ => {
                    self.problems.push(format!(
                        "{name} must be a whole number from {min} to {max}, not '{raw}'"
                    ));
                    default
                }
            },
        }
    }

    /// `true`/`false` (also `1`/`0`, `yes`/`no`), or `default`.
    pub fn flag(&mut self, name: &str, default: bool) -> bool {
        match self.get(name).map(|v| v.to_ascii_lowercase()) {
            None => default,
            Some(v) if matches!(v.as_str(), "true" | "1" | "yes") => true,
            Some(v) if matches!(v.as_str(), "false" | "0" | "no") => false,
            Some(v) => {
                self.problems
                    .push(format!("{name} must be true or false, not '{v}'"));
                default
            }
        }
    }

    /// The Graph client's configuration: `MAILROOM_GRAPH_URL`, `MAILROOM_LOGIN_URL` (national
    /// clouds and tests change them), `MAILROOM_GRAPH_MAX_IN_FLIGHT` and the request budget each
    /// mailbox is paced to, `MAILROOM_GRAPH_BUDGET_REQUESTS` per `MAILROOM_GRAPH_BUDGET_SECONDS`
    /// (Outlook's 10,000 per 600 by default; lower it when another app shares the mailboxes;
    /// 0 requests turns pacing off).
    pub fn graph(&mut self) -> GraphConfig {
        let graph_url = self.url("MAILROOM_GRAPH_URL", GraphConfig::DEFAULT_GRAPH_URL);
        let login_url = self.url("MAILROOM_LOGIN_URL", GraphConfig::DEFAULT_LOGIN_URL);
        let mut config = GraphConfig::new(graph_url, login_url);
        config.global_concurrency = self.number(
            "MAILROOM_GRAPH_MAX_IN_FLIGHT",
            config.global_concurrency as u64,
            1,
            1024,
        ) as usize;
        let default = RequestBudget::default();
        let requests = self.number(
            "MAILROOM_GRAPH_BUDGET_REQUESTS",
            u64::from(default.requests),
            0,
            1_000_000,
        );
        let seconds = self.number(
            "MAILROOM_GRAPH_BUDGET_SECONDS",
            default.window.as_secs(),
            1,
            86_400,
        );
        config.request_budget = (requests > 0).then(|| RequestBudget {
            requests: requests as u32,
            window: Duration::from_secs(seconds),
        });
        config
    }

    pub fn finish<T>(self, value: T) -> Result<T, ConfigError> {
        if self.problems.is_empty() {
            Ok(value)
        } else {
            Err(ConfigError {
                problems: self.problems,
            })
        }
    }
}

/// Parses one of the URL literals of this crate.
#[allow(clippy::expect_used)]
fn literal_url(literal: &'static str) -> Url {
    Url::parse(literal).expect("URL literals in this crate are valid")
}

/// An environment variable a component reads at start-up. The lists of them
/// ([`AwsSettings::ENV_VARS`], [`ImportSettings::env_vars`]) are what the SAM template
/// (`infra/template.yaml`) must set, checked by `tests/tests/template.rs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EnvVar {
    pub name: &'static str,
    /// Start-up fails without it; the others have defaults.
    pub required: bool,
}

impl EnvVar {
    const fn required(name: &'static str) -> Self {
        Self {
            name,
            required: true,
        }
    }

    const fn optional(name: &'static str) -> Self {
        Self {
            name,
            required: false,
        }
    }
}

/// Settings shared by the Lambda functions.
#[derive(Debug, Clone)]
pub struct AwsSettings {
    /// `MAILROOM_TABLE`: the DynamoDB table.
    pub table: String,
    /// `MAILROOM_BUCKET`: the S3 bucket for raw `.eml`.
    pub bucket: String,
    /// `MAILROOM_S3_PATH_STYLE`: path-style S3 addressing, for S3-compatible endpoints.
    pub s3_path_style: bool,
    /// `MAILROOM_SECRET_CACHE_SECONDS`: how long a credential read from Secrets Manager is reused.
    pub secret_cache_ttl: Duration,
    pub graph: GraphConfig,
}

impl AwsSettings {
    /// Every variable [`AwsSettings::read`] looks at (with [`Env::graph`]'s).
    pub const ENV_VARS: &[EnvVar] = &[
        EnvVar::required("MAILROOM_TABLE"),
        EnvVar::required("MAILROOM_BUCKET"),
        EnvVar::optional("MAILROOM_S3_PATH_STYLE"),
        EnvVar::optional("MAILROOM_SECRET_CACHE_SECONDS"),
        EnvVar::optional("MAILROOM_GRAPH_URL"),
        EnvVar::optional("MAILROOM_LOGIN_URL"),
        EnvVar::optional("MAILROOM_GRAPH_MAX_IN_FLIGHT"),
        EnvVar::optional("MAILROOM_GRAPH_BUDGET_REQUESTS"),
        EnvVar::optional("MAILROOM_GRAPH_BUDGET_SECONDS"),
    ];

    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut env = Env::new(lookup);
        let settings = Self::read(&mut env);
        env.finish(settings)
    }

    /// [`Self::ENV_VARS`] and a function's `own`: every variable it reads at start-up.
    pub fn env_vars_with(own: &'static [EnvVar]) -> impl Iterator<Item = EnvVar> {
        Self::ENV_VARS.iter().chain(own).copied()
    }

    pub fn read<F: Fn(&str) -> Option<String>>(env: &mut Env<F>) -> Self {
        Self {
            table: env.required(
                "MAILROOM_TABLE",
                "the DynamoDB table holding Mailroom's state",
            ),
            bucket: env.required("MAILROOM_BUCKET", "the S3 bucket for raw messages"),
            s3_path_style: env.flag("MAILROOM_S3_PATH_STYLE", false),
            secret_cache_ttl: Duration::from_secs(env.number(
                "MAILROOM_SECRET_CACHE_SECONDS",
                300,
                0,
                3600,
            )),
            graph: env.graph(),
        }
    }
}

/// The import function's settings: the shared AWS settings plus its own knobs.
///
/// Besides these, the function's log filter reads `AWS_LAMBDA_LOG_LEVEL` (set by Lambda itself)
/// or `RUST_LOG`; neither is Mailroom's to set.
#[derive(Debug, Clone)]
pub struct ImportSettings {
    pub aws: AwsSettings,
    /// `MAILROOM_MAILBOX_PARALLELISM`: mailboxes imported at once.
    pub mailbox_parallelism: usize,
    /// `MAILROOM_STOP_MARGIN_SECONDS`: new work stops this long before the Lambda deadline, so
    /// messages in flight finish and cursors are saved.
    pub stop_margin: Duration,
    /// `MAILROOM_WEBHOOK_URL` (the webhook's Function URL), with
    /// `MAILROOM_SUBSCRIPTION_MINUTES` and `MAILROOM_SUBSCRIPTION_RENEW_HOURS`: keep Graph
    /// subscriptions for push. Unset: poll only.
    pub push: Option<PushOptions>,
    /// `MAILROOM_QUEUE_URL`: the job queue the function consumes; set, a job that could not run
    /// is delivered again after a short backoff instead of the queue's visibility timeout.
    pub queue_url: Option<String>,
    /// `MAILROOM_DISCOVER_HOURS`: how often a scheduled run applies each discovery rule again
    /// (default 24, from 1 to 168).
    pub discover_every: Duration,
    /// `MAILROOM_JOB_SLICE_SECONDS`: how long a mailbox job works before it queues its
    /// continuation (default 300, from 30 to 840).
    pub job_slice: Duration,
    /// `MAILROOM_EVENT_BUS`: the EventBridge bus (name or ARN) that hears of every stored message
    /// (docs/events.md); unset, the account's `default` bus; `none`, no events.
    pub event_bus: Option<String>,
}

impl ImportSettings {
    /// The variables the import function reads on top of [`AwsSettings::ENV_VARS`].
    pub const OWN_ENV_VARS: &[EnvVar] = &[
        EnvVar::optional("MAILROOM_MAILBOX_PARALLELISM"),
        EnvVar::optional("MAILROOM_STOP_MARGIN_SECONDS"),
        EnvVar::optional("MAILROOM_WEBHOOK_URL"),
        EnvVar::optional("MAILROOM_SUBSCRIPTION_MINUTES"),
        EnvVar::optional("MAILROOM_SUBSCRIPTION_RENEW_HOURS"),
        EnvVar::optional("MAILROOM_QUEUE_URL"),
        EnvVar::optional("MAILROOM_DISCOVER_HOURS"),
        EnvVar::optional("MAILROOM_JOB_SLICE_SECONDS"),
        EnvVar::optional("MAILROOM_EVENT_BUS"),
    ];

    /// Every variable the import function reads at start-up.
    pub fn env_vars() -> impl Iterator<Item = EnvVar> {
        AwsSettings::env_vars_with(Self::OWN_ENV_VARS)
    }

    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut env = Env::new(lookup);
        let aws = AwsSettings::read(&mut env);
        let mailbox_parallelism = env.number("MAILROOM_MAILBOX_PARALLELISM", 4, 1, 64) as usize;
        let stop_margin =
            Duration::from_secs(env.number("MAILROOM_STOP_MARGIN_SECONDS", 60, 5, 600));
        let push = push_options(&mut env);
        let queue_url = env.optional("MAILROOM_QUEUE_URL");
        let discover_every =
            Duration::from_secs(env.number("MAILROOM_DISCOVER_HOURS", 24, 1, 168) * 3600);
        let job_slice = Duration::from_secs(env.number("MAILROOM_JOB_SLICE_SECONDS", 300, 30, 840));
        let event_bus = event_bus(env.optional("MAILROOM_EVENT_BUS"));
        env.finish(Self {
            aws,
            mailbox_parallelism,
            stop_margin,
            push,
            queue_url,
            discover_every,
            job_slice,
            event_bus,
        })
    }
}

/// The bus `MAILROOM_EVENT_BUS` (its value, `raw`) names: unset, the account's `default` bus;
/// `none`, no events.
pub fn event_bus(raw: Option<String>) -> Option<String> {
    match raw {
        None => Some("default".to_owned()),
        Some(bus) if bus.eq_ignore_ascii_case("none") => None,
        Some(bus) => Some(bus),
    }
}

/// `MAILROOM_WEBHOOK_URL` and the subscription knobs (both always read, so a typo in either is
/// reported even when push is off).
fn push_options<F: Fn(&str) -> Option<String>>(env: &mut Env<F>) -> Option<PushOptions> {
    let default_minutes = PushOptions::DEFAULT_LIFETIME.as_secs() / 60;
    let default_hours = PushOptions::DEFAULT_RENEW_MARGIN.as_secs() / 3600;
    // Outlook: at least 45 minutes, at most 4,230 (docs/graph.md §6).
    let minutes = env.number("MAILROOM_SUBSCRIPTION_MINUTES", default_minutes, 45, 4230);
    let hours = env.number("MAILROOM_SUBSCRIPTION_RENEW_HOURS", default_hours, 1, 70);
    let base = env.optional("MAILROOM_WEBHOOK_URL")?;
    match PushUrls::from_base(&base) {
        Ok(urls) => Some(PushOptions {
            urls,
            lifetime: Duration::from_secs(minutes * 60),
            renew_margin: Duration::from_secs(hours * 3600),
        }),
        Err(e) => {
            env.problem(format!("MAILROOM_WEBHOOK_URL: {e}"));
            None
        }
    }
}

/// The outbox function's settings (docs/sending.md): the deployment's table, bucket and Graph,
/// and the dead-letter queue a request that cannot be sent goes to, with the reason.
#[derive(Debug, Clone)]
pub struct OutboxSettings {
    pub aws: AwsSettings,
    /// `MAILROOM_OUTBOX_DLQ_URL`: the outbox's dead-letter queue.
    pub dead_letter_url: String,
    /// `MAILROOM_OUTBOX_MAX_RECEIVES`: the attempt after which a request that keeps failing goes
    /// to the dead-letter queue with its last error (the queue's maxReceiveCount; default 5).
    pub max_receives: u32,
}

impl OutboxSettings {
    /// The object key prefix of attachments in the bucket: the function may read only these.
    pub const ATTACHMENT_PREFIX: &'static str = "outbox/";

    /// The variables the outbox function reads on top of [`AwsSettings::ENV_VARS`].
    pub const OWN_ENV_VARS: &[EnvVar] = &[
        EnvVar::required("MAILROOM_OUTBOX_DLQ_URL"),
        EnvVar::optional("MAILROOM_OUTBOX_MAX_RECEIVES"),
    ];

    /// Every variable the outbox function reads at start-up.
    pub fn env_vars() -> impl Iterator<Item = EnvVar> {
        AwsSettings::env_vars_with(Self::OWN_ENV_VARS)
    }

    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut env = Env::new(lookup);
        let aws = AwsSettings::read(&mut env);
        let dead_letter_url = env.required(
            "MAILROOM_OUTBOX_DLQ_URL",
            "the outbox's dead-letter queue, where requests that cannot be sent go",
        );
        let max_receives = env.number("MAILROOM_OUTBOX_MAX_RECEIVES", 5, 1, 1000) as u32;
        env.finish(Self {
            aws,
            dead_letter_url,
            max_receives,
        })
    }
}

/// The webhook function's settings: where subscriptions are looked up and jobs are queued. It
/// holds no Graph credentials and reads no secrets.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// `MAILROOM_TABLE`: the DynamoDB table holding the subscription records.
    pub table: String,
    /// `MAILROOM_QUEUE_URL`: the SQS FIFO queue for sync jobs.
    pub queue_url: String,
}

impl WebhookSettings {
    pub const ENV_VARS: &[EnvVar] = &[
        EnvVar::required("MAILROOM_TABLE"),
        EnvVar::required("MAILROOM_QUEUE_URL"),
    ];

    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut env = Env::new(lookup);
        let table = env.required(
            "MAILROOM_TABLE",
            "the DynamoDB table holding Mailroom's state",
        );
        let queue_url = env.required(
            "MAILROOM_QUEUE_URL",
            "the SQS FIFO queue the webhook puts sync jobs on",
        );
        env.finish(Self { table, queue_url })
    }
}

/// The secret-expiry function's settings: where the alert claims live, where alerts go, the
/// thresholds, and Graph.
///
/// Alerts go to the SNS topic, by mail through Graph, or both; with neither the function only
/// reports (and publishes the metric), claiming nothing.
#[derive(Debug, Clone)]
pub struct ExpirySettings {
    /// `MAILROOM_TABLE`: the DynamoDB table (mailbox configuration and alert claims).
    pub table: String,
    /// `MAILROOM_ALERT_TOPIC_ARN`: the SNS topic for alerts.
    pub alert_topic_arn: Option<String>,
    /// `MAILROOM_ALERT_MAIL_FROM` and `MAILROOM_ALERT_MAIL_TO` (comma-separated): alert mail
    /// through Graph `sendMail` (the sending app needs Mail.Send).
    pub alert_mail: Option<AlertMail>,
    /// `MAILROOM_EXPIRY_THRESHOLDS`: days before expiry to alert at (default `30,14,7,3,1`).
    pub thresholds: Thresholds,
    /// `MAILROOM_SECRET_CACHE_SECONDS`: how long a credential read is reused.
    pub secret_cache_ttl: Duration,
    /// `MAILROOM_ROTATION_SECRET_DAYS`: the lifetime of a client secret added by rotation
    /// (default 180; Entra's portal allows at most 730, tenant policies may allow less).
    pub rotation_secret_days: u64,
    pub graph: GraphConfig,
}

/// Where alert mail goes, and which credential sends it.
#[derive(Debug, Clone)]
pub struct AlertMail {
    pub from: MailboxAddress,
    pub to: Vec<MailboxAddress>,
    /// `MAILROOM_ALERT_MAIL_CREDENTIAL`: the credential that sends (its app needs Mail.Send);
    /// unset: the credential each alert is about.
    pub credential: Option<String>,
}

impl ExpirySettings {
    pub const ENV_VARS: &[EnvVar] = &[
        EnvVar::required("MAILROOM_TABLE"),
        EnvVar::optional("MAILROOM_ALERT_TOPIC_ARN"),
        EnvVar::optional("MAILROOM_ALERT_MAIL_FROM"),
        EnvVar::optional("MAILROOM_ALERT_MAIL_TO"),
        EnvVar::optional("MAILROOM_ALERT_MAIL_CREDENTIAL"),
        EnvVar::optional("MAILROOM_EXPIRY_THRESHOLDS"),
        EnvVar::optional("MAILROOM_ROTATION_SECRET_DAYS"),
        EnvVar::optional("MAILROOM_SECRET_CACHE_SECONDS"),
        EnvVar::optional("MAILROOM_GRAPH_URL"),
        EnvVar::optional("MAILROOM_LOGIN_URL"),
        EnvVar::optional("MAILROOM_GRAPH_MAX_IN_FLIGHT"),
        EnvVar::optional("MAILROOM_GRAPH_BUDGET_REQUESTS"),
        EnvVar::optional("MAILROOM_GRAPH_BUDGET_SECONDS"),
    ];

    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut env = Env::new(lookup);
        let table = env.required(
            "MAILROOM_TABLE",
            "the DynamoDB table holding Mailroom's state",
        );
        let alert_topic_arn = env.optional("MAILROOM_ALERT_TOPIC_ARN");
        if let Some(arn) = &alert_topic_arn
            && !arn.starts_with("arn:")
        {
            env.problem(format!(
                "MAILROOM_ALERT_TOPIC_ARN must be an SNS topic ARN such as arn:aws:sns:eu-west-1:123456789012:mailroom-alerts, not '{arn}'"
            ));
        }
        let from = env.optional("MAILROOM_ALERT_MAIL_FROM");
        let to = env.optional("MAILROOM_ALERT_MAIL_TO");
        let credential = env.optional("MAILROOM_ALERT_MAIL_CREDENTIAL");
        let alert_mail = match (from, to) {
            (None, None) => None,
            (Some(_), None) | (None, Some(_)) => {
                env.problem(
                    "MAILROOM_ALERT_MAIL_FROM and MAILROOM_ALERT_MAIL_TO go together: set both (the sending mailbox, and the recipients separated by commas) or neither".to_owned(),
                );
                None
            }
            (Some(from), Some(to)) => {
                let from = match MailboxAddress::parse(&from) {
                    Ok(from) => Some(from),
                    Err(e) => {
                        env.problem(format!("MAILROOM_ALERT_MAIL_FROM: {e}"));
                        None
                    }
                };
                let mut recipients = Vec::new();
                for raw in to.split(',').map(str::trim).filter(|r| !r.is_empty()) {
                    match MailboxAddress::parse(raw) {
                        Ok(address) => recipients.push(address),
                        Err(e) => env.problem(format!("MAILROOM_ALERT_MAIL_TO: {e}")),
                    }
                }
                if recipients.is_empty() {
                    env.problem("MAILROOM_ALERT_MAIL_TO holds no address".to_owned());
                }
                from.map(|from| AlertMail {
                    from,
                    to: recipients,
                    credential,
                })
            }
        };
        let thresholds = match env.optional("MAILROOM_EXPIRY_THRESHOLDS") {
            None => Thresholds::default(),
            Some(raw) => Thresholds::parse(&raw).unwrap_or_else(|e| {
                env.problem(format!("MAILROOM_EXPIRY_THRESHOLDS: {e}"));
                Thresholds::default()
            }),
        };
        let rotation_secret_days = env.number("MAILROOM_ROTATION_SECRET_DAYS", 180, 1, 730);
        let secret_cache_ttl =
            Duration::from_secs(env.number("MAILROOM_SECRET_CACHE_SECONDS", 300, 0, 3600));
        let graph = env.graph();
        env.finish(Self {
            table,
            alert_topic_arn,
            alert_mail,
            thresholds,
            secret_cache_ttl,
            rotation_secret_days,
            graph,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::BTreeSet;

    use std::collections::HashMap;

    use super::*;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| vars.get(name).cloned()
    }

    #[test]
    fn defaults_apply_and_required_variables_are_named() {
        let err = AwsSettings::from_lookup(lookup(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("MAILROOM_TABLE is not set"), "{err}");
        assert!(err.contains("MAILROOM_BUCKET is not set"), "{err}");

        let s =
            AwsSettings::from_lookup(lookup(&[("MAILROOM_TABLE", "t"), ("MAILROOM_BUCKET", "b")]))
                .unwrap();
        assert_eq!(s.graph.graph_url.as_str(), "https://graph.microsoft.com/");
        assert_eq!(
            s.graph.login_url.as_str(),
            "https://login.microsoftonline.com/"
        );
        assert!(!s.s3_path_style);
    }

    #[test]
    fn each_mailbox_is_paced_to_outlooks_budget_unless_told_otherwise() {
        let base = [("MAILROOM_TABLE", "t"), ("MAILROOM_BUCKET", "b")];
        let s = AwsSettings::from_lookup(lookup(&base)).unwrap();
        assert_eq!(s.graph.request_budget, Some(RequestBudget::default()));

        let shared = [&base[..], &[("MAILROOM_GRAPH_BUDGET_REQUESTS", "5000")]].concat();
        let s = AwsSettings::from_lookup(lookup(&shared)).unwrap();
        let budget = s.graph.request_budget.unwrap();
        assert_eq!((budget.requests, budget.window.as_secs()), (5000, 600));

        let off = [&base[..], &[("MAILROOM_GRAPH_BUDGET_REQUESTS", "0")]].concat();
        let s = AwsSettings::from_lookup(lookup(&off)).unwrap();
        assert_eq!(s.graph.request_budget, None);

        let bad = [&base[..], &[("MAILROOM_GRAPH_BUDGET_SECONDS", "0")]].concat();
        let err = AwsSettings::from_lookup(lookup(&bad)).unwrap_err();
        assert!(
            err.to_string().contains("MAILROOM_GRAPH_BUDGET_SECONDS"),
            "{err}"
        );
    }

    #[test]
    fn every_bad_value_is_reported_at_once() {
        let err = AwsSettings::from_lookup(lookup(&[
            ("MAILROOM_TABLE", "t"),
            ("MAILROOM_BUCKET", "b"),
            ("MAILROOM_GRAPH_URL", "graph.microsoft.com"),
            ("MAILROOM_S3_PATH_STYLE", "maybe"),
            ("MAILROOM_SECRET_CACHE_SECONDS", "-1"),
        ]))
        .unwrap_err();
        assert_eq!(err.problems.len(), 3, "{err}");
        assert!(
            err.to_string()
                .contains("MAILROOM_GRAPH_URL must be an http(s) URL")
        );
    }

    /// The names `read` looks up, and the problems it reports when nothing is set (which name
    /// exactly the required variables).
    fn looked_up<T>(
        read: impl FnOnce(&dyn Fn(&str) -> Option<String>) -> Result<T, ConfigError>,
    ) -> (BTreeSet<String>, Vec<String>) {
        let seen = RefCell::new(BTreeSet::new());
        let lookup = |name: &str| {
            seen.borrow_mut().insert(name.to_owned());
            None
        };
        let problems = match read(&lookup) {
            Ok(_) => Vec::new(),
            Err(e) => e.problems,
        };
        (seen.into_inner(), problems)
    }

    fn names(vars: impl IntoIterator<Item = EnvVar>) -> BTreeSet<String> {
        vars.into_iter().map(|v| v.name.to_owned()).collect()
    }

    fn required_problems(vars: impl IntoIterator<Item = EnvVar>) -> Vec<String> {
        vars.into_iter()
            .filter(|v| v.required)
            .map(|v| v.name.to_owned())
            .collect()
    }

    #[test]
    fn aws_env_vars_are_exactly_the_variables_read() {
        let (seen, problems) = looked_up(|lookup| AwsSettings::from_lookup(lookup));
        assert_eq!(seen, names(AwsSettings::ENV_VARS.iter().copied()));
        let named: Vec<String> = problems
            .iter()
            .filter_map(|p| p.split(' ').next().map(str::to_owned))
            .collect();
        assert_eq!(
            named,
            required_problems(AwsSettings::ENV_VARS.iter().copied())
        );
    }

    #[test]
    fn import_env_vars_are_exactly_the_variables_read() {
        let (seen, problems) = looked_up(|lookup| ImportSettings::from_lookup(lookup));
        assert_eq!(seen, names(ImportSettings::env_vars()));
        let named: Vec<String> = problems
            .iter()
            .filter_map(|p| p.split(' ').next().map(str::to_owned))
            .collect();
        assert_eq!(named, required_problems(ImportSettings::env_vars()));

        let settings = ImportSettings::from_lookup(lookup(&[
            ("MAILROOM_TABLE", "t"),
            ("MAILROOM_BUCKET", "b"),
            ("MAILROOM_STOP_MARGIN_SECONDS", "90"),
        ]))
        .unwrap();
        assert_eq!(settings.stop_margin, Duration::from_secs(90));
        assert_eq!(settings.mailbox_parallelism, 4);
        assert!(settings.push.is_none());

        let settings = ImportSettings::from_lookup(lookup(&[
            ("MAILROOM_TABLE", "t"),
            ("MAILROOM_BUCKET", "b"),
            (
                "MAILROOM_WEBHOOK_URL",
                "https://abc.lambda-url.eu-west-1.on.aws/",
            ),
            ("MAILROOM_SUBSCRIPTION_MINUTES", "600"),
        ]))
        .unwrap();
        let push = settings.push.unwrap();
        assert_eq!(
            push.urls.lifecycle_url,
            "https://abc.lambda-url.eu-west-1.on.aws/lifecycle"
        );
        assert_eq!(push.lifetime, Duration::from_secs(600 * 60));
        assert_eq!(push.renew_margin, Duration::from_secs(24 * 3600));

        let err = ImportSettings::from_lookup(lookup(&[
            ("MAILROOM_TABLE", "t"),
            ("MAILROOM_BUCKET", "b"),
            ("MAILROOM_WEBHOOK_URL", "not a url"),
            ("MAILROOM_SUBSCRIPTION_MINUTES", "9999"),
        ]))
        .unwrap_err();
        assert_eq!(err.problems.len(), 2, "{err}");
    }

    #[test]
    fn webhook_env_vars_are_exactly_the_variables_read() {
        let (seen, problems) = looked_up(|lookup| WebhookSettings::from_lookup(lookup));
        assert_eq!(seen, names(WebhookSettings::ENV_VARS.iter().copied()));
        assert_eq!(problems.len(), 2);
    }

    #[test]
    fn expiry_env_vars_are_exactly_the_variables_read() {
        let (seen, problems) = looked_up(|lookup| ExpirySettings::from_lookup(lookup));
        assert_eq!(seen, names(ExpirySettings::ENV_VARS.iter().copied()));
        let named: Vec<String> = problems
            .iter()
            .filter_map(|p| p.split(' ').next().map(str::to_owned))
            .collect();
        assert_eq!(
            named,
            required_problems(ExpirySettings::ENV_VARS.iter().copied())
        );

        let settings = ExpirySettings::from_lookup(lookup(&[("MAILROOM_TABLE", "t")])).unwrap();
        assert_eq!(settings.thresholds.days(), &[30, 14, 7, 3, 1]);
        assert!(settings.alert_topic_arn.is_none() && settings.alert_mail.is_none());

        let settings = ExpirySettings::from_lookup(lookup(&[
            ("MAILROOM_TABLE", "t"),
            (
                "MAILROOM_ALERT_TOPIC_ARN",
                "arn:aws:sns:us-east-1:123456789012:alerts",
            ),
            ("MAILROOM_ALERT_MAIL_FROM", "alerts@contoso.com"),
            ("MAILROOM_ALERT_MAIL_TO", "it@contoso.com, ops@contoso.com"),
            ("MAILROOM_EXPIRY_THRESHOLDS", "7, 60,1"),
        ]))
        .unwrap();
        assert_eq!(settings.thresholds.days(), &[60, 7, 1]);
        let mail = settings.alert_mail.unwrap();
        assert_eq!(mail.to.len(), 2);
        assert_eq!(mail.credential, None);

        let err = ExpirySettings::from_lookup(lookup(&[
            ("MAILROOM_TABLE", "t"),
            ("MAILROOM_ALERT_TOPIC_ARN", "alerts"),
            ("MAILROOM_ALERT_MAIL_FROM", "alerts@contoso.com"),
            ("MAILROOM_EXPIRY_THRESHOLDS", "30,soon"),
        ]))
        .unwrap_err();
        assert_eq!(err.problems.len(), 3, "{err}");
    }
}
