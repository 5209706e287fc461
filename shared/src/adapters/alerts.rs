//! [`Alerter`]s that are neither AWS nor memory: mail through Graph's `sendMail`, standard output
//! (local mode), and several channels at once.

use std::sync::Arc;

use async_trait::async_trait;

use crate::credentials::Credentials;
use crate::domain::MailboxAddress;
use crate::expiry::Alert;
use crate::graph::GraphClient;
use crate::ports::{AlertError, Alerter};

/// Sends alerts as plain-text mail from a mailbox through Graph (`sendMail`, docs/graph.md §4),
/// which needs Mail.Send on the sending app.
///
/// The sending app is the credential `credential` if set, else the credential the alert is about
/// (so one app needs no more configuration; but a credential that has expired cannot send its
/// own "expired" alert: name another app's credential, or use SNS too).
pub struct GraphMailAlerter {
    graph: GraphClient,
    credentials: Arc<Credentials>,
    from: MailboxAddress,
    to: Vec<MailboxAddress>,
    credential: Option<String>,
}

impl GraphMailAlerter {
    pub fn new(
        graph: GraphClient,
        credentials: Arc<Credentials>,
        from: MailboxAddress,
        to: Vec<MailboxAddress>,
        credential: Option<String>,
    ) -> Self {
        Self {
            graph,
            credentials,
            from,
            to,
            credential,
        }
    }
}

#[async_trait]
impl Alerter for GraphMailAlerter {
    async fn send(&self, alert: &Alert) -> Result<(), AlertError> {
        let name = self.credential.as_deref().unwrap_or(&alert.credential);
        let failed = |detail: String| AlertError::Failed {
            channel: "mail",
            detail: format!("from {} with credential '{name}': {detail}", self.from),
        };
        let credential = self
            .credentials
            .get(name)
            .await
            .map_err(|e| failed(e.to_string()))?;
        self.graph
            .mailbox(credential, self.from.clone())
            .send_mail(&self.to, &alert.subject(), &alert.text())
            .await
            .map_err(|e| failed(e.to_string()))
    }
}

/// Writes alerts to standard output: local mode's channel.
#[derive(Debug, Default, Clone, Copy)]
pub struct PrintAlerter;

#[async_trait]
impl Alerter for PrintAlerter {
    async fn send(&self, alert: &Alert) -> Result<(), AlertError> {
        println!("ALERT {}", alert.text().trim_end().replace('\n', "\n  "));
        Ok(())
    }
}

/// Sends each alert through every channel. It counts as sent when at least one channel took it
/// (sending again would repeat it on the others); failures of the rest are logged.
pub struct FanOutAlerter {
    channels: Vec<Arc<dyn Alerter>>,
}

impl FanOutAlerter {
    pub fn new(channels: Vec<Arc<dyn Alerter>>) -> Self {
        Self { channels }
    }
}

#[async_trait]
impl Alerter for FanOutAlerter {
    async fn send(&self, alert: &Alert) -> Result<(), AlertError> {
        let mut errors = Vec::new();
        let mut sent = false;
        for channel in &self.channels {
            match channel.send(alert).await {
                Ok(()) => sent = true,
                Err(e) => {
                    tracing::warn!(credential = %alert.credential, error = %e, "alert channel failed");
                    errors.push(e.to_string());
                }
            }
        }
        if sent || self.channels.is_empty() {
            Ok(())
        } else {
            Err(AlertError::Failed {
                channel: "every channel",
                detail: errors.join("; "),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::memory::MemoryAlerter;
    use crate::expiry::{AlertLevel, ExpirySource};

    fn alert() -> Alert {
        Alert {
            credential: "contoso".into(),
            client_id: Some("c".into()),
            tenant_id: None,
            kind: None,
            level: AlertLevel::Unknown,
            expires_at: None,
            days_left: None,
            source: ExpirySource::Unknown,
            findings: vec![],
            sign_in: None,
        }
    }

    #[tokio::test]
    async fn fan_out_succeeds_when_one_channel_does() {
        let ok = Arc::new(MemoryAlerter::default());
        let broken = Arc::new(MemoryAlerter::default());
        broken.fail_next(10);
        let fan = FanOutAlerter::new(vec![broken.clone(), ok.clone()]);
        fan.send(&alert()).await.unwrap();
        assert_eq!(ok.sent().len(), 1);
        let all_broken = FanOutAlerter::new(vec![broken.clone()]);
        let err = all_broken.send(&alert()).await.unwrap_err().to_string();
        assert!(err.contains("failure injected"), "{err}");
    }
}
