//! The Microsoft Graph client: tokens, etiquette, folders, messages (docs/graph.md).
//!
//! Concrete, not a trait: tests point it at the Graph sandbox through its base URLs.

mod applications;
mod assertion;
mod auth;
mod client;
mod directory;
mod drafts;
mod error;
mod folders;
mod limiter;
mod messages;
mod model;
mod probe;
mod refresh;
mod retry;
mod send;
pub mod signin;
mod subscriptions;

pub use applications::{
    AppClient, Application, KeyCredential, NewPassword, PasswordCredential, PasswordManagement,
};
pub use client::{GraphClient, GraphConfig, MailboxClient};
pub use directory::{DirectoryClient, DirectoryGroup, DirectoryUser};
pub use drafts::{DraftMark, NewDraft, ONE_REQUEST_MAX};
pub use error::{GraphError, Operation};
pub use folders::{WELL_KNOWN_FOLDERS, path_segments};
pub use limiter::{Permit, RequestBudget};
pub use messages::DeltaStart;
pub use model::{EmailAddress, MailFolder, MessageSummary, Page, Recipient};
pub use retry::RetryPolicy;
pub use subscriptions::{GraphSubscription, SubscriptionRequest};
