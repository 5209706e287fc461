//! The push path (docs/push.md; docs/graph.md §6): Graph's change and lifecycle
//! notifications turned into sync jobs.
//!
//! - [`webhook`]: the receiver's logic, independent of the HTTP server around it (a Lambda
//!   Function URL in AWS, axum in `mailroom serve`). It never imports inline: it checks each
//!   notification against its subscription record and enqueues one job per mailbox folder.
//! - [`notification`]: the payloads, as Microsoft documents them.
//! - The subscriptions themselves are kept by the engine (`engine/subscriptions.rs`), because
//!   creating and renewing them needs Graph credentials, which the webhook does not hold.

pub mod notification;
#[cfg(feature = "webhook-server")]
pub mod server;
pub mod webhook;

pub use webhook::{Endpoint, Webhook, WebhookRequest, WebhookResponse};

/// Where Graph delivers, below the public base URL: change notifications and lifecycle events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushUrls {
    pub notification_url: String,
    pub lifecycle_url: String,
}

/// A public webhook URL Graph could not be given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the public webhook URL '{url}' {problem}")]
pub struct InvalidWebhookUrl {
    pub url: String,
    /// What is wrong with it and what to write instead.
    pub problem: String,
}

impl PushUrls {
    /// The receiver's two URLs below `base` (e.g. a Lambda Function URL, or `mailroom serve
    /// --public-url`): `{base}/notifications` and `{base}/lifecycle`.
    pub fn from_base(base: &str) -> Result<Self, InvalidWebhookUrl> {
        let invalid = |problem: String| InvalidWebhookUrl {
            url: base.to_owned(),
            problem,
        };
        let parsed = url::Url::parse(base).map_err(|e| {
            invalid(format!(
                "is not a URL ({e}); give it as https://host[/path]"
            ))
        })?;
        if !matches!(parsed.scheme(), "https" | "http") || parsed.host().is_none() {
            return Err(invalid("must be an https:// URL Graph can reach".into()));
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(invalid("must not have a query or fragment".into()));
        }
        let base = base.trim_end_matches('/');
        Ok(Self {
            notification_url: format!("{base}{}", Endpoint::Notifications.path()),
            lifecycle_url: format!("{base}{}", Endpoint::Lifecycle.path()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_built_below_the_base_with_or_without_a_trailing_slash() {
        for base in [
            "https://abc.lambda-url.eu-west-1.on.aws/",
            "https://abc.lambda-url.eu-west-1.on.aws",
        ] {
            let urls = PushUrls::from_base(base).unwrap();
            assert_eq!(
                urls.notification_url,
                "https://abc.lambda-url.eu-west-1.on.aws/notifications"
            );
            assert_eq!(
                urls.lifecycle_url,
                "https://abc.lambda-url.eu-west-1.on.aws/lifecycle"
            );
        }
        let urls = PushUrls::from_base("https://example.com/mailroom").unwrap();
        assert_eq!(
            urls.notification_url,
            "https://example.com/mailroom/notifications"
        );
    }

    #[test]
    fn a_bad_base_url_says_what_is_expected() {
        for bad in ["example.com", "ftp://example.com", "https://x.com/?a=1"] {
            let err = PushUrls::from_base(bad).unwrap_err().to_string();
            assert!(err.contains(bad), "{err}");
        }
    }
}
