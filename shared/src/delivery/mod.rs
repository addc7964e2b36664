//! The outbound half: delivering every sale, return and stock movement to the systems behind the store
//! (commercetools, Microsoft Dynamics 365, signed webhooks), exactly once in effect.
//!
//! The parts every destination shares, each in its module:
//! - [`oauth`]: OAuth 2.0 client credentials with a token cache (refresh before expiry, one refresh
//!   after a 401);
//! - [`client`]: the HTTP client adapters call through (bearer token, one refresh on a 401, timeouts,
//!   answers classified, error codes without bodies);
//! - [`retry`]: classification of answers, `Retry-After`, short waits in process and longer ones as a
//!   growing SQS visibility timeout;
//! - [`breaker`]: a circuit breaker per destination shared by every instance through conditional writes;
//! - [`ledger`]: per (event, destination), what reached whom (the proof of delivery);
//! - [`dynamodb`]: the ledger and the breakers on DynamoDB (in-memory fakes live beside their ports);
//! - [`embedded`]: the ledger and the breakers in redb (`deliveries.redb` locally);
//! - [`embedded_health`]: the webhooks endpoint health in the same redb database;
//! - [`conformance`]: the ledger's and the breaker store's contracts, run against every adapter;
//! - [`commercetools`]: sales as imported orders, returns as return info on the order;
//! - [`inventory`]: commercetools inventory, each stock movement once per (event, line);
//! - [`dynamics`]: Microsoft Dynamics 365 Finance & Operations over OData (sales and return orders,
//!   stock journals); [`dynamics_config`]: the dynamics-sync function's configuration and composition;
//! - [`webhooks`]: signed webhooks out (Standard Webhooks as the sender), per subscription, fanned out;
//! - [`subscriptions`]: where the subscriptions come from (the connectors file, or the deliveries table
//!   and a secret on AWS), re-read after a TTL;
//! - [`webhooks_enable`]: the operator's re-enable of a disabled endpoint, with the replay of its records;
//! - [`webhooks_config`]: webhooks-sync's composition and its environment;
//! - [`engine`]: one event to one destination, exactly once in effect: ledger check, breaker, read-back
//!   after an ambiguous failure, retries, outcome;
//! - [`aws_env`]: the environment and adapters every delivery function shares on AWS;
//! - [`sync`]: the SQS side of a delivery function (partial batch failures, requeue with a visibility
//!   timeout, the DLQ for what a destination refuses).

pub mod aws_env;
pub mod breaker;
pub mod client;
pub mod commercetools;
pub mod config;
pub mod conformance;
pub mod dynamics;
pub mod dynamics_config;
pub mod dynamodb;
pub mod embedded;
pub mod embedded_health;
pub mod engine;
pub mod inventory;
pub mod ledger;
pub mod oauth;
pub mod retry;
pub mod subscriptions;
pub mod sync;
pub mod webhooks;
pub mod webhooks_config;
pub mod webhooks_enable;
