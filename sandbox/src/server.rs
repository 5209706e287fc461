//! The axum router: token endpoint, control API and Graph on one origin.

use std::sync::Arc;

use axum::Router;
use axum::routing::{any, get, post};

use crate::core::Core;
use crate::{auth, control, delegated, graph};

pub(crate) fn router(core: Arc<Core>) -> Router {
    Router::new()
        .route("/{tenant}/oauth2/v2.0/token", post(auth::token))
        // Delegated sign-in (docs/graph.md section 13).
        .route("/{tenant}/oauth2/v2.0/authorize", get(delegated::authorize))
        .route(
            "/{tenant}/oauth2/v2.0/devicecode",
            post(delegated::devicecode),
        )
        .nest("/_sandbox", control::router())
        .route("/v1.0", any(graph::handle))
        .route("/v1.0/", any(graph::handle))
        .route("/v1.0/{*rest}", any(graph::handle))
        // Attachment upload sessions' pre-authenticated upload URLs (docs/graph.md section 12).
        .route("/upload/{token}", any(graph::handle_upload))
        .fallback(graph::fallback)
        .with_state(core)
}
