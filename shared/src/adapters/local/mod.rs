//! Local-mode adapters (docs/architecture.md, "Local mode"): the ports on one machine, with no AWS account.
//!
//! | port            | adapter               | where the data lives                              |
//! |-----------------|-----------------------|---------------------------------------------------|
//! | [`StateStore`]  | [`SqliteStateStore`]  | one SQLite database file (WAL mode)               |
//! | [`BlobStore`]   | [`DirBlobStore`]      | `.eml` files under a root directory               |
//! | [`SecretSource`]| [`FileSecretSource`]  | credentials declared in `mailroom.toml`, secret values in an environment variable or a file |
//! | [`JobQueue`]    | [`LocalJobQueue`]     | a channel in the process (`mailroom serve --listen`) |
//! | [`EventPublisher`] | [`HttpEventPublisher`] | POSTs to the `[events]` URL, signed (docs/events.md) |
//!
//! They behave like the memory and AWS adapters: the contract suite in `mailroom-tests` runs on
//! all of them.
//!
//! [`StateStore`]: crate::ports::StateStore
//! [`BlobStore`]: crate::ports::BlobStore
//! [`SecretSource`]: crate::ports::SecretSource
//! [`JobQueue`]: crate::ports::JobQueue
//! [`EventPublisher`]: crate::ports::EventPublisher

mod attachments;
mod events;
mod files;
mod queue;
mod secrets;
mod signins;
mod sqlite;

pub use attachments::FileAttachments;
pub use events::HttpEventPublisher;
pub use files::DirBlobStore;
pub use queue::{LocalJobQueue, LocalJobs, local_queue};
pub use secrets::{FileSecretSource, LocalCredential, SecretRef};
pub use signins::LocalSignIns;
pub use sqlite::{SCHEMA_VERSION, SqliteStateStore};
