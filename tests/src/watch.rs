//! A function binary under `cargo lambda watch`, the Lambda emulator developers run locally.
//!
//! The emulator (cargo-lambda 1.9.2, from `.venv`; `scripts/test` installs it) runs with
//! `--only-lambda-apis`: it serves the Lambda Runtime API under `/.rt`, the invoke API
//! (`POST /2015-03-31/functions/{name}/invocations`) and Function URLs
//! (`/lambda-url/{name}/{path}`, turned into API Gateway HTTP API v2 events), and compiles
//! nothing. The harness starts the built binary itself with the environment cargo-lambda gives the
//! functions it starts: `AWS_LAMBDA_RUNTIME_API=http://{address}/.rt/{name}` (the path prefix
//! names the function; invocations for `{name}` wait in the emulator until it polls),
//! `AWS_LAMBDA_FUNCTION_NAME={name}`, `AWS_LAMBDA_FUNCTION_VERSION=1`,
//! `AWS_LAMBDA_FUNCTION_MEMORY_SIZE=4096` and `AWS_LAMBDA_MAX_CONCURRENCY=1`; plus, as Lambda
//! sets it for the template's `LogFormat: JSON`, `AWS_LAMBDA_LOG_FORMAT=JSON`.
//!
//! Both processes write to one log file, shown in every panic of the harness. Neither outlives
//! the harness, nor the test process however it ends: each runs under a small `sh` wrapper whose
//! stdin is a pipe from this process (as moto does, see [`crate::moto`]); when the pipe closes,
//! a watcher the wrapper left behind kills the process.
//!
//! Test support: a failure panics with what failed and the log, like an assertion.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::future::Future;
use std::io::Write;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The cargo-lambda release `scripts/test` installs; the harness relies on its routes.
pub const CARGO_LAMBDA_VERSION: &str = "1.9.2";

/// How long the emulator may take to answer HTTP (it reads the workspace's metadata first).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Attempts at starting the emulator: the free port picked can be taken before it binds it.
const START_ATTEMPTS: usize = 3;

/// How long a request or an invocation may take by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs `"$@"` in place of the wrapper (`exec`, so the child's pid is the program's), after
/// leaving a watcher that kills it once the wrapper's stdin (a pipe from the test process)
/// reaches end-of-file. `$$` in the watcher's subshell is the wrapper's pid, which `exec` hands
/// to the program. Builtins only: the function's environment has no `PATH`.
const GUARD: &str = r#"
exec 3<&0 </dev/null
(read -r _ <&3; kill -KILL "$$" 2>/dev/null) &
exec 3<&-
exec "$@"
"#;

/// A process under the [`GUARD`] wrapper.
struct Guarded {
    child: Mutex<Child>,
    /// The write end of the watcher's pipe: dropping it kills the process.
    pipe: Mutex<Option<ChildStdin>>,
}

impl Guarded {
    fn spawn(mut command: Command, log: &Path) -> Result<Guarded, String> {
        let open_log = || {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .map_err(|e| format!("opening {}: {e}", log.display()))
        };
        command
            .stdin(Stdio::piped())
            .stdout(open_log()?)
            .stderr(open_log()?);
        let mut child = command
            .spawn()
            .map_err(|e| format!("starting {command:?}: {e}"))?;
        let pipe = child.stdin.take();
        Ok(Guarded {
            child: Mutex::new(child),
            pipe: Mutex::new(pipe),
        })
    }

    fn exited(&self) -> Option<ExitStatus> {
        self.child.lock().unwrap().try_wait().ok().flatten()
    }

    fn kill(&self) {
        drop(self.pipe.lock().unwrap().take());
        let mut child = self.child.lock().unwrap();
        child.kill().ok();
        child.wait().ok();
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What a Function URL answered.
#[derive(Debug, Clone)]
pub struct HttpAnswer {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: String,
}

/// A function binary running under `cargo lambda watch --only-lambda-apis`.
pub struct WatchedFunction {
    name: String,
    base: String,
    log: PathBuf,
    http: reqwest::Client,
    started: Instant,
    // Fields drop in order: the function is killed first, then the emulator.
    function: Guarded,
    _emulator: Guarded,
}

impl WatchedFunction {
    /// Starts `cargo lambda watch --only-lambda-apis` on a free loopback port, waits until it
    /// answers, then starts `binary` as the function `name` against it with the Lambda
    /// environment (see the module's documentation) plus `env`; nothing else from the test's
    /// environment reaches the function. Invocations sent before the function polls wait in the
    /// emulator, as during a cold start in Lambda.
    ///
    /// `name` must be a binary target of the workspace: the emulator refuses invocations of
    /// other names.
    ///
    /// # Panics
    /// If cargo-lambda is not installed (run `scripts/test`), or the emulator does not answer
    /// within 30 s; the message holds the log.
    pub async fn start(name: &str, binary: &Path, env: &[(&str, String)]) -> WatchedFunction {
        let cargo_lambda = cargo_lambda().unwrap_or_else(|why| panic!("{why}"));
        let log = log_path(name);
        if let Some(dir) = log.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("HTTP client");
        let mut last_failure = String::new();
        for _ in 0..START_ATTEMPTS {
            let port = free_port();
            let base = format!("http://127.0.0.1:{port}");
            note(&log, &format!("cargo lambda watch on {base}"));
            let emulator = Guarded::spawn(watch_command(&cargo_lambda, port), &log)
                .unwrap_or_else(|why| panic!("{why}"));
            match wait_until_answering(&http, &base, &emulator, &log).await {
                Ok(()) => {
                    note(&log, &format!("{name}: {}", binary.display()));
                    let started = Instant::now();
                    let function = Guarded::spawn(function_command(name, binary, port, env), &log)
                        .unwrap_or_else(|why| panic!("{why}\n{}", read_log(&log)));
                    return WatchedFunction {
                        name: name.to_owned(),
                        base,
                        log,
                        http,
                        started,
                        function,
                        _emulator: emulator,
                    };
                }
                // Most likely the port was taken: try another.
                Err(why) => {
                    note(&log, &why);
                    last_failure = why;
                }
            }
        }
        panic!(
            "cargo lambda watch did not start in {START_ATTEMPTS} attempts: {last_failure}\n{}",
            read_log(&log)
        );
    }

    /// When the function's process was started (for its cold start).
    pub fn function_started(&self) -> Instant {
        self.started
    }

    /// The function's Function URL for `path_and_query` (which starts with `/`), as the emulator
    /// serves it: `http://127.0.0.1:{port}/lambda-url/{name}{path_and_query}`.
    pub fn function_url(&self, path_and_query: &str) -> String {
        format!("{}/lambda-url/{}{path_and_query}", self.base, self.name)
    }

    /// Sends an HTTP request to the function's Function URL and returns the answer.
    pub async fn request(
        &self,
        method: &str,
        path_and_query: &str,
        content_type: Option<&str>,
        body: &str,
    ) -> HttpAnswer {
        let url = self.function_url(path_and_query);
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self
            .http
            .request(method.clone(), &url)
            .body(body.to_owned());
        if let Some(content_type) = content_type {
            request = request.header(reqwest::header::CONTENT_TYPE, content_type);
        }
        let what = format!("{method} {url}");
        let response = self.answer(&what, request.send()).await;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = self.answer(&what, response.text()).await;
        HttpAnswer {
            status,
            content_type,
            body,
        }
    }

    /// Invokes the function with `event` through the emulator's invoke API
    /// (`POST /2015-03-31/functions/{name}/invocations`, what `cargo lambda invoke` calls):
    /// `Ok` with what the function returned, `Err` with the error it reported.
    pub async fn invoke(&self, event: &Value) -> Result<Value, Value> {
        let url = format!(
            "{}/2015-03-31/functions/{}/invocations",
            self.base, self.name
        );
        let what = format!("invoking {} with {event}", self.name);
        let response = self
            .answer(&what, self.http.post(&url).json(event).send())
            .await;
        let status = response.status().as_u16();
        let body = self.answer(&what, response.text()).await;
        let value = serde_json::from_str(&body).unwrap_or(Value::String(body));
        match status {
            200 => Ok(value),
            // The emulator's answer when the function posts to `invocation/{id}/error`.
            500 => Err(value),
            _ => panic!(
                "{what}: the emulator answered {status}: {value}\n{}",
                self.logs()
            ),
        }
    }

    /// The emulator's and the function's output so far.
    pub fn logs(&self) -> String {
        read_log(&self.log)
    }

    /// Awaits `future` (a request to the emulator), failing if the function exits first or it
    /// takes longer than [`DEFAULT_TIMEOUT`].
    async fn answer<T, E: std::fmt::Display>(
        &self,
        what: &str,
        future: impl Future<Output = Result<T, E>>,
    ) -> T {
        let exited = async {
            loop {
                if let Some(status) = self.function.exited() {
                    return status;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        tokio::select! {
            result = tokio::time::timeout(DEFAULT_TIMEOUT, future) => match result {
                Ok(Ok(value)) => value,
                Ok(Err(e)) => panic!("{what}: {e}\n{}", self.logs()),
                Err(_) => panic!("{what}: no answer within {DEFAULT_TIMEOUT:?}\n{}", self.logs()),
            },
            status = exited => panic!(
                "{what}: the function {} exited ({status}) before answering\n{}",
                self.name,
                self.logs()
            ),
        }
    }
}

/// `MAILROOM_CARGO_LAMBDA`, else `<workspace>/.venv/bin/cargo-lambda`.
pub fn cargo_lambda() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("MAILROOM_CARGO_LAMBDA") {
        let path = PathBuf::from(path);
        return if path.exists() {
            Ok(path)
        } else {
            Err(format!(
                "MAILROOM_CARGO_LAMBDA is {}, which does not exist; unset it or point it at cargo-lambda {CARGO_LAMBDA_VERSION}",
                path.display()
            ))
        };
    }
    let venv = workspace().join(".venv/bin/cargo-lambda");
    if venv.exists() {
        Ok(venv)
    } else {
        Err(format!(
            "cargo-lambda is not installed: {} does not exist and MAILROOM_CARGO_LAMBDA is not set; run scripts/test, which installs cargo-lambda {CARGO_LAMBDA_VERSION} into .venv",
            venv.display()
        ))
    }
}

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives in the workspace")
        .to_path_buf()
}

/// The emulator: Runtime API, invoke API and Function URLs only, on loopback. It inherits the
/// test's environment: it runs `cargo metadata --no-deps` on the workspace to learn its
/// binaries.
fn watch_command(cargo_lambda: &Path, port: u16) -> Command {
    let mut command = Command::new("/bin/sh");
    command
        .arg("-c")
        .arg(GUARD)
        .arg("cargo-lambda-guard")
        .arg(cargo_lambda)
        .args(["lambda", "watch", "--only-lambda-apis"])
        .args(["--invoke-address", "127.0.0.1"])
        .args(["--invoke-port", &port.to_string()])
        .arg("--manifest-path")
        .arg(workspace().join("Cargo.toml"))
        .args(["--color", "never"]);
    command
}

/// The function, with the environment cargo-lambda gives the functions it starts itself
/// (cargo-lambda-watch `watcher.rs`), plus `env`.
fn function_command(name: &str, binary: &Path, port: u16, env: &[(&str, String)]) -> Command {
    let mut command = Command::new("/bin/sh");
    command
        .arg("-c")
        .arg(GUARD)
        .arg("function-guard")
        .arg(binary)
        .env_clear()
        .env(
            "AWS_LAMBDA_RUNTIME_API",
            format!("http://127.0.0.1:{port}/.rt/{name}"),
        )
        .env("AWS_LAMBDA_FUNCTION_NAME", name)
        .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "4096")
        .env("AWS_LAMBDA_MAX_CONCURRENCY", "1")
        // What Lambda sets for the template's `LoggingConfig: LogFormat: JSON`.
        .env("AWS_LAMBDA_LOG_FORMAT", "JSON");
    for (key, value) in env {
        command.env(key, value);
    }
    command
}

/// Polls until the emulator answers HTTP. `GET` on the invoke route answers 405 at once and
/// invokes nothing (any other path is a Function URL and would queue an invocation). `Err` if
/// the emulator exited (most likely its port was taken); panics if it neither answers nor exits
/// within [`STARTUP_TIMEOUT`].
async fn wait_until_answering(
    http: &reqwest::Client,
    base: &str,
    emulator: &Guarded,
    log: &Path,
) -> Result<(), String> {
    let probe = format!("{base}/2015-03-31/functions/_/invocations");
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    loop {
        let answered = http
            .get(&probe)
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .is_ok();
        // Checked after the probe: an answer from whoever else holds the port does not count.
        if let Some(status) = emulator.exited() {
            return Err(format!("cargo lambda watch exited ({status})"));
        }
        if answered {
            return Ok(());
        }
        if Instant::now() > deadline {
            panic!(
                "cargo lambda watch did not answer on {base} within {}s\n{}",
                STARTUP_TIMEOUT.as_secs(),
                read_log(log)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `<target>/<profile>/watch/<name>-<pid>-<n>.log`: test binaries live in
/// `<target>/<profile>/deps`.
fn log_path(name: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let profile_dir = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().and_then(Path::parent).map(Path::to_path_buf))
        .unwrap_or_else(std::env::temp_dir);
    profile_dir
        .join("watch")
        .join(format!("{name}-{}-{n}.log", std::process::id()))
}

/// A line of the harness's own in the log.
fn note(log: &Path, line: &str) {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    writeln!(file, "==> {line}").unwrap();
}

fn read_log(log: &Path) -> String {
    let text = std::fs::read_to_string(log)
        .unwrap_or_else(|e| format!("(cannot read {}: {e})", log.display()));
    format!("---- log {} ----\n{text}----", log.display())
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free loopback port")
}
