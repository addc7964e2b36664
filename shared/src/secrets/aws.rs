//! Secrets from AWS Secrets Manager: one secret whose string value is the JSON document of [`super`].

use super::{SecretError, VendorSecrets};
use crate::ports::SecretSource;
use async_trait::async_trait;
use aws_sdk_secretsmanager::Client;
use std::sync::Arc;

/// Fetches the secret document with `GetSecretValue` (wrap it in [`super::CachedSecrets`]).
pub struct SecretsManagerSecrets {
    client: Client,
    secret_id: String,
}

impl SecretsManagerSecrets {
    /// A source for the secret named or ARN'd `secret_id`.
    pub fn new(client: Client, secret_id: impl Into<String>) -> Self {
        Self {
            client,
            secret_id: secret_id.into(),
        }
    }
}

#[async_trait]
impl SecretSource for SecretsManagerSecrets {
    async fn load(&self) -> Result<Arc<VendorSecrets>, SecretError> {
        let out = self
            .client
            .get_secret_value()
            .secret_id(&self.secret_id)
            .send()
            .await
            .map_err(|e| {
                SecretError::Unavailable(format!(
                    "GetSecretValue failed: {}",
                    aws_sdk_secretsmanager::error::DisplayErrorContext(&e)
                ))
            })?;
        let text = out.secret_string().ok_or_else(|| {
            SecretError::Invalid("secret has no string value (set it out of band)".into())
        })?;
        VendorSecrets::from_json(text).map(Arc::new)
    }
}
