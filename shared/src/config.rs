//! Configuration, read once at cold start from the environment, validated there (fail fast).
//!
//! | variable               | meaning                                                        | default |
//! |------------------------|----------------------------------------------------------------|---------|
//! | `POS_BACKEND`          | `aws` (DynamoDB, Secrets Manager) or `embedded`                | `aws`   |
//! | `TABLE_NAME`           | DynamoDB table (aws)                                           | required |
//! | `SECRET_ID`            | Secrets Manager secret name or ARN (aws)                       | required |
//! | `POS_DATA_DIR`         | embedded store directory (embedded)                            | `.local-data` |
//! | `POS_SECRETS_FILE`     | local secrets JSON (embedded); unset = built-in dev secrets    | unset   |
//! | `MAX_BODY_BYTES`       | largest webhook body accepted (1 KiB to 1 MiB: see `store::claim`) | 262144  |
//! | `SECRETS_TTL_SECONDS`  | how long a fetched secret is trusted                           | 300     |
//! | `DELIVERY_TTL_HOURS`   | how long a delivery id deduplicates                            | 168     |
//! | `LIGHTSPEED_CURRENCY`  | ISO 4217 currency of the Lightspeed retailer                   | unset   |
//! | `LIGHTSPEED_REGISTERS` | JSON `{"register_id": "outlet_id"}` (unmapped: register = store) | `{}`    |
//! | `SHOPIFY_ACCEPT_TEST_ORDERS` | `true`: Shopify test orders count as sales (dev stores)  | `false` |
//! | `STANDARD_WEBHOOKS_REPLAY_AT` | embedded only (an init error with `aws`): RFC 3339 instant; a Standard Webhooks timestamp is also accepted within 5 minutes of it, so signed samples replay | unset |

use crate::capture::CaptureSettings;
use crate::money::Currency;
use crate::vendors::MappingConfig;
use std::path::PathBuf;

/// A configuration error: names the variable, never echoes secret values.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A required variable is unset.
    #[error("environment variable {0} is required")]
    Missing(&'static str),
    /// A variable has an invalid value.
    #[error("environment variable {0} is invalid: {1}")]
    Invalid(&'static str, String),
    /// A client or store could not be built.
    #[error("cannot initialise {0}: {1}")]
    Init(&'static str, String),
}

/// Which adapters to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// DynamoDB + EventBridge + Secrets Manager.
    Aws {
        /// Table name.
        table: String,
        /// Secret id.
        secret_id: String,
    },
    /// Embedded store + local secrets.
    Embedded {
        /// Store directory.
        data_dir: PathBuf,
        /// Secrets file, or dev secrets.
        secrets_file: Option<PathBuf>,
        /// Local replay of signed samples: a Standard Webhooks timestamp outside the window around
        /// now is also accepted within the window around this instant (`STANDARD_WEBHOOKS_REPLAY_AT`).
        /// Only here, in the embedded variant: the AWS backend refuses the variable at cold start.
        standard_replay_at: Option<chrono::DateTime<chrono::Utc>>,
    },
}

/// The capture function's configuration.
#[derive(Debug, Clone)]
pub struct CaptureConfig {
    /// Adapters.
    pub backend: Backend,
    /// Behaviour.
    pub settings: CaptureSettings,
    /// Secret cache TTL.
    pub secrets_ttl: chrono::Duration,
}

/// A non-empty environment variable.
pub(crate) fn var(name: &'static str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// A required, non-empty environment variable.
pub(crate) fn required(name: &'static str) -> Result<String, ConfigError> {
    var(name).ok_or(ConfigError::Missing(name))
}

impl CaptureConfig {
    /// Reads the environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(var)
    }

    /// Reads the configuration from `var` (a non-empty variable's value, or `None`): the environment
    /// in [`from_env`](Self::from_env), a map in tests.
    pub fn from_vars(var: impl Fn(&'static str) -> Option<String>) -> Result<Self, ConfigError> {
        let required = |name: &'static str| var(name).ok_or(ConfigError::Missing(name));
        let number = |name: &'static str, default: i64| -> Result<i64, ConfigError> {
            match var(name) {
                None => Ok(default),
                Some(v) => v
                    .parse()
                    .map_err(|_| ConfigError::Invalid(name, "not a number".into())),
            }
        };
        let backend = match var("POS_BACKEND").as_deref().unwrap_or("aws") {
            // The replay allowance weakens the replay protection: never in a deployed function.
            "aws" if var("STANDARD_WEBHOOKS_REPLAY_AT").is_some() => {
                return Err(ConfigError::Invalid(
                    "STANDARD_WEBHOOKS_REPLAY_AT",
                    "a local replay setting, refused with POS_BACKEND=aws".into(),
                ));
            }
            "aws" => Backend::Aws {
                table: required("TABLE_NAME")?,
                secret_id: required("SECRET_ID")?,
            },
            "embedded" => Backend::Embedded {
                data_dir: var("POS_DATA_DIR")
                    .map_or_else(|| PathBuf::from(".local-data"), PathBuf::from),
                secrets_file: var("POS_SECRETS_FILE").map(PathBuf::from),
                standard_replay_at: match var("STANDARD_WEBHOOKS_REPLAY_AT") {
                    None => None,
                    Some(v) => Some(
                        chrono::DateTime::parse_from_rfc3339(&v)
                            .map_err(|_| {
                                ConfigError::Invalid(
                                    "STANDARD_WEBHOOKS_REPLAY_AT",
                                    "not an RFC 3339 instant".into(),
                                )
                            })?
                            .with_timezone(&chrono::Utc),
                    ),
                },
            },
            other => {
                return Err(ConfigError::Invalid(
                    "POS_BACKEND",
                    format!("{other:?} is not aws or embedded"),
                ));
            }
        };
        let lightspeed_currency = match var("LIGHTSPEED_CURRENCY") {
            None => None,
            Some(c) => Some(
                Currency::parse(&c)
                    .map_err(|e| ConfigError::Invalid("LIGHTSPEED_CURRENCY", e.to_string()))?,
            ),
        };
        // `{"<register_id>": "<outlet_id>", ...}`: Lightspeed sales name the register, not the outlet.
        let lightspeed_registers = match var("LIGHTSPEED_REGISTERS") {
            None => std::collections::HashMap::new(),
            Some(json) => serde_json::from_str(&json).map_err(|e| {
                ConfigError::Invalid(
                    "LIGHTSPEED_REGISTERS",
                    format!("not a JSON object of ids: {e}"),
                )
            })?,
        };
        let shopify_accept_test_orders = match var("SHOPIFY_ACCEPT_TEST_ORDERS").as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(_) => {
                return Err(ConfigError::Invalid(
                    "SHOPIFY_ACCEPT_TEST_ORDERS",
                    "must be true or false".into(),
                ));
            }
        };
        let max_body_bytes = usize::try_from(number("MAX_BODY_BYTES", 256 * 1024)?).unwrap_or(0);
        // The ceiling is what one capture write holds once the lines are stored aside (claim check).
        if !(1024..=crate::store::claim::MAX_BODY_BYTES_CEILING).contains(&max_body_bytes) {
            return Err(ConfigError::Invalid(
                "MAX_BODY_BYTES",
                "must be between 1 KiB and 1 MiB".into(),
            ));
        }
        let ttl_hours = number("DELIVERY_TTL_HOURS", 168)?;
        if ttl_hours < 72 {
            return Err(ConfigError::Invalid(
                "DELIVERY_TTL_HOURS",
                "must cover Square's 72 h retry window".into(),
            ));
        }
        let secrets_ttl = number("SECRETS_TTL_SECONDS", 300)?;
        Ok(Self {
            backend,
            settings: CaptureSettings {
                max_body_bytes,
                delivery_ttl: chrono::Duration::hours(ttl_hours),
                mapping: MappingConfig {
                    lightspeed_currency,
                    lightspeed_registers,
                    shopify_accept_test_orders,
                },
            },
            secrets_ttl: chrono::Duration::seconds(secrets_ttl.max(0)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&'static str, &str)]) -> impl Fn(&'static str) -> Option<String> {
        let map: std::collections::HashMap<&'static str, String> =
            pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        move |name| map.get(name).cloned()
    }

    const AWS: [(&str, &str); 2] = [("TABLE_NAME", "t"), ("SECRET_ID", "s")];

    #[test]
    fn the_replay_instant_is_refused_at_cold_start_with_the_aws_backend() {
        for backend in [Some("aws"), None] {
            let mut pairs = AWS.to_vec();
            pairs.push(("STANDARD_WEBHOOKS_REPLAY_AT", "2026-01-15T10:00:00Z"));
            if let Some(b) = backend {
                pairs.push(("POS_BACKEND", b));
            }
            match CaptureConfig::from_vars(vars(&pairs)) {
                Err(ConfigError::Invalid(name, _)) => {
                    assert_eq!(name, "STANDARD_WEBHOOKS_REPLAY_AT");
                }
                other => panic!("{backend:?}: {other:?}"),
            }
        }
        assert!(
            CaptureConfig::from_vars(vars(&AWS)).is_ok(),
            "the deployed config"
        );
    }

    #[test]
    fn the_replay_instant_is_read_with_the_embedded_backend_and_must_be_an_instant() {
        let read = |pairs: &[(&'static str, &str)]| {
            let mut all = vec![("POS_BACKEND", "embedded")];
            all.extend_from_slice(pairs);
            CaptureConfig::from_vars(vars(&all)).map(|c| match c.backend {
                Backend::Embedded {
                    standard_replay_at, ..
                } => standard_replay_at,
                Backend::Aws { .. } => panic!("embedded asked"),
            })
        };
        assert_eq!(
            read(&[("STANDARD_WEBHOOKS_REPLAY_AT", "2026-01-15T10:00:00Z")]).expect("valid"),
            Some(crate::samples::sample_time())
        );
        assert_eq!(read(&[]).expect("valid"), None);
        for bad in ["yesterday", "2026-01-15", "1768471200"] {
            assert!(
                matches!(
                    read(&[("STANDARD_WEBHOOKS_REPLAY_AT", bad)]),
                    Err(ConfigError::Invalid("STANDARD_WEBHOOKS_REPLAY_AT", _))
                ),
                "{bad}"
            );
        }
    }
}
