//! `graph-sandbox`: an in-process (or standalone) HTTP emulator of the Entra ID token endpoint
//! and the Microsoft Graph mail API, for Mailroom's end-to-end tests, benchmarks and demo.
//!
//! One base URL serves both `POST /{tenant}/oauth2/v2.0/token` and `/v1.0/...`, plus a JSON
//! control API under `/_sandbox/`. Behaviour follows `docs/graph.md`: Exchange-style ids with
//! `/ + =`, immutable vs REST ids, `$skip` paging against the live folder, per-folder delta with
//! expiring tokens, Outlook throttling (4 concurrent requests per app and mailbox), access
//! policies, permissions, and injectable faults and latency. The directory (`/users`, groups and
//! their transitive members, with Graph's paging) lists a tenant's mailboxes for discovery.
//!
//! Applications (docs/graph.md section 9): every app has an application object (`/applications`,
//! with `passwordCredentials` and `keyCredentials`) that apps holding `Application.*`
//! permissions can read and, with `addPassword` / `removePassword`, rotate; the token endpoint
//! accepts a client secret only once it has propagated ([`Sandbox::set_password_propagation_delay`])
//! and accepts client assertions signed with a registered certificate ([`AppCertificate`];
//! a test certificate and key are in [`fixtures`]). Mail sent with `sendMail` is recorded
//! ([`Sandbox::sent_mail`]).
//!
//! Sending (docs/graph.md section 12): drafts (`POST /users/{id}/messages`, PATCH, createReply,
//! createReplyAll) with single-value extended properties (`$filter` with
//! `singleValueExtendedProperties/Any(…)`, `$expand`), attachments (`POST …/attachments` and
//! upload sessions, whose `uploadUrl` is `/upload/{token}` on the sandbox), and
//! `POST …/messages/{id}/send`, which moves the draft to Sent Items, delivers copies to the
//! recipients the sandbox hosts and records the send ([`Sandbox::sent_mail`],
//! [`Sandbox::sent_mail_with_property`]); bouncing recipients ([`Sandbox::set_bouncing`]) earn the
//! sender a non-delivery report.
//!
//! Delegated access (docs/graph.md section 13): `GET /{tenant}/oauth2/v2.0/authorize` (the
//! authorization code grant with PKCE; the test plays the user with
//! [`Sandbox::set_interactive_user`] and [`Sandbox::set_interactive_outcome`]),
//! `POST /{tenant}/oauth2/v2.0/devicecode` ([`Sandbox::approve_device_code`]), and the
//! `authorization_code`, `refresh_token` and device code grants at the token endpoint. A
//! delegated access token acts for its user: `/me/…` is their mailbox, and `/users/{address}/…`
//! reaches mailboxes shared with them ([`Mailbox::shared_with`],
//! [`Mailbox::folder_shared_with`]) with the `.Shared` permissions. Refresh tokens can be
//! revoked, expire after inactivity, lose their consent or need interaction again, each with
//! Entra's error; [`Sandbox::delegated_stats`] counts issues and redemptions.
//!
//! Change notifications (docs/graph.md section 6): `POST /v1.0/subscriptions` runs the validation
//! handshake against the given URLs, then every message created in or moved into a watched
//! folder is POSTed to the `notificationUrl` in the documented envelope, in background tasks,
//! with retries and optional chaos (delay, duplication, reordering, loss); lifecycle events are
//! sent on demand ([`Sandbox::lifecycle`]). Graph requires HTTPS notification URLs; the sandbox
//! accepts `http://` by default so tests can listen on `127.0.0.1` ([`DeliveryConfig::allow_http`]).
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use graph_sandbox::{Mailbox, NewMessage, Sandbox, World, DEFAULT_TENANT};
//! let world = World::default_test()
//!     .mailbox(DEFAULT_TENANT, Mailbox::new("a@contoso.com").messages("Inbox", 25));
//! let sandbox = Sandbox::start(world).await?;
//! sandbox.add_message("a@contoso.com", "Inbox/Reports", NewMessage::new("Nightly report"));
//! println!("point the client at {}", sandbox.url());
//! # Ok(()) }
//! ```

mod assertion;
mod auth;
mod body;
mod control;
mod core;
mod corpus;
mod credentials;
mod delegated;
mod faults;
mod graph;
mod ids;
mod mime;
mod notify;
mod requests;
mod server;
mod state;
mod subscriptions;
mod throttle;
mod world;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use credentials::{AppCertificate, CertificateError, CertificateInfo, PasswordInfo};
pub use delegated::{DelegatedStats, Interaction, InteractiveOutcome};
pub use faults::{FaultKind, FaultRule};
pub use notify::{
    DEFAULT_MAX_SUBSCRIPTION_MINUTES, DeliveryConfig, DeliveryKind, DeliveryRecord, LifecycleEvent,
};
pub use requests::{RequestRecord, Stats};
pub use state::{AttachmentInfo, ExtendedProperty, MessageInfo, SentMail};
pub use subscriptions::SubscriptionInfo;
pub use throttle::MailboxStats;
pub use world::{
    App, AppSecret, DEFAULT_APP_DISPLAY_NAME, DEFAULT_APP_OBJECT_ID, DEFAULT_CLIENT_ID,
    DEFAULT_DELEGATED_PERMISSIONS, DEFAULT_DOMAIN, DEFAULT_PUBLIC_REDIRECT_URIS, DEFAULT_SECRET,
    DEFAULT_SECRET_ID, DEFAULT_TENANT, FolderAccess, Group, Mailbox, NewMessage, Tenant, World,
};

/// A test-only certificate credential: a self-signed RSA-2048 certificate (CN=mailroom-test-app,
/// valid until 2046) and its PKCS#8 private key, for registering on a sandbox app
/// ([`App::certificate`], [`Sandbox::add_certificate`]) and signing client assertions in tests.
/// They protect nothing: never use them outside tests.
pub mod fixtures {
    /// The certificate, PEM.
    pub const TEST_CERT_PEM: &str = include_str!("../fixtures/app-cert.pem");
    /// Its private key, PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
    pub const TEST_KEY_PEM: &str = include_str!("../fixtures/app-key.pem");
}

use crate::core::{Core, lock};

/// A running sandbox. Cheap to clone (an `Arc`); the server stops when [`Sandbox::shutdown`] is
/// called or the last clone is dropped (dropping never blocks).
#[derive(Clone)]
pub struct Sandbox {
    inner: Arc<Handle>,
}

struct Handle {
    core: Arc<Core>,
    url: String,
    shutdown: Mutex<Option<oneshot::Sender<()>>>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        if let Some(tx) = lock(&self.shutdown).take() {
            let _ = tx.send(());
        }
        if let Some(task) = lock(&self.task).take() {
            task.abort();
        }
    }
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("url", &self.inner.url)
            .finish_non_exhaustive()
    }
}

impl Sandbox {
    /// Starts a sandbox on `127.0.0.1` with an ephemeral port.
    pub async fn start(world: World) -> std::io::Result<Sandbox> {
        Self::start_on(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0), world).await
    }

    /// Starts a sandbox on `addr` (port 0 picks one). Must be called inside a Tokio runtime.
    pub async fn start_on(addr: SocketAddr, world: World) -> std::io::Result<Sandbox> {
        use axum::serve::ListenerExt;

        let listener = tokio::net::TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let host = if local.ip().is_unspecified() {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            local.ip()
        };
        let url = format!("http://{}", SocketAddr::new(host, local.port()));
        let core = Arc::new(Core::new(&world));
        core.set_url(url.clone());
        core.notify.set_runtime(tokio::runtime::Handle::current());
        let app = server::router(Arc::clone(&core));
        // Nagle plus delayed ACKs would add tens of milliseconds to small responses.
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
            if let Err(e) = served {
                tracing::warn!(error = %e, "graph sandbox server stopped");
            }
        });
        Ok(Sandbox {
            inner: Arc::new(Handle {
                core,
                url,
                shutdown: Mutex::new(Some(tx)),
                task: Mutex::new(Some(task)),
            }),
        })
    }

    fn core(&self) -> &Core {
        &self.inner.core
    }

    /// `http://127.0.0.1:PORT` (no trailing slash): the base for both Graph (`/v1.0`) and login
    /// (`/{tenant}/oauth2/v2.0/token`).
    pub fn url(&self) -> String {
        self.inner.url.clone()
    }

    /// Adds a message to a folder path (created if missing; an empty path means the Inbox). An
    /// unknown mailbox is created in the tenant owning its domain (else the first tenant).
    pub fn add_message(&self, mailbox: &str, folder_path: &str, m: NewMessage) -> MessageInfo {
        self.core()
            .add_message(mailbox, folder_path, &m)
            .unwrap_or_else(|| MessageInfo {
                immutable_id: String::new(),
                rest_id: String::new(),
                internet_message_id: String::new(),
                subject: m.subject.clone(),
                folder_path: folder_path.to_owned(),
                is_read: m.is_read,
                received: self.now(),
                size: 0,
                sha256: String::new(),
                is_draft: false,
                conversation_id: String::new(),
            })
    }

    /// Creates a folder path such as "Inbox/Backup Reports/Archive 2025" (and the mailbox if
    /// unknown).
    pub fn add_folder(&self, mailbox: &str, path: &str) {
        self.core().add_folder(mailbox, path);
    }

    /// Renames the folder at `path` to `name` and, with `parent_path`, moves it there: its id
    /// and messages stay (as Outlook's rename and move do). Returns whether the folders exist.
    pub fn rename_folder(
        &self,
        mailbox: &str,
        path: &str,
        name: &str,
        parent_path: Option<&str>,
    ) -> bool {
        self.core().rename_folder(mailbox, path, name, parent_path)
    }

    /// Deletes the user owning `mailbox` from the directory: `/users` and group members no
    /// longer list it. Its mailbox is left as it was (Entra keeps a deleted user for 30 days;
    /// what mail requests answer meanwhile is not documented, so the sandbox does not model it).
    /// Returns whether there was such a user.
    pub fn delete_user(&self, mailbox: &str) -> bool {
        self.core().delete_user(mailbox)
    }

    /// Adds a search folder (`mailSearchFolder`) `name` under the folder at `parent_path`. It is
    /// listed among its parent's child folders and, like every search folder, also in the
    /// top-level `mailFolders` listing (see `graph::folders::list`).
    pub fn add_search_folder(&self, mailbox: &str, parent_path: &str, name: &str) {
        self.core().add_search_folder(mailbox, parent_path, name);
    }

    /// Every message of the mailbox, Deleted Items and Recoverable Items included (empty if the
    /// mailbox is unknown).
    pub fn messages(&self, mailbox: &str) -> Vec<MessageInfo> {
        self.core().messages(mailbox, None)
    }

    /// The messages of one folder path, newest first ("Drafts", "Sent Items" and "Outbox" are
    /// folder paths like any other).
    pub fn folder_messages(&self, mailbox: &str, folder_path: &str) -> Vec<MessageInfo> {
        self.core().messages(mailbox, Some(folder_path))
    }

    /// Hex SHA-256 of a message's MIME (streamed through the generator, not buffered).
    pub fn mime_sha256(&self, mailbox: &str, immutable_id: &str) -> Option<String> {
        self.core().mime(mailbox, immutable_id).map(|t| t.sha256())
    }

    /// A message's MIME bytes (meant for small messages).
    pub fn mime_bytes(&self, mailbox: &str, immutable_id: &str) -> Option<Vec<u8>> {
        self.core().mime(mailbox, immutable_id).map(|t| t.to_vec())
    }

    /// The request log, oldest first (Graph and token requests; capped at a million).
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.core().requests()
    }

    /// Empties the request log (counters are kept).
    pub fn clear_requests(&self) {
        self.core().clear_requests();
    }

    /// The highest number of concurrent requests one app had on this mailbox, counting each
    /// arriving request itself, including those refused with 429.
    pub fn max_concurrency(&self, mailbox: &str) -> usize {
        self.core().max_concurrency(mailbox)
    }

    /// Requests received by the token endpoint, successful or not.
    pub fn token_requests(&self) -> usize {
        self.core().token_requests()
    }

    /// The access tokens the token endpoint has issued and still holds (expired ones are
    /// forgotten only past 10,000), so a test can check that none of them shows up in logs or
    /// output.
    pub fn issued_tokens(&self) -> Vec<String> {
        self.core().issued_tokens()
    }

    /// All counters.
    pub fn stats(&self) -> Stats {
        self.core().stats()
    }

    /// Queues a fault rule.
    pub fn inject(&self, f: FaultRule) {
        self.core().inject(f);
    }

    /// Removes every pending fault rule.
    pub fn clear_faults(&self) {
        self.core().clear_faults();
    }

    /// Faults fired so far, by every rule (cleared or not).
    pub fn faults_fired(&self) -> usize {
        self.core().faults_fired()
    }

    /// Delay added to every Graph request while it holds its in-flight slot.
    pub fn set_latency(&self, d: Duration) {
        self.core().set_latency(d);
    }

    /// The rest of the latency model: `per_kib` more for each KiB of a MIME body (`$value`), and
    /// every delay scaled by a random factor in `1 ± jitter` (0 to 1).
    pub fn set_latency_model(&self, per_kib: Duration, jitter: f64) {
        self.core().set_latency_model(per_kib, jitter);
    }

    /// Extra delay for one mailbox's Graph requests (on top of the global one).
    pub fn set_mailbox_latency(&self, mailbox: &str, d: Duration) {
        self.core().set_mailbox_latency(mailbox, d);
    }

    /// `Retry-After` seconds sent with concurrency 429s (default 1; fractions allowed).
    pub fn set_throttle_retry_after(&self, seconds: f64) {
        self.core().set_throttle_retry_after(seconds);
    }

    /// Request budget per app and mailbox (default 10,000 per 10 minutes); resets the windows.
    pub fn set_request_budget(&self, requests: u32, window: Duration) {
        self.core().set_request_budget(Some((requests, window)));
    }

    /// Turns the request budget off (useful for long benchmarks).
    pub fn disable_request_budget(&self) {
        self.core().set_request_budget(None);
    }

    /// Concurrent requests allowed per app and mailbox (default 4).
    pub fn set_concurrency_limit(&self, n: usize) {
        self.core().set_concurrency_limit(n);
    }

    /// Invalidates every delta skip and delta token of the mailbox: they answer
    /// `410 SyncStateNotFound`.
    pub fn expire_delta_tokens(&self, mailbox: &str) {
        self.core().expire_delta_tokens(mailbox);
    }

    /// Replaces an app's permissions (in every tenant registering that client id); existing
    /// tokens see the change at once.
    pub fn set_app_permissions(&self, client_id: &str, p: &[&str]) {
        let p: Vec<String> = p.iter().map(|s| (*s).to_owned()).collect();
        self.core().set_app_permissions(client_id, &p);
    }

    /// Restricts an app to some mailboxes (`Some`) or lifts the restriction (`None`).
    pub fn set_app_scope(&self, client_id: &str, only: Option<&[&str]>) {
        let only: Option<Vec<String>> = only.map(|l| l.iter().map(|s| (*s).to_owned()).collect());
        self.core().set_app_scope(client_id, only.as_deref());
    }

    /// The application object id (`id`, "Object ID") of the app registration with this client id
    /// (the first tenant's, if several register it).
    pub fn application_object_id(&self, client_id: &str) -> Option<String> {
        self.core().application_object_id(client_id)
    }

    /// The app's client secrets (`passwordCredentials`; empty if the app is unknown).
    pub fn application_passwords(&self, client_id: &str) -> Vec<PasswordInfo> {
        self.core().application_passwords(client_id)
    }

    /// The app's certificates (`keyCredentials`; empty if the app is unknown).
    pub fn application_certificates(&self, client_id: &str) -> Vec<CertificateInfo> {
        self.core().application_certificates(client_id)
    }

    /// Adds a client secret with a known value, as the portal would (replacing one with the same
    /// key id); like addPassword, it works only after the propagation delay. False if the app is
    /// unknown.
    pub fn add_secret(&self, client_id: &str, secret: AppSecret) -> bool {
        self.core().add_secret(client_id, &secret)
    }

    /// Removes a client secret by key id; false if there is none.
    pub fn remove_password(&self, client_id: &str, key_id: &str) -> bool {
        self.core().remove_password(client_id, key_id)
    }

    /// Moves a client secret's `endDateTime`; false if there is no such secret.
    pub fn set_password_expiry(
        &self,
        client_id: &str,
        key_id: &str,
        at: time::OffsetDateTime,
    ) -> bool {
        self.core().set_password_expiry(client_id, key_id, at)
    }

    /// How long a password added from now on (addPassword, [`Sandbox::add_secret`]) takes to
    /// work at the token endpoint, on the sandbox clock (default zero). Until then it is refused
    /// with AADSTS7000215, like an unknown secret. Existing passwords keep their time.
    pub fn set_password_propagation_delay(&self, d: Duration) {
        self.core().set_password_propagation_delay(d);
    }

    /// Registers a PEM certificate on the app (a random key id, its own validity); returns the
    /// key id.
    pub fn add_certificate(
        &self,
        client_id: &str,
        cert_pem: &str,
    ) -> Result<String, CertificateError> {
        let c = AppCertificate::from_pem(cert_pem)?;
        self.core().add_certificate(client_id, &c)
    }

    /// Registers a certificate built with [`AppCertificate`] (key id, display name, start and end
    /// overrides), replacing one with the same key id; returns the key id.
    pub fn add_app_certificate(
        &self,
        client_id: &str,
        c: AppCertificate,
    ) -> Result<String, CertificateError> {
        self.core().add_certificate(client_id, &c)
    }

    /// Removes a certificate by key id; false if there is none.
    pub fn remove_certificate(&self, client_id: &str, key_id: &str) -> bool {
        self.core().remove_certificate(client_id, key_id)
    }

    /// Moves a certificate credential's `endDateTime`; false if there is no such certificate.
    pub fn set_certificate_expiry(
        &self,
        client_id: &str,
        key_id: &str,
        at: time::OffsetDateTime,
    ) -> bool {
        self.core().set_certificate_expiry(client_id, key_id, at)
    }

    /// Every message sent, with `sendMail` or by sending a draft, oldest first (whether or not
    /// saved to Sent Items).
    pub fn sent_mail(&self) -> Vec<SentMail> {
        self.core().sent_mail()
    }

    /// The sent drafts that carried the extended property `id` with value `value` (the value
    /// compared exactly), oldest first: how many times one idempotency key was sent.
    pub fn sent_mail_with_property(&self, id: &str, value: &str) -> Vec<SentMail> {
        self.core()
            .sent_mail()
            .into_iter()
            .filter(|s| s.extended_property(id) == Some(value))
            .collect()
    }

    /// Forgets the recorded sent messages.
    pub fn clear_sent_mail(&self) {
        self.core().clear_sent_mail();
    }

    /// Makes mail to `address` bounce: sending a draft to it still answers 202, and the sender
    /// gets a non-delivery report ("Undeliverable: …") in its Inbox.
    pub fn set_bouncing(&self, address: &str) {
        self.core().set_bouncing(address);
    }

    /// No address bounces any more.
    pub fn clear_bouncing(&self) {
        self.core().clear_bouncing();
    }

    /// While `true`, a sent draft waits in its mailbox's Outbox (no longer a draft, same
    /// immutable id) instead of going out at once: nothing is in Sent Items, delivered or
    /// recorded until [`Sandbox::release_outbox`]. Graph warns that the copy in Sent Items "is
    /// not created until the message successfully sends, which may take time".
    pub fn hold_outbox(&self, hold: bool) {
        self.core().hold_outbox(hold);
    }

    /// Sends every message waiting in an Outbox (see [`Sandbox::hold_outbox`]); returns how
    /// many there were. One deleted from the Outbox meanwhile is not sent.
    pub fn release_outbox(&self) -> usize {
        self.core().release_outbox()
    }

    /// The largest message a mailbox may send, in bytes of MIME (default 35 MB, Exchange
    /// Online's default; administrators can raise it to 150 MB). Sending a bigger draft answers
    /// `400 ErrorMessageSizeExceeded`.
    pub fn set_max_message_size(&self, bytes: u64) {
        self.core().set_max_message_size(bytes);
    }

    /// `expires_in` of tokens issued from now on (default 3599).
    pub fn set_token_lifetime(&self, seconds: u64) {
        self.core().set_token_lifetime(seconds);
    }

    /// Moves the sandbox clock forward (token, secret and subscription expiry use it); expired
    /// subscriptions disappear and due `reauthorizationRequired` notifications are sent.
    pub fn advance_clock(&self, d: Duration) {
        self.core().advance_clock(d);
    }

    /// Sandbox time: real time plus every [`Sandbox::advance_clock`].
    pub fn now(&self) -> time::OffsetDateTime {
        self.core().now()
    }

    /// Live subscriptions of every app, oldest first (expired ones are removed first).
    pub fn subscriptions(&self) -> Vec<SubscriptionInfo> {
        self.core().subscriptions()
    }

    /// Every delivery attempt so far, in the order they finished: validation handshakes,
    /// change and lifecycle notifications, retries, and notifications dropped by chaos
    /// (`attempt` 0).
    pub fn deliveries(&self) -> Vec<DeliveryRecord> {
        self.core().notify.deliveries()
    }

    /// Empties the delivery log.
    pub fn clear_deliveries(&self) {
        self.core().notify.clear_deliveries();
    }

    /// The delivery settings (timeouts, retries, batching, HTTP, maximum expiry).
    pub fn delivery_config(&self) -> DeliveryConfig {
        self.core().notify.config()
    }

    /// Replaces the delivery settings; applies to deliveries started from now on.
    pub fn set_delivery_config(&self, c: DeliveryConfig) {
        self.core().notify.set_config(c);
    }

    /// The longest subscription accepted, in minutes ahead of the sandbox clock (default
    /// [`DEFAULT_MAX_SUBSCRIPTION_MINUTES`], Outlook's 4,230).
    pub fn set_max_subscription_minutes(&self, minutes: u32) {
        self.core()
            .notify
            .update_config(|c| c.max_subscription_minutes = minutes);
    }

    /// Extra delay before every change notification is sent (default none).
    pub fn set_notification_delay(&self, d: Duration) {
        self.core().notify.set_delay(d, d);
    }

    /// Extra delay drawn uniformly from `min..=max` for every change notification.
    pub fn set_notification_delay_range(&self, min: Duration, max: Duration) {
        self.core().notify.set_delay(min, max);
    }

    /// Delays the next `n` change notifications by `d` (instead of the general delay).
    pub fn delay_next_notifications(&self, n: usize, d: Duration) {
        self.core().notify.delay_next(n, d);
    }

    /// Drops the next `n` change notifications (recorded with `attempt` 0, never sent).
    pub fn drop_next_notifications(&self, n: usize) {
        self.core().notify.drop_next(n);
    }

    /// Sends each of the next `n` change notifications twice (the copy as its own POST right
    /// after the original).
    pub fn duplicate_next_notifications(&self, n: usize) {
        self.core().notify.duplicate_next(n);
    }

    /// Holds the next `n` change notifications and sends them newest first, one POST each,
    /// once the `n`-th is produced; `0` releases whatever is held now, newest first.
    pub fn reorder_next_notifications(&self, n: usize) {
        self.core().notify.reorder_next(n);
    }

    /// Probability (0 to 1) that a change notification is lost, or duplicated.
    pub fn set_notification_chaos_probabilities(&self, drop: f64, duplicate: f64) {
        self.core()
            .notify
            .set_probabilities(Some(drop), Some(duplicate));
    }

    /// Turns every notification chaos setting off and releases held notifications.
    pub fn clear_notification_chaos(&self) {
        self.core().notify.clear_chaos();
    }

    /// Sends a lifecycle notification to the subscription's `lifecycleNotificationUrl`
    /// (docs/graph.md section 6); `SubscriptionRemoved` also deletes the subscription. False if
    /// the subscription is unknown or has no lifecycle URL.
    pub fn lifecycle(&self, subscription_id: &str, event: LifecycleEvent) -> bool {
        self.core().lifecycle(subscription_id, event)
    }

    /// The person at the browser for `/authorize` (docs/graph.md section 13): the user signed in
    /// when the request's `login_hint` names no user of the tenant. `None` (the default): nobody
    /// is signed in, and `/authorize` redirects with `error=login_required` (AADSTS50058).
    pub fn set_interactive_user(&self, user: Option<&str>) {
        lock(&self.core().state).delegated.interactive_user = user.map(str::to_owned);
    }

    /// What that person does on the sign-in page (default [`InteractiveOutcome::Approve`]).
    pub fn set_interactive_outcome(&self, outcome: InteractiveOutcome) {
        lock(&self.core().state).delegated.outcome = outcome;
    }

    /// The user approves the device code `user_code` (as shown to them; case and dashes are
    /// ignored), consenting to what the app asked for. False if the code is unknown, expired or
    /// no longer pending, or the user cannot sign in to its tenant (unknown, a shared mailbox,
    /// deleted, or [`Interaction::Blocked`]).
    pub fn approve_device_code(&self, user_code: &str, user: &str) -> bool {
        let now = self.now();
        lock(&self.core().state).approve_device_code(user_code, user, now)
    }

    /// The user declines the device code: polling answers `authorization_declined`. False if the
    /// code is unknown, expired or no longer pending.
    pub fn decline_device_code(&self, user_code: &str) -> bool {
        let now = self.now();
        lock(&self.core().state).decline_device_code(user_code, now)
    }

    /// The user codes of the device codes waiting for a user, sorted (for tests that do not
    /// read the client's output).
    pub fn pending_device_codes(&self) -> Vec<String> {
        let now = self.now();
        lock(&self.core().state).pending_user_codes(now)
    }

    /// How long a device code lasts (`expires_in`, default 15 minutes) and the polling
    /// `interval` (default 5 seconds) of device codes issued from now on; a poll sooner than
    /// the interval after the previous one (sandbox clock) answers `slow_down`.
    pub fn set_device_code_timing(&self, lifetime: Duration, interval: Duration) {
        let mut st = lock(&self.core().state);
        st.delegated.device_lifetime = lifetime.as_secs();
        st.delegated.device_interval = interval.as_secs();
    }

    /// How long a refresh token may go unused before it expires (default 90 days, Entra's
    /// default), on the sandbox clock; applies to every refresh token from now on.
    pub fn set_refresh_token_inactivity(&self, d: Duration) {
        let d = time::Duration::try_from(d).unwrap_or(time::Duration::MAX);
        lock(&self.core().state).delegated.refresh_inactivity = d;
    }

    /// Whether a refresh token that was already redeemed may be redeemed again. `true` (the
    /// default) is what Entra documents: "The Microsoft identity platform doesn't revoke old
    /// refresh tokens when used to fetch new access tokens". `false` rejects the second
    /// redemption with `invalid_grant`, to prove a client refreshes once and keeps the new
    /// token (docs/graph.md section 13). Reuses are counted either way
    /// ([`DelegatedStats::refresh_token_reuses`]).
    pub fn set_refresh_token_reuse(&self, allowed: bool) {
        lock(&self.core().state).delegated.refresh_reuse = allowed;
    }

    /// An administrator revokes every refresh token of `user` (`revokeSignInSessions`): those
    /// from sign-ins until now answer `invalid_grant` AADSTS50173; a new sign-in works. False if
    /// the user is unknown.
    pub fn revoke_refresh_tokens(&self, user: &str) -> bool {
        let now = self.now();
        lock(&self.core().state).revoke_refresh_tokens(user, now)
    }

    /// The user changes their password: refresh tokens that public clients got from earlier
    /// sign-ins are revoked (AADSTS50173); confidential clients' stay alive, as Entra's
    /// revocation table says. False if the user is unknown.
    pub fn change_password(&self, user: &str) -> bool {
        let now = self.now();
        lock(&self.core().state).change_password(user, now)
    }

    /// The user (or an administrator) removes the app's consent for `user`: refresh tokens
    /// answer `invalid_grant` AADSTS65001 until the user consents again. False if there was no
    /// consent.
    pub fn withdraw_consent(&self, client_id: &str, user: &str) -> bool {
        lock(&self.core().state).withdraw_consent(client_id, user)
    }

    /// Conditional Access or MFA now demands interaction from `user` (`None` lifts it): refresh
    /// tokens from earlier sign-ins answer `invalid_grant` with the kind's AADSTS code until the
    /// user signs in again ([`Interaction::Blocked`]: always). False if the user is unknown.
    pub fn require_interaction(&self, user: &str, kind: Option<Interaction>) -> bool {
        let now = self.now();
        lock(&self.core().state).require_interaction(user, kind, now)
    }

    /// Counters of the delegated flows (codes, refresh tokens, redemptions, reuses).
    pub fn delegated_stats(&self) -> DelegatedStats {
        lock(&self.core().state).delegated.stats.clone()
    }

    /// Successful refresh token redemptions so far.
    pub fn refresh_redemptions(&self) -> usize {
        self.delegated_stats().refresh_redemptions
    }

    /// Refresh tokens issued so far.
    pub fn refresh_tokens_issued(&self) -> usize {
        self.delegated_stats().refresh_tokens_issued
    }

    /// Every refresh token issued so far (for tests that look for them where they must not be).
    pub fn issued_refresh_tokens(&self) -> Vec<String> {
        lock(&self.core().state).delegated.refresh_tokens()
    }

    /// Shares `mailbox` with `user` at run time: full access (`folder` `None`) or one folder
    /// path (created if missing), read-only unless `write` (docs/graph.md section 13). False if
    /// either mailbox is unknown.
    pub fn share_mailbox(
        &self,
        mailbox: &str,
        user: &str,
        folder: Option<&str>,
        write: bool,
    ) -> bool {
        self.core().share_mailbox(mailbox, user, folder, write)
    }

    /// Removes every share of `mailbox` with `user`; false if there was none.
    pub fn unshare_mailbox(&self, mailbox: &str, user: &str) -> bool {
        self.core().unshare_mailbox(mailbox, user)
    }

    /// Stops accepting connections and waits briefly for in-flight requests (at most two
    /// seconds), then aborts the server.
    pub async fn shutdown(self) {
        let tx = lock(&self.inner.shutdown).take();
        let task = lock(&self.inner.task).take();
        if let Some(tx) = tx {
            let _ = tx.send(());
        }
        if let Some(mut task) = task
            && tokio::time::timeout(Duration::from_secs(2), &mut task)
                .await
                .is_err()
        {
            task.abort();
        }
    }
}
