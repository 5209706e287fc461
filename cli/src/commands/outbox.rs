//! The local outbox: send requests dropped as JSON files into `<data dir>/outbox/`, sent by
//! `mailroom serve` at each tick (docs/sending.md, "Locally"): the local counterpart of the
//! deployment's outbox queue, with `failed/` as its dead-letter queue.

use std::path::{Path, PathBuf};

use mailroom::adapters::local::FileAttachments;
use mailroom::domain::send::SendRequest;
use mailroom::engine::{Engine, SendOutcome};

/// What one pass over the outbox did.
#[derive(Debug, Default)]
pub struct Drained {
    pub sent: usize,
    pub already_sent: usize,
    /// Moved to `failed/`, each with a `.error.txt` saying why.
    pub failed: usize,
    /// Left for the next pass: a failure a retry can get past.
    pub waiting: usize,
}

/// Sends every `*.json` request in `dir`, oldest name first. A sent request moves to `sent/`;
/// one that cannot succeed as it is moves to `failed/` beside a `.error.txt` with the reason;
/// one that may succeed later stays. Attachment paths are relative to `dir`.
pub async fn drain(engine: &Engine, dir: &Path) -> anyhow::Result<Drained> {
    let mut drained = Drained::default();
    let mut requests: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "json"))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(drained),
        Err(e) => return Err(anyhow::anyhow!("reading the outbox {}: {e}", dir.display())),
    };
    requests.sort();
    let attachments = FileAttachments::new(dir);
    for path in requests {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let request = match std::fs::read_to_string(&path)
            .map_err(|e| e.to_string())
            .and_then(|text| {
                serde_json::from_str::<SendRequest>(&text)
                    .map_err(|e| format!("not a send request (docs/sending.md): {e}"))
            }) {
            Ok(request) => request,
            Err(reason) => {
                set_aside(dir, &path, &name, &reason)?;
                drained.failed += 1;
                continue;
            }
        };
        match engine.send(&request, &attachments).await {
            Ok(outcome) => {
                move_to(dir, "sent", &path, &name)?;
                match outcome {
                    SendOutcome::Sent { .. } => {
                        drained.sent += 1;
                        eprintln!("outbox: {name}: sent from {}", request.from);
                    }
                    SendOutcome::AlreadySent => {
                        drained.already_sent += 1;
                        eprintln!(
                            "outbox: {name}: sent before (same idempotency key); not sent again"
                        );
                    }
                }
            }
            Err(e) if e.retry_can_help() => {
                drained.waiting += 1;
                eprintln!("outbox: {name}: not sent yet, trying again at the next tick: {e}");
            }
            Err(e) => {
                set_aside(dir, &path, &name, &e.to_string())?;
                drained.failed += 1;
            }
        }
    }
    Ok(drained)
}

fn move_to(dir: &Path, sub: &str, path: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let target_dir = dir.join(sub);
    std::fs::create_dir_all(&target_dir)
        .map_err(|e| anyhow::anyhow!("creating {}: {e}", target_dir.display()))?;
    let target = target_dir.join(name);
    std::fs::rename(path, &target)
        .map_err(|e| anyhow::anyhow!("moving {} to {}: {e}", path.display(), target.display()))?;
    Ok(target)
}

/// `failed/NAME` and `failed/NAME.error.txt`: the outbox's dead letters.
fn set_aside(dir: &Path, path: &Path, name: &str, reason: &str) -> anyhow::Result<()> {
    let target = move_to(dir, "failed", path, name)?;
    let note = target.with_file_name(format!("{name}.error.txt"));
    std::fs::write(&note, format!("{reason}\n"))
        .map_err(|e| anyhow::anyhow!("writing {}: {e}", note.display()))?;
    eprintln!("outbox: {name}: not sent, moved to failed/: {reason}");
    Ok(())
}
