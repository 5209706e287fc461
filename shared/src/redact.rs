//! Keeping secrets out of text meant for people (docs/conventions.md, "Secrets"): one rule, used
//! wherever a report, a check or an alert could echo a credential back.
//!
//! No message is built from a secret; this is the belt to those braces. A secret pasted into the
//! wrong field (a client id, a tenant) is echoed back by Entra and Graph errors, and such text
//! reaches screens, CI logs, SNS and mail.

use std::borrow::Cow;

use secrecy::ExposeSecret;

use crate::domain::credential::AppCredential;

/// What a redacted value is replaced with, everywhere.
pub const REDACTED: &str = "[REDACTED]";

/// Values shorter than this are left alone: replacing them would mangle ordinary words, and no
/// real client secret is that short (Entra's are 40 characters).
const MIN_SECRET_LEN: usize = 8;

/// Removes one credential's secret from text.
#[derive(Clone)]
pub struct Redactor {
    /// The secret as stored and, when different, without surrounding whitespace.
    values: Vec<String>,
}

impl Redactor {
    /// For `credential`'s client secret. A certificate credential has nothing to redact: no
    /// message ever holds key material.
    pub fn for_credential(credential: &AppCredential) -> Self {
        let mut values = Vec::new();
        if let Some(secret) = credential.client_secret() {
            let raw = secret.expose_secret();
            for value in [raw, raw.trim()] {
                if value.chars().count() >= MIN_SECRET_LEN && !values.iter().any(|v| v == value) {
                    values.push(value.to_owned());
                }
            }
        }
        Self { values }
    }

    /// Also redacts `value` (e.g. a delegated sign-in's refresh token), if it is long enough to
    /// be told from ordinary words.
    pub fn with(mut self, value: &str) -> Self {
        for value in [value, value.trim()] {
            if value.chars().count() >= MIN_SECRET_LEN && !self.values.iter().any(|v| v == value) {
                self.values.push(value.to_owned());
            }
        }
        self
    }

    /// `text` with every occurrence of the secret replaced by [`REDACTED`].
    pub fn apply<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut text = Cow::Borrowed(text);
        for value in &self.values {
            if text.contains(value.as_str()) {
                text = Cow::Owned(text.replace(value.as_str(), REDACTED));
            }
        }
        text
    }

    /// Redacts `text` in place.
    pub fn scrub(&self, text: &mut String) {
        if let Cow::Owned(clean) = self.apply(text) {
            *text = clean;
        }
    }
}

/// Log targets whose TRACE events carry payloads: never let through, whatever level is asked for
/// (`AWS_LAMBDA_LOG_LEVEL=TRACE`, `RUST_LOG=trace`). Found by `tests/tests/secrets.rs` and the
/// webhook binary's tests at TRACE (`functions/webhook/tests/watch.rs`).
///
/// - The AWS SDK's orchestrator logs every response body it reads and every output it
///   deserializes (aws-smithy-runtime 1.16: `src/client/orchestrator.rs`, "received response
///   from service" and `output_or_error`; `src/client/orchestrator/http.rs`, "read HTTP response
///   body"). It redacts only outputs modelled as sensitive, such as Secrets Manager's
///   `GetSecretValue`; DynamoDB items are not, so every subscription's `clientState` (and
///   message subjects) would be logged. Request bodies are not logged: the SDK's signer redacts
///   them unless `LOG_SIGNABLE_BODY=true`, as it does sensitive responses unless
///   `LOG_SENSITIVE_BODIES=true`; never set those two.
/// - The Lambda runtime logs every invocation's raw event (lambda_runtime 1.5:
///   `src/layers/api_response.rs`, "raw JSON event received from Lambda"): for the webhook, the
///   notification with its `clientState`, and the validation token.
pub const TRACE_NEVER_LOGGED: &[&str] = &[
    "aws_smithy_runtime::client::orchestrator",
    "lambda_runtime::layers::api_response",
];

/// Whether Mailroom's log subscribers (the Lambda functions' and the CLI's) let an event or span
/// through at all: everything except TRACE from [`TRACE_NEVER_LOGGED`] (the target or a module
/// below it). Applied on top of the level asked for.
pub fn may_log(metadata: &tracing::Metadata<'_>) -> bool {
    !never_logged(metadata.target(), *metadata.level())
}

fn never_logged(target: &str, level: tracing::Level) -> bool {
    level == tracing::Level::TRACE
        && TRACE_NEVER_LOGGED.iter().any(|never| {
            target
                .strip_prefix(never)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
        })
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::credential::ClientAuth;

    fn credential(secret: &str) -> AppCredential {
        AppCredential::new("t", "c", ClientAuth::Secret(secret.to_owned().into()))
    }

    #[test]
    fn the_secret_is_replaced_wherever_it_appears() {
        let r = Redactor::for_credential(&credential("Xk48Q~secret-value"));
        assert_eq!(
            r.apply("app 'Xk48Q~secret-value' not found; Xk48Q~secret-value"),
            "app '[REDACTED]' not found; [REDACTED]"
        );
        let mut text = "tenant Xk48Q~secret-value".to_owned();
        r.scrub(&mut text);
        assert_eq!(text, "tenant [REDACTED]");
    }

    #[test]
    fn a_secret_stored_with_whitespace_is_found_without_it() {
        let r = Redactor::for_credential(&credential("  Xk48Q~secret-value\n"));
        assert_eq!(r.apply("got Xk48Q~secret-value"), "got [REDACTED]");
    }

    #[test]
    fn short_values_and_certificates_leave_text_alone() {
        let r = Redactor::for_credential(&credential("abc"));
        assert_eq!(r.apply("abc abc"), "abc abc");
        assert!(matches!(r.apply("plain"), Cow::Borrowed(_)));
    }

    #[test]
    fn the_sdk_orchestrator_is_never_logged_at_trace() {
        use tracing::Level;
        let orchestrator = "aws_smithy_runtime::client::orchestrator";
        assert!(never_logged(orchestrator, Level::TRACE));
        assert!(never_logged(
            "aws_smithy_runtime::client::orchestrator::http",
            Level::TRACE
        ));
        assert!(!never_logged(orchestrator, Level::DEBUG));
        assert!(!never_logged(
            "aws_smithy_runtime::client::orchestrator_other",
            Level::TRACE
        ));
        assert!(!never_logged(
            "aws_smithy_runtime::client::retries",
            Level::TRACE
        ));
        assert!(never_logged(
            "lambda_runtime::layers::api_response",
            Level::TRACE
        ));
        assert!(!never_logged("mailroom::engine", Level::TRACE));
    }

    #[test]
    fn debug_shows_no_secret() {
        let r = Redactor::for_credential(&credential("Xk48Q~secret-value"));
        assert!(!format!("{r:?}").contains("Xk48Q"));
    }
}
