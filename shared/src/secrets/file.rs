//! Secrets from a local JSON file (the `pos-local --secrets FILE` flag and `cargo lambda watch`).

use super::{SecretError, VendorSecrets};
use crate::ports::SecretSource;
use async_trait::async_trait;
use std::path::PathBuf;
use std::sync::Arc;

/// Reads the secret document from a file on every load (wrap it in [`super::CachedSecrets`]), so an edit
/// to the file is picked up like a rotation in Secrets Manager.
pub struct FileSecrets {
    path: PathBuf,
}

impl FileSecrets {
    /// A source reading `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }
}

#[async_trait]
impl SecretSource for FileSecrets {
    async fn load(&self) -> Result<Arc<VendorSecrets>, SecretError> {
        let text = tokio::fs::read_to_string(&self.path).await.map_err(|e| {
            SecretError::Unavailable(format!("cannot read {}: {}", self.path.display(), e.kind()))
        })?;
        VendorSecrets::from_json(&text).map(Arc::new)
    }
}
