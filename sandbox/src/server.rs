//! The axum router: token endpoint, control API and Graph on one origin.

use std::sync::Arc;

use axum::Router;
use axum::routing::{any, post};

use crate::core::Core;
use crate::{auth, control, graph};

pub(crate) fn router(core: Arc<Core>) -> Router {
    Router::new()
        .route("/{tenant}/oauth2/v2.0/token", post(auth::token))
        .nest("/_sandbox", control::router())
        .route("/v1.0", any(graph::handle))
        .route("/v1.0/", any(graph::handle))
        .route("/v1.0/{*rest}", any(graph::handle))
        // Attachment upload sessions' pre-authenticated upload URLs (docs/graph.md section 12).
        .route("/upload/{token}", any(graph::handle_upload))
        .fallback(graph::fallback)
        .with_state(core)
}
