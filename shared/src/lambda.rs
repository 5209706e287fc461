//! What the three Lambda functions share, so each `main.rs` is glue: tracing as Lambda's advanced
//! logging controls configure it, telling the events that invoke a function apart, when to stop
//! new work before the deadline, and errors as [`Diagnostic`]s with a stable `error_type`.

use std::time::{Duration, SystemTime};

use aws_lambda_events::eventbridge::EventBridgeEvent;
use aws_lambda_events::sqs::SqsEvent;
use lambda_runtime::Diagnostic;
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;

use crate::ports::StoreError;
use crate::rotation::{RotationError, RotationEvent};

/// Logs as Lambda asks: `AWS_LAMBDA_LOG_LEVEL` (else `RUST_LOG`, else INFO) and, with
/// `AWS_LAMBDA_LOG_FORMAT=JSON` (the template's `LogFormat: JSON`), one JSON object per line,
/// inside the runtime's span per invocation (its `requestId`).
///
/// The runtime's `init_default_subscriber` (lambda_runtime_api_client 1.1, `src/tracing.rs`),
/// rebuilt to add one filter: [`crate::redact::may_log`], so even at TRACE the AWS SDK's
/// response bodies (a subscription's `clientState` among them) never reach the log.
pub fn init_tracing() {
    use lambda_runtime::tracing::subscriber::filter::{EnvFilter, LevelFilter, filter_fn};
    use lambda_runtime::tracing::subscriber::layer::SubscriberExt;
    use lambda_runtime::tracing::subscriber::util::SubscriberInitExt;

    let format = std::env::var("AWS_LAMBDA_LOG_FORMAT").unwrap_or_default();
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|level| level.parse::<LevelFilter>().ok())
        .unwrap_or(LevelFilter::INFO);
    let builder = lambda_runtime::tracing::subscriber::fmt()
        .with_target(false)
        .without_time()
        .with_env_filter(
            EnvFilter::builder()
                .with_default_directive(level.into())
                .from_env_lossy(),
        );
    let never = filter_fn(crate::redact::may_log);
    if format.eq_ignore_ascii_case("json") {
        builder.json().finish().with(never).init();
    } else {
        builder.finish().with(never).init();
    }
}

/// What invoked a function.
#[derive(Debug)]
pub enum Trigger {
    /// An EventBridge event: the function's schedule (its contents do not matter).
    Schedule,
    /// A batch from an SQS queue.
    Queue(SqsEvent),
    /// Secrets Manager, for one step of a secret's rotation.
    Rotation(RotationEvent),
}

impl Trigger {
    /// Tells the events apart by shape: an SQS batch has `Records`, a rotation event `Step`,
    /// anything else must be an EventBridge event. `function` names the function and its
    /// triggers for the error ("the import function is invoked by …").
    pub fn parse(payload: Value, function: &str) -> Result<Self, Diagnostic> {
        let invalid = |kind: &str, e: serde_json::Error| Diagnostic {
            error_type: "InvalidEvent".into(),
            error_message: format!(
                "the event looks like {kind} but does not parse ({e}); {function}"
            ),
        };
        if payload.get("Records").is_some() {
            serde_json::from_value(payload)
                .map(Self::Queue)
                .map_err(|e| invalid("an SQS batch", e))
        } else if payload.get("Step").is_some() {
            serde_json::from_value(payload)
                .map(Self::Rotation)
                .map_err(|e| invalid("a Secrets Manager rotation event", e))
        } else {
            serde_json::from_value::<EventBridgeEvent>(payload)
                .map(|_| Self::Schedule)
                .map_err(|e| invalid("an EventBridge event", e))
        }
    }

    /// The error for a trigger this function does not take.
    pub fn unexpected(&self, function: &str) -> Diagnostic {
        let kind = match self {
            Self::Schedule => "an EventBridge event",
            Self::Queue(_) => "an SQS batch",
            Self::Rotation(_) => "a Secrets Manager rotation event",
        };
        Diagnostic {
            error_type: "InvalidEvent".into(),
            error_message: format!("unexpected {kind}; {function}"),
        }
    }
}

/// Lambda's longest timeout: the budget assumed when the runtime's deadline is not a real one.
const LONGEST_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// When new work stops in this invocation: `margin` before the runtime's deadline.
///
/// A deadline that has already passed when the invocation arrives is not a real one: `cargo
/// lambda watch` (1.9.2, the local Lambda emulator) sends a fixed `Lambda-Runtime-Deadline-Ms:
/// 600000`, ten minutes after the Unix epoch. Taken literally, every invocation would stop before
/// it starts and do nothing, so the deadline is then reckoned from Lambda's longest timeout.
pub fn stop_at(deadline: SystemTime, now: OffsetDateTime, margin: Duration) -> OffsetDateTime {
    let deadline = OffsetDateTime::from(deadline);
    let deadline = if deadline > now {
        deadline
    } else {
        tracing::warn!(
            %deadline,
            assumed_timeout_seconds = LONGEST_TIMEOUT.as_secs(),
            "the runtime's deadline has already passed; assuming Lambda's longest timeout"
        );
        now + LONGEST_TIMEOUT
    };
    deadline - margin
}

/// A function's answer as JSON.
pub fn to_json(value: &impl Serialize) -> Result<Value, Diagnostic> {
    serde_json::to_value(value).map_err(|e| Diagnostic {
        error_type: "ResponseNotSerializable".into(),
        error_message: e.to_string(),
    })
}

impl From<StoreError> for Diagnostic {
    fn from(e: StoreError) -> Self {
        let error_type = match e {
            StoreError::Throttled { .. } => "StateStoreThrottled",
            StoreError::Malformed { .. } => "StateStoreItemMalformed",
            _ => "StateStoreUnavailable",
        };
        Diagnostic {
            error_type: error_type.into(),
            error_message: e.to_string(),
        }
    }
}

impl From<RotationError> for Diagnostic {
    fn from(e: RotationError) -> Self {
        Diagnostic {
            error_type: "RotationFailed".into(),
            error_message: e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use time::macros::datetime;

    use super::*;

    #[test]
    fn new_work_stops_the_margin_before_the_deadline() {
        let now = datetime!(2026-11-23 10:15:00 UTC);
        let deadline = SystemTime::from(now + Duration::from_secs(840));
        assert_eq!(
            stop_at(deadline, now, Duration::from_secs(60)),
            datetime!(2026-11-23 10:28:00 UTC)
        );
    }

    #[test]
    fn a_deadline_already_passed_is_reckoned_from_the_longest_timeout() {
        let now = datetime!(2026-11-23 10:15:00 UTC);
        // What `cargo lambda watch` 1.9.2 sends.
        let emulated = UNIX_EPOCH + Duration::from_millis(600_000);
        assert_eq!(
            stop_at(emulated, now, Duration::from_secs(60)),
            datetime!(2026-11-23 10:29:00 UTC)
        );
        assert_eq!(
            stop_at(SystemTime::from(now), now, Duration::from_secs(60)),
            datetime!(2026-11-23 10:29:00 UTC)
        );
    }

    #[test]
    fn triggers_are_told_apart_by_shape() {
        let schedule = serde_json::json!({
            "version": "0", "id": "1", "detail-type": "Scheduled Event", "source": "aws.events",
            "account": "1", "time": "2026-11-23T10:15:00Z", "region": "eu-west-1",
            "resources": [], "detail": {}
        });
        assert!(matches!(
            Trigger::parse(schedule, "f").unwrap(),
            Trigger::Schedule
        ));
        let queue = serde_json::json!({"Records": []});
        assert!(matches!(
            Trigger::parse(queue, "f").unwrap(),
            Trigger::Queue(_)
        ));
        let rotation = serde_json::json!({
            "SecretId": "s", "ClientRequestToken": "t", "Step": "createSecret"
        });
        assert!(matches!(
            Trigger::parse(rotation, "f").unwrap(),
            Trigger::Rotation(_)
        ));
        let err = Trigger::parse(serde_json::json!({"Records": 3}), "call it right").unwrap_err();
        assert_eq!(err.error_type, "InvalidEvent");
        assert!(
            err.error_message.contains("an SQS batch"),
            "{}",
            err.error_message
        );
        assert!(err.error_message.ends_with("call it right"));
    }
}
