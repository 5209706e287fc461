//! `mailroom credentials login NAME`: a person signs in for a delegated credential
//! (docs/delegated.md). In the browser: the authorization code grant with PKCE, Entra sending the
//! browser back to `http://localhost:PORT`, where this command listens for exactly that answer.
//! Without a browser (`--device-code`): the device code grant, the person typing a code on
//! another device. Either way the refresh token is stored, and never printed: locally under the
//! data dir, readable by its owner only; with `--backend aws` in the credential's Secrets Manager
//! secret, as a new version (which the secret's tag lets the functions replace when they refresh
//! it). A sign-in that fails or is abandoned stores nothing, so the credential's previous sign-in
//! stays as it was. Only where the credential comes from and where its sign-in goes differ
//! between the backends ([`run`], [`run_aws`]); the sign-in itself is [`sign_in_and_store`].

use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use std::collections::HashMap;

use mailroom::adapters::aws::{
    AwsClients, DELEGATED_TAG, DelegatedSecretTag, SecretsManagerSignIns, SecretsManagerSource,
};
use mailroom::adapters::local::{FileSecretSource, LocalCredential, LocalSignIns, SecretRef};
use mailroom::credentials::{ClientAuth, SignedIn};
use mailroom::graph::signin::{
    AuthorizeRequest, DelegatedClient, Pkce, SIGN_IN_SCOPES, SignIn, SignInError, TokenSet,
    description_only, new_state,
};
use mailroom::graph::{GraphClient, GraphConfig};
use mailroom::ports::{SecretError, SecretSource, SignInStore};
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::context::Context;

/// How `login` signs in.
#[derive(Debug)]
pub struct Options {
    pub device_code: bool,
    pub open_browser: bool,
    pub port: u16,
    pub login_hint: Option<String>,
    pub timeout: Duration,
}

/// Local mode: the credential is `[credential.NAME]` of mailroom.toml, the sign-in goes under
/// the data dir.
pub async fn run(
    context: &Context,
    data_dir: &Path,
    name: &str,
    options: Options,
) -> anyhow::Result<bool> {
    let config = context
        .local
        .as_ref()
        .ok_or_else(|| anyhow!("no local configuration"))?
        .credential(name)?;
    let Some(scopes) = config.local.delegated_scopes.clone() else {
        bail!(
            "credential '{name}' is an app credential (a client secret or certificate); `login` is for a delegated credential: add kind = \"delegated\" to [credential.{name}] (docs/delegated.md)"
        );
    };
    // A confidential client proves itself with its secret or certificate, read as an app
    // credential's is; a public client (no secret configured) sends none.
    let secret = match &config.local.secret {
        SecretRef::None => None,
        _ => {
            let own = LocalCredential {
                delegated_scopes: None,
                ..config.local.clone()
            };
            let source = FileSecretSource::new(HashMap::from([(name.to_owned(), own)]));
            Some(source.fetch(name).await?.secret)
        }
    };
    let client = DelegatedClient {
        tenant_id: config.local.tenant_id.clone(),
        client_id: config.local.client_id.clone(),
        scopes,
        secret,
    };
    let store = Store::Local(LocalSignIns::new(data_dir));
    sign_in_and_store(&context.graph, &client, &store, name, &options).await
}

/// `--backend aws`: the credential is the Secrets Manager secret NAME, which must exist and be a
/// delegated credential's; the sign-in goes into it as a new version (docs/delegated.md, "On
/// AWS"). Only Secrets Manager is needed: no table, no bucket.
pub async fn run_aws(name: &str, options: Options) -> anyhow::Result<bool> {
    let graph = crate::context::graph_config()?;
    let clients = AwsClients::from_env(false).await;
    let region = clients
        .secrets
        .config()
        .region()
        .map_or_else(|| "(no region set)".to_owned(), ToString::to_string);
    let credential = match SecretsManagerSource::new(clients.secrets.clone())
        .fetch(name)
        .await
    {
        Ok(credential) => credential,
        Err(SecretError::NotFound { .. }) => bail!(
            "there is no secret '{name}' in region {region}; create the delegated credential's secret, then sign in again (fill in the two ids; scopes as needed, docs/delegated.md): {}",
            create_secret_command(name)
        ),
        Err(e) => bail!("{e}; nothing was stored"),
    };
    let Some(delegation) = credential.delegated else {
        bail!(
            "secret '{name}' holds an app credential (a client secret or certificate); `login` is for a delegated credential's secret, one with \"kind\": \"delegated\" (docs/delegated.md); nothing was stored"
        );
    };
    let client = DelegatedClient {
        tenant_id: credential.tenant_id,
        client_id: credential.client_id,
        scopes: delegation.scopes,
        // A confidential client's secret or certificate is in the secret too; a public client
        // has none.
        secret: match credential.secret {
            ClientAuth::Public => None,
            auth => Some(auth),
        },
    };
    let store = Store::Aws {
        sign_ins: SecretsManagerSignIns::new(clients.secrets.clone()),
        tag: DelegatedSecretTag::new(clients.secrets),
    };
    sign_in_and_store(&graph, &client, &store, name, &options).await
}

/// The `aws` command that creates a delegated credential's secret NAME, tagged so the functions
/// may store its refreshed sign-ins (the JSON comes last, to be copied from there on).
fn create_secret_command(name: &str) -> String {
    let (key, value) = DELEGATED_TAG;
    format!(
        "aws secretsmanager create-secret --name {name} --tags Key={key},Value={value} --secret-string '{{\"kind\":\"delegated\",\"tenant_id\":\"<directory (tenant) id>\",\"client_id\":\"<application (client) id>\",\"scopes\":[\"Mail.ReadWrite\",\"offline_access\"]}}'"
    )
}

/// Where a sign-in is stored.
enum Store {
    /// `<data dir>/credentials/NAME.json`, readable by its owner only.
    Local(LocalSignIns),
    /// The credential's own Secrets Manager secret, tagged so the functions may store the
    /// sign-in's refreshes.
    Aws {
        sign_ins: SecretsManagerSignIns,
        tag: DelegatedSecretTag,
    },
}

impl Store {
    /// Stores `signed_in` in one step; where, for people, and what else was done, if anything.
    async fn save(
        &self,
        name: &str,
        signed_in: &SignedIn,
    ) -> anyhow::Result<(String, Option<String>)> {
        match self {
            Self::Local(sign_ins) => {
                let path = sign_ins.save(name, signed_in)?;
                Ok((format!("{} (readable by you only)", path.display()), None))
            }
            Self::Aws { sign_ins, tag } => {
                // Tagged first: a sign-in the functions could not refresh is no use to them.
                let (key, value) = DELEGATED_TAG;
                let tagged = tag.ensure(name).await.map_err(|e| {
                    anyhow!(
                        "{e}; nothing was stored (the functions may store a refreshed sign-in only in a secret tagged {key}={value})"
                    )
                })?;
                sign_ins
                    .save(name, signed_in)
                    .await
                    .map_err(|e| anyhow!("{e}; nothing was stored"))?;
                Ok((
                    format!("Secrets Manager secret '{name}' (a new version, now AWSCURRENT)"),
                    tagged.then(|| {
                        format!(
                            "tagged secret '{name}' {key}={value}: the functions may store its refreshed sign-ins"
                        )
                    }),
                ))
            }
        }
    }
}

/// Signs the person in as `options` say, checks what Entra granted and stores the sign-in in
/// `store`: the same for both backends.
async fn sign_in_and_store(
    graph: &GraphConfig,
    client: &DelegatedClient,
    store: &Store,
    name: &str,
    options: &Options,
) -> anyhow::Result<bool> {
    let sign_in = GraphClient::new(graph.clone())?.sign_in();
    let tokens = if options.device_code {
        device_code(&sign_in, client, options).await?
    } else {
        browser(&sign_in, client, options).await?
    };
    let refresh_token = tokens
        .refresh_token
        .clone()
        .ok_or_else(|| anyhow!("{}; nothing was stored", SignInError::NoRefreshToken))?;
    let missing = not_granted(&client.scopes, &tokens.scopes);
    if !missing.is_empty() {
        bail!(
            "Entra did not grant {} (granted: {}); grant them on the app registration's API permissions (admin consent if the tenant requires it) and sign in again; nothing was stored",
            missing.join(", "),
            tokens.scopes.join(" ")
        );
    }
    let now = OffsetDateTime::now_utc();
    let signed_in = SignedIn {
        user: tokens.user.clone(),
        scopes: tokens.scopes.clone(),
        refresh_token,
        signed_in_at: now,
        refreshed_at: now,
    };
    let (stored_in, done) = store.save(name, &signed_in).await?;
    println!(
        "signed in as {} for credential '{name}'; granted: {}",
        tokens
            .user
            .as_deref()
            .unwrap_or("(Entra did not name the account)"),
        tokens.scopes.join(" ")
    );
    if let Some(done) = done {
        println!("{done}");
    }
    println!("the refresh token is in {stored_in}; Mailroom never prints it");
    Ok(true)
}

/// The configured Graph scopes that the answer's granted scopes lack. Entra may name a Graph
/// scope in full (`https://graph.microsoft.com/Mail.ReadWrite`); the sign-in scopes are not
/// Graph's and are checked otherwise (a refresh token came back).
fn not_granted(asked: &[String], granted: &[String]) -> Vec<String> {
    let short = |scope: &str| {
        scope
            .rsplit('/')
            .next()
            .unwrap_or(scope)
            .to_ascii_lowercase()
    };
    asked
        .iter()
        .filter(|scope| !SIGN_IN_SCOPES.iter().any(|s| s.eq_ignore_ascii_case(scope)))
        .filter(|scope| !granted.iter().any(|g| short(g) == short(scope)))
        .cloned()
        .collect()
}

async fn device_code(
    sign_in: &SignIn,
    client: &DelegatedClient,
    options: &Options,
) -> anyhow::Result<TokenSet> {
    let device = sign_in
        .start_device(client)
        .await
        .map_err(|e| anyhow!("starting the device code sign-in: {e}"))?;
    if device.message.is_empty() {
        println!(
            "To sign in, open {} on any device and enter the code {}",
            device.verification_uri, device.user_code
        );
    } else {
        println!("{}", device.message);
    }
    println!("code: {}", device.user_code);
    println!("waiting for the sign-in (up to {} s)…", device.expires_in);
    let waited = tokio::time::timeout(options.timeout, sign_in.wait_for_device(client, &device))
        .await
        .map_err(|_| abandoned(options.timeout))?;
    waited.map_err(|e| failed(&e))
}

async fn browser(
    sign_in: &SignIn,
    client: &DelegatedClient,
    options: &Options,
) -> anyhow::Result<TokenSet> {
    // Entra sends the browser to http://localhost:PORT; a browser may resolve localhost to
    // 127.0.0.1 or ::1, so listen on both where the machine has both.
    let listener = TcpListener::bind(("127.0.0.1", options.port))
        .await
        .with_context(|| format!("listening on 127.0.0.1:{}", options.port))?;
    let port = listener.local_addr()?.port();
    let ipv6 = TcpListener::bind(("::1", port)).await.ok();
    let redirect_uri = format!("http://localhost:{port}");
    let pkce = Pkce::generate();
    let state = new_state();
    let url = sign_in
        .authorize_url(&AuthorizeRequest {
            client,
            redirect_uri: &redirect_uri,
            state: &state,
            pkce: &pkce,
            login_hint: options.login_hint.as_deref(),
        })
        .map_err(|e| anyhow!("{e}"))?;
    println!("Sign in, as the person whose mail Mailroom will read, at:\n  {url}");
    if options.open_browser {
        open_browser(url.as_str());
    }
    println!(
        "waiting for the sign-in (up to {} s)…",
        options.timeout.as_secs()
    );
    let answer = tokio::time::timeout(options.timeout, wait_for_answer(&listener, ipv6.as_ref()))
        .await
        .map_err(|_| abandoned(options.timeout))??;
    let code = match answer {
        Answer::Code { code, state: got } if got == state => code,
        Answer::Code { .. } => bail!(
            "the answer that reached http://localhost:{port} carries another sign-in's state: it is not the answer to this sign-in (an old browser tab, or someone else's request); nothing was stored; run the login again"
        ),
        Answer::Error { error, description } => {
            let detail = description_only(&description);
            return Err(match error.as_str() {
                "access_denied" => {
                    anyhow!("the sign-in was cancelled or declined ({detail}); nothing was stored")
                }
                "invalid_scope" => anyhow!(
                    "Entra refused the scopes {}: {detail}; add them to the app registration's API permissions or remove them from [credential] scopes; nothing was stored",
                    client.scope_parameter()
                ),
                _ => anyhow!("Entra refused the sign-in: {error}: {detail}; nothing was stored"),
            });
        }
    };
    sign_in
        .redeem_code(client, &code, &redirect_uri, &pkce)
        .await
        .map_err(|e| failed(&e))
}

fn abandoned(timeout: Duration) -> anyhow::Error {
    anyhow!(
        "no sign-in within {} s: the login was abandoned; nothing was stored (--timeout waits longer)",
        timeout.as_secs()
    )
}

fn failed(e: &SignInError) -> anyhow::Error {
    anyhow!("the sign-in failed: {e}; nothing was stored")
}

/// What Entra sent the browser back with.
enum Answer {
    Code { code: String, state: String },
    Error { error: String, description: String },
}

/// Serves the loopback redirect until a request carries a code or an error; anything else (a
/// favicon, a probe) gets 404 and the wait goes on.
async fn wait_for_answer(
    listener: &TcpListener,
    ipv6: Option<&TcpListener>,
) -> anyhow::Result<Answer> {
    loop {
        let accepted = match ipv6 {
            Some(v6) => tokio::select! {
                a = listener.accept() => a,
                a = v6.accept() => a,
            },
            None => listener.accept().await,
        };
        let Ok((mut stream, _)) = accepted else {
            continue;
        };
        let Some(target) = read_request_target(&mut stream).await else {
            continue;
        };
        let url = url::Url::parse(&format!("http://localhost{target}"));
        let pairs: Vec<(String, String)> = url
            .map(|u| u.query_pairs().into_owned().collect())
            .unwrap_or_default();
        let get = |key: &str| pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
        let answer = if let Some(code) = get("code") {
            Answer::Code {
                code,
                state: get("state").unwrap_or_default(),
            }
        } else if let Some(error) = get("error") {
            Answer::Error {
                error,
                description: get("error_description").unwrap_or_default(),
            }
        } else {
            let _ = stream
                .write_all(
                    b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                )
                .await;
            continue;
        };
        let page = match &answer {
            Answer::Code { .. } => {
                "Mailroom received the sign-in. You can close this window and return to the terminal."
            }
            Answer::Error { .. } => "The sign-in did not complete. The terminal says why.",
        };
        let body = format!("<!doctype html><title>Mailroom</title><p>{page}</p>");
        let _ = stream
            .write_all(
                format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/html; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            )
            .await;
        return Ok(answer);
    }
}

/// The request target of an HTTP/1 request (`/?code=…`), from at most 16 KiB of its head.
async fn read_request_target(stream: &mut tokio::net::TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut buffer = [0u8; 2048];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buffer))
            .await
            .ok()?
            .ok()?;
        if read == 0 {
            break;
        }
        head.extend_from_slice(buffer.get(..read)?);
    }
    let line = String::from_utf8_lossy(&head);
    let mut parts = line.lines().next()?.split_whitespace();
    let _method = parts.next()?;
    parts.next().map(str::to_owned)
}

/// Opens `url` in the desktop's browser, if there is a desktop; the URL is printed anyway.
fn open_browser(url: &str) {
    let command = if cfg!(target_os = "macos") {
        Some(("open", vec![url]))
    } else if cfg!(target_os = "windows") {
        Some(("cmd", vec!["/C", "start", "", url]))
    } else if std::env::var_os("DISPLAY").is_some() || std::env::var_os("WAYLAND_DISPLAY").is_some()
    {
        Some(("xdg-open", vec![url]))
    } else {
        None
    };
    if let Some((program, args)) = command {
        let _ = std::process::Command::new(program)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn granted_scopes_match_in_short_or_full_form() {
        let asked = vec![
            "Mail.ReadWrite".to_owned(),
            "Mail.Send".to_owned(),
            "offline_access".to_owned(),
        ];
        let granted = vec!["https://graph.microsoft.com/Mail.ReadWrite".to_owned()];
        assert_eq!(not_granted(&asked, &granted), ["Mail.Send"]);
    }

    #[test]
    fn the_create_secret_command_tags_the_secret_and_holds_a_delegated_credential() {
        let command = create_secret_command("mailroom/alice");
        assert!(
            command.starts_with("aws secretsmanager create-secret --name mailroom/alice "),
            "{command}"
        );
        assert!(
            command.contains(" --tags Key=mailroom:kind,Value=delegated "),
            "{command}"
        );
        let json = command.split('\'').nth(1).unwrap();
        let sign_ins: std::sync::Arc<dyn SignInStore> =
            std::sync::Arc::new(LocalSignIns::new(Path::new("unused")));
        let credential =
            mailroom::credentials::AppCredential::from_stored("mailroom/alice", json, sign_ins)
                .unwrap();
        let delegation = credential.delegated.unwrap();
        assert_eq!(delegation.scopes, ["Mail.ReadWrite", "offline_access"]);
        assert!(matches!(credential.secret, ClientAuth::Public));
    }
}
