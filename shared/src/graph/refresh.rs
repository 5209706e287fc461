//! Access tokens of a delegated credential (docs/delegated.md): the refresh token its person's
//! sign-in left is redeemed, and the new refresh token Entra returns is stored before the access
//! token is used.
//!
//! Why this order keeps the credential working whatever happens:
//! - Entra does not revoke a refresh token when it is redeemed (docs/graph.md section 13). A
//!   crash after Entra answered and before the new token is stored leaves the stored one, which
//!   still works; the next run redeems it again.
//! - Two runners (a scheduled job and a push job in different Lambda instances) redeeming the
//!   same stored token both succeed for the same reason, and each stores a working token; the
//!   store's writes are atomic, so the last one wins whole.
//! - Should Entra ever refuse a token that another runner has just redeemed (stricter than
//!   documented), the refusal is checked against the store: if a newer token is there, that one
//!   is redeemed instead of declaring the sign-in dead.

use secrecy::ExposeSecret;
use time::OffsetDateTime;

use super::error::{GraphError, Operation, TokenErrorBody};
use super::signin::{DelegatedClient, SignIn, SignInError, TokenSet};
use crate::credentials::{AppCredential, ClientAuth, Delegation, SignedIn};
use crate::ports::SecretError;

/// Redeems the stored refresh token of `delegation` and stores the one that replaces it. Returns
/// the tokens only once the new refresh token is stored.
pub(super) async fn redeem(
    sign_in: &SignIn,
    credential: &AppCredential,
    delegation: &Delegation,
) -> Result<TokenSet, GraphError> {
    let name = delegation.name.as_str();
    let client = DelegatedClient {
        tenant_id: credential.tenant_id.clone(),
        client_id: credential.client_id.clone(),
        scopes: delegation.scopes.clone(),
        secret: match &credential.secret {
            ClientAuth::Public => None,
            auth => Some(auth.clone()),
        },
    };
    let stored = load(delegation).await?;
    let tokens = match sign_in.refresh(&client, &stored.refresh_token).await {
        Ok(tokens) => tokens,
        Err(SignInError::SignInRequired { reason }) => {
            // Another runner may have redeemed this token and stored its successor meanwhile.
            let now_stored = load(delegation).await?;
            if now_stored.refresh_token.expose_secret() == stored.refresh_token.expose_secret() {
                return Err(sign_in_required(name, reason.to_string()));
            }
            tracing::info!(
                credential = name,
                "another runner refreshed the sign-in; using its refresh token"
            );
            sign_in
                .refresh(&client, &now_stored.refresh_token)
                .await
                .map_err(|e| to_graph_error(sign_in, credential, name, e))?
        }
        Err(e) => return Err(to_graph_error(sign_in, credential, name, e)),
    };
    let kept = SignedIn {
        user: stored.user.clone().or_else(|| tokens.user.clone()),
        scopes: if tokens.scopes.is_empty() {
            stored.scopes.clone()
        } else {
            tokens.scopes.clone()
        },
        // Entra returns a new refresh token with every redemption; without one (a server that
        // does not rotate them), the stored one stays.
        refresh_token: tokens
            .refresh_token
            .clone()
            .unwrap_or_else(|| stored.refresh_token.clone()),
        signed_in_at: stored.signed_in_at,
        refreshed_at: OffsetDateTime::now_utc(),
    };
    delegation
        .sign_ins
        .save(name, &kept)
        .await
        .map_err(|e| GraphError::SignInNotKept {
            credential: name.to_owned(),
            action: "stored",
            detail: e.to_string(),
        })?;
    tracing::debug!(credential = name, "delegated sign-in refreshed and stored");
    Ok(tokens)
}

/// The stored sign-in; none at all, or one that cannot be read back, needs the person.
async fn load(delegation: &Delegation) -> Result<SignedIn, GraphError> {
    let name = delegation.name.as_str();
    match delegation.sign_ins.load(name).await {
        Ok(Some(signed_in)) => Ok(signed_in),
        Ok(None) => Err(sign_in_required(
            name,
            "nobody has signed in for it yet".to_owned(),
        )),
        Err(SecretError::Unavailable { detail, .. }) => Err(GraphError::SignInNotKept {
            credential: name.to_owned(),
            action: "read",
            detail,
        }),
        Err(e) => Err(sign_in_required(name, e.to_string())),
    }
}

fn sign_in_required(name: &str, reason: String) -> GraphError {
    GraphError::SignInRequired {
        credential: name.to_owned(),
        reason,
    }
}

/// A failed redemption as the Graph client's error: the person's part (sign in again), the
/// app's part (a wrong client secret, an unknown app or tenant, as for app credentials), or
/// Entra out of reach.
fn to_graph_error(
    sign_in: &SignIn,
    credential: &AppCredential,
    name: &str,
    error: SignInError,
) -> GraphError {
    match error {
        SignInError::SignInRequired { reason } => sign_in_required(name, reason.to_string()),
        e @ (SignInError::ScopeRefused { .. } | SignInError::NoRefreshToken) => {
            sign_in_required(name, e.to_string())
        }
        SignInError::Rejected {
            error,
            code,
            description,
        } => TokenErrorBody {
            error,
            error_description: description,
            error_codes: code.into_iter().collect(),
        }
        .classify(&credential.tenant_id, &credential.client_id),
        SignInError::Transport(detail) => GraphError::Transport {
            operation: Operation::Token.name(),
            attempts: sign_in.max_attempts(),
            detail,
        },
        // Device code and authorization code answers: not what a refresh gets.
        other => GraphError::TokenRejected {
            client_id: credential.client_id.clone(),
            error: "unexpected answer to a refresh".into(),
            description: other.to_string(),
            code: None,
        },
    }
}
