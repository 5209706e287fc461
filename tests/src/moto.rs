//! A moto server (the AWS emulator) for the tests of this process, and fresh resources on it.
//!
//! One server per test process, started on first use. It must not outlive the process, however
//! the process ends (a failed assertion, Ctrl-C, SIGKILL from a timeout). `prctl(PR_SET_PDEATHSIG)`
//! would need `unsafe` (forbidden in this workspace), so moto runs under a small `sh` wrapper
//! whose stdin is a pipe from this process: the kernel closes the pipe when this process exits,
//! for any reason, and the wrapper then kills moto. Only this process holds the pipe's write end
//! (std opens pipes close-on-exec), so nothing else keeps moto alive.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::{Credentials, SharedCredentialsProvider};
use mailroom::adapters::aws::{AwsClients, DynamoStateStore, S3BlobStore, SqsJobQueue};

/// How long moto may take to answer HTTP after it is started.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Attempts at starting moto: the free port we pick can be taken by someone else before moto
/// binds it.
const START_ATTEMPTS: usize = 3;

/// Smallest multipart part moto accepts. Real S3 says 5 MiB; lower here so a test can prove the
/// multipart path with a 1 MiB body. The adapter itself never uses parts under 5 MiB unless a
/// test asks for it.
pub const MOTO_MIN_PART_SIZE: usize = 64 * 1024;

/// The wrapper: moto in the background, a watcher that kills it when our pipe reaches
/// end-of-file, and `wait` so the wrapper also ends if moto dies on its own (say, port taken).
/// A non-interactive shell gives background jobs /dev/null as stdin, so the pipe is handed to
/// the watcher on fd 3.
const WRAPPER: &str = r#"
exec 3<&0
"$0" -m moto.server -H 127.0.0.1 -p "$1" </dev/null 3<&- &
moto=$!
(cat <&3 >/dev/null; kill "$moto" 2>/dev/null) &
exec 3<&-
wait "$moto"
"#;

/// The server, or why it could not start: remembered so that one failure does not make every
/// test start moto again.
static SHARED: OnceLock<Result<Moto, String>> = OnceLock::new();

/// An SDK configuration for moto (or a proxy in front of it) at `endpoint`: us-east-1, static
/// test credentials. Built explicitly, so nothing from the environment (profiles, real
/// credentials, endpoint variables) can send a test to a real account.
pub fn sdk_config_for(endpoint: &str) -> SdkConfig {
    sdk_config_timing_out(endpoint, mailroom::adapters::aws::ATTEMPT_TIMEOUT)
}

/// [`sdk_config_for`], with each attempt of a call abandoned after `attempt` (the functions use
/// [`mailroom::adapters::aws::ATTEMPT_TIMEOUT`]).
pub fn sdk_config_timing_out(endpoint: &str, attempt: std::time::Duration) -> SdkConfig {
    SdkConfig::builder()
        .timeout_config(mailroom::adapters::aws::timeouts(attempt))
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "testing", "testing", None, None, "moto",
        )))
        .endpoint_url(endpoint)
        .build()
}

/// A running moto server.
pub struct Moto {
    endpoint: String,
    log: PathBuf,
    /// Holds the write end of the wrapper's stdin: moto lives exactly as long as this process.
    _wrapper: Mutex<Child>,
}

impl Moto {
    /// The server for this test process, started on first call.
    ///
    /// # Panics
    /// If there is no Python with moto (run `scripts/test`, which installs it into `.venv`), or
    /// moto does not answer within 30 s (its log file is named in the message).
    pub fn shared() -> &'static Moto {
        match SHARED.get_or_init(Moto::start) {
            Ok(moto) => moto,
            Err(why) => panic!("{why}"),
        }
    }

    /// Where moto listens, e.g. `http://127.0.0.1:41234`.
    pub fn endpoint(&self) -> String {
        self.endpoint.clone()
    }

    /// Moto's output.
    pub fn log_file(&self) -> &Path {
        &self.log
    }

    /// An SDK configuration for moto ([`sdk_config_for`] its endpoint).
    pub fn sdk_config(&self) -> SdkConfig {
        sdk_config_for(&self.endpoint())
    }

    /// Clients for moto, S3 path-style (moto on 127.0.0.1 has no bucket subdomains).
    pub fn clients(&self) -> AwsClients {
        AwsClients::from_sdk_config(&self.sdk_config(), true)
    }

    /// A new, empty table with Mailroom's layout and a store on it.
    pub async fn fresh_table(&self) -> (DynamoStateStore, String) {
        let table = format!("mailroom-{}", uuid::Uuid::new_v4().simple());
        let client = self.clients().dynamodb;
        DynamoStateStore::create_table(&client, &table)
            .await
            .unwrap_or_else(|e| panic!("creating table {table} on moto: {e}"));
        (DynamoStateStore::new(client, &table), table)
    }

    /// A new, empty bucket and a store on it (default part size).
    pub async fn fresh_bucket(&self) -> (S3BlobStore, String) {
        let bucket = format!("mailroom-{}", uuid::Uuid::new_v4().simple());
        let client = self.clients().s3;
        client
            .create_bucket()
            .bucket(&bucket)
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "creating bucket {bucket} on moto: {}",
                    aws_sdk_s3::error::DisplayErrorContext(e)
                )
            });
        (S3BlobStore::new(client, &bucket), bucket)
    }

    /// A new, empty FIFO queue (`mailroom-<uuid>.fifo`, deduplication by id, not by content) and
    /// a job queue on it, with its URL.
    pub async fn fresh_fifo_queue(&self) -> (SqsJobQueue, String) {
        use aws_sdk_sqs::types::QueueAttributeName;
        let name = format!("mailroom-{}.fifo", uuid::Uuid::new_v4().simple());
        let client = self.clients().sqs;
        let created = client
            .create_queue()
            .queue_name(&name)
            .attributes(QueueAttributeName::FifoQueue, "true")
            .attributes(QueueAttributeName::ContentBasedDeduplication, "false")
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "creating queue {name} on moto: {}",
                    aws_sdk_sqs::error::DisplayErrorContext(e)
                )
            });
        let url = created
            .queue_url()
            .unwrap_or_else(|| panic!("moto created queue {name} without a URL"))
            .to_owned();
        (SqsJobQueue::new(client, &url), url)
    }

    /// Receives (10 at a time, waiting up to 1 s) and deletes every message on the queue at
    /// `url`, until a receive comes back empty: `(message group, body)` in delivery order.
    pub async fn drain_queue(&self, url: &str) -> Vec<(String, String)> {
        use aws_sdk_sqs::types::MessageSystemAttributeName;
        let client = self.clients().sqs;
        use aws_sdk_sqs::error::DisplayErrorContext;
        let mut drained = Vec::new();
        loop {
            let received = client
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .message_system_attribute_names(MessageSystemAttributeName::MessageGroupId)
                .send()
                .await
                .unwrap_or_else(|e| panic!("draining {url} on moto: {}", DisplayErrorContext(e)));
            if received.messages().is_empty() {
                return drained;
            }
            for message in received.messages() {
                let group = message
                    .attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId))
                    .cloned()
                    .unwrap_or_default();
                drained.push((group, message.body().unwrap_or_default().to_owned()));
                client
                    .delete_message()
                    .queue_url(url)
                    .receipt_handle(message.receipt_handle().unwrap_or_default())
                    .send()
                    .await
                    .unwrap_or_else(|e| {
                        panic!("draining {url} on moto: {}", DisplayErrorContext(e))
                    });
            }
        }
    }

    /// A new EventBridge bus whose rule sends Mailroom's events (`source` `mailroom`) to a new
    /// SQS queue, to read back what is published: the bus's name and the queue's URL. Each
    /// message in the queue is an EventBridge event, the Mailroom event in its `detail`.
    pub async fn fresh_event_sink(&self) -> (String, String) {
        use aws_sdk_eventbridge::error::DisplayErrorContext;
        use aws_sdk_eventbridge::types::Target;
        let id = uuid::Uuid::new_v4().simple();
        let (bus, queue) = (format!("mailroom-{id}"), format!("mailroom-events-{id}"));
        let events = self.clients().eventbridge;
        let sqs = self.clients().sqs;
        events
            .create_event_bus()
            .name(&bus)
            .send()
            .await
            .unwrap_or_else(|e| panic!("creating bus {bus} on moto: {}", DisplayErrorContext(e)));
        let url = sqs
            .create_queue()
            .queue_name(&queue)
            .send()
            .await
            .unwrap_or_else(|e| panic!("creating queue {queue} on moto: {}", sqs_error(e)))
            .queue_url()
            .unwrap_or_else(|| panic!("moto created queue {queue} without a URL"))
            .to_owned();
        let arn = sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .unwrap_or_else(|e| panic!("reading queue {queue}'s ARN on moto: {}", sqs_error(e)))
            .attributes()
            .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
            .unwrap_or_else(|| panic!("queue {queue} has no ARN"))
            .to_owned();
        events
            .put_rule()
            .name("mailroom-events")
            .event_bus_name(&bus)
            .event_pattern(r#"{"source":["mailroom"],"detail-type":["Message Stored"]}"#)
            .send()
            .await
            .unwrap_or_else(|e| panic!("creating a rule on moto: {}", DisplayErrorContext(e)));
        events
            .put_targets()
            .rule("mailroom-events")
            .event_bus_name(&bus)
            .targets(
                Target::builder()
                    .id("queue")
                    .arn(arn)
                    .build()
                    .unwrap_or_else(|e| panic!("an EventBridge target: {e}")),
            )
            .send()
            .await
            .unwrap_or_else(|e| panic!("adding a target on moto: {}", DisplayErrorContext(e)));
        (bus, url)
    }

    /// A new SNS topic with a new SQS queue subscribed to it, to read back what is published:
    /// the topic's ARN and the queue's URL. Each message in the queue is SNS's JSON envelope
    /// (`Subject`, `Message`…).
    pub async fn fresh_topic(&self) -> (String, String) {
        use aws_sdk_sqs::types::QueueAttributeName;
        let clients = self.clients();
        let name = format!("mailroom-alerts-{}", uuid::Uuid::new_v4().simple());
        let topic_arn = clients
            .sns
            .create_topic()
            .name(&name)
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "creating topic {name} on moto: {}",
                    aws_sdk_sns::error::DisplayErrorContext(e)
                )
            })
            .topic_arn()
            .unwrap_or_else(|| panic!("moto created topic {name} without an ARN"))
            .to_owned();
        let queue_url = clients
            .sqs
            .create_queue()
            .queue_name(&name)
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "creating queue {name} on moto: {}",
                    aws_sdk_sqs::error::DisplayErrorContext(e)
                )
            })
            .queue_url()
            .unwrap_or_else(|| panic!("moto created queue {name} without a URL"))
            .to_owned();
        let attributes = clients
            .sqs
            .get_queue_attributes()
            .queue_url(&queue_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "reading queue {name}'s ARN on moto: {}",
                    aws_sdk_sqs::error::DisplayErrorContext(e)
                )
            });
        let queue_arn = attributes
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::QueueArn))
            .unwrap_or_else(|| panic!("queue {name} has no ARN"))
            .to_owned();
        clients
            .sns
            .subscribe()
            .topic_arn(&topic_arn)
            .protocol("sqs")
            .endpoint(queue_arn)
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "subscribing queue {name} to its topic on moto: {}",
                    aws_sdk_sns::error::DisplayErrorContext(e)
                )
            });
        (topic_arn, queue_url)
    }

    /// Every message waiting in the queue `queue_url` (deleted once read), each body parsed as
    /// JSON (or kept as a string if it is not JSON).
    pub async fn drain_json(&self, queue_url: &str) -> Vec<serde_json::Value> {
        self.drain_queue(queue_url)
            .await
            .into_iter()
            .map(|(_, body)| serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body)))
            .collect()
    }

    /// Creates the secret `name` holding `json`.
    pub async fn put_secret(&self, name: &str, json: &str) {
        self.clients()
            .secrets
            .create_secret()
            .name(name)
            .secret_string(json)
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "creating secret {name} on moto: {}",
                    aws_sdk_secretsmanager::error::DisplayErrorContext(e)
                )
            });
    }

    fn start() -> Result<Moto, String> {
        let python = python()?;
        let log = log_path()?;
        if let Some(dir) = log.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        }
        for _ in 0..START_ATTEMPTS {
            let port = free_port()?;
            let mut wrapper = spawn(&python, port, &log)?;
            let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            let deadline = Instant::now() + STARTUP_TIMEOUT;
            loop {
                if answers_http(address) {
                    return Ok(Moto {
                        endpoint: format!("http://{address}"),
                        log,
                        _wrapper: Mutex::new(wrapper),
                    });
                }
                if let Ok(Some(_)) = wrapper.try_wait() {
                    // Moto exited, most likely because the port was taken: try another. Dropping
                    // `wrapper` closes the pipe, which ends its watcher.
                    break;
                }
                if Instant::now() > deadline {
                    return Err(format!(
                        "moto did not answer on {address} within {}s; see its log: {}",
                        STARTUP_TIMEOUT.as_secs(),
                        log.display()
                    ));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Err(format!(
            "moto exited {START_ATTEMPTS} times before answering; see its log: {}",
            log.display()
        ))
    }
}

/// `MAILROOM_MOTO_PYTHON`, else the workspace's `.venv`.
fn python() -> Result<PathBuf, String> {
    if let Some(python) = std::env::var_os("MAILROOM_MOTO_PYTHON") {
        let python = PathBuf::from(python);
        return if python.exists() {
            Ok(python)
        } else {
            Err(format!(
                "MAILROOM_MOTO_PYTHON is {}, which does not exist; unset it or point it at a Python with moto[server]",
                python.display()
            ))
        };
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    if venv.exists() {
        Ok(venv)
    } else {
        Err(format!(
            "no Python with moto: {} does not exist and MAILROOM_MOTO_PYTHON is not set; run scripts/test, which installs moto[server] into .venv",
            venv.display()
        ))
    }
}

/// `<target>/<profile>/moto/moto-<pid>.log`: test binaries live in `<target>/<profile>/deps`.
fn log_path() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("locating the test binary: {e}"))?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(std::env::temp_dir);
    Ok(profile_dir
        .join("moto")
        .join(format!("moto-{}.log", std::process::id())))
}

fn free_port() -> Result<u16, String> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .map_err(|e| format!("finding a free port for moto: {e}"))
}

fn spawn(python: &Path, port: u16, log: &Path) -> Result<Child, String> {
    let open_log = || {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| format!("opening moto's log {}: {e}", log.display()))
    };
    Command::new("sh")
        .arg("-c")
        .arg(WRAPPER)
        .arg(python)
        .arg(port.to_string())
        .env("S3_UPLOAD_PART_MIN_SIZE", MOTO_MIN_PART_SIZE.to_string())
        .stdin(Stdio::piped())
        .stdout(open_log()?)
        .stderr(open_log()?)
        .spawn()
        .map_err(|e| format!("starting moto with {}: {e}", python.display()))
}

/// Whether an HTTP server answers at `address` (any status will do).
fn answers_http(address: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&address, Duration::from_millis(500)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = b"GET /moto-api/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    if stream.write_all(request).is_err() {
        return false;
    }
    let mut head = [0u8; 8];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.")
}

fn sqs_error<E: std::error::Error>(e: E) -> String {
    aws_sdk_sqs::error::DisplayErrorContext(e).to_string()
}
