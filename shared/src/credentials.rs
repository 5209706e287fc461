//! The credential cache: app credentials by name, read through a [`SecretSource`] and kept for a
//! short time. What a credential holds is [`crate::domain::credential`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use crate::domain::credential::{
    AppCredential, CertificateCredential, CertificateError, ClientAuth, DEFAULT_DELEGATED_SCOPES,
    Delegation, KeyProblem, PemInput, SignInStore, SignedIn,
};
use crate::ports::{SecretError, SecretSource};

/// Credentials by name, cached for a short time so a run does not read Secrets Manager for every
/// mailbox, and re-read on demand when Graph rejects a secret (it may just have been rotated).
pub struct Credentials {
    source: Arc<dyn SecretSource>,
    ttl: Duration,
    cache: Mutex<HashMap<String, (Instant, AppCredential)>>,
}

impl Credentials {
    pub const DEFAULT_TTL: Duration = Duration::from_secs(300);

    pub fn new(source: Arc<dyn SecretSource>, ttl: Duration) -> Self {
        Self {
            source,
            ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The credential `name`, from the cache if it is fresh.
    pub async fn get(&self, name: &str) -> Result<AppCredential, SecretError> {
        if let Some(hit) = self.cached(name) {
            return Ok(hit);
        }
        self.refresh(name).await
    }

    /// Reads `name` from the source, bypassing and then updating the cache.
    pub async fn refresh(&self, name: &str) -> Result<AppCredential, SecretError> {
        let credential = self.source.fetch(name).await?;
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(name.to_owned(), (Instant::now(), credential.clone()));
        }
        Ok(credential)
    }

    fn cached(&self, name: &str) -> Option<AppCredential> {
        let cache = self.cache.lock().ok()?;
        let (at, credential) = cache.get(name)?;
        (at.elapsed() < self.ttl).then(|| credential.clone())
    }
}
