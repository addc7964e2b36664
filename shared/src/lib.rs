//! The POS integration platform's domain crate: everything but the thin Lambda binaries.
//!
//! # Layout
//! - [`ids`], [`money`], [`model`]: the canonical model. Newtypes parsed at the edge, money as integer
//!   minor units with an ISO 4217 currency, UTC times.
//! - [`vendors`]: one module per POS (Shopify, Square, Lightspeed X-Series, Standard Webhooks): signature
//!   verification over the raw bytes, delivery keys, mapping to the canonical model.
//! - [`ports`]: the traits the use cases need (store, publisher, secrets, clock).
//! - [`store`], [`bus`], [`secrets`]: the adapters of those ports: AWS (DynamoDB, EventBridge, Secrets
//!   Manager), embedded (redb file, in-process bus, local secrets file) and in-memory fakes.
//! - [`capture`]: the sale-capture use case and its error type; [`http`]: its one mapping to HTTP.
//! - [`stock`]: stock-sync (deltas per store + SKU, exactly once per event, low/negative notifications).
//! - [`loyalty`]: loyalty-accrual (rules engine, points ledger, reversals on returns).
//! - [`config`], [`runtime`]: configuration read once at cold start, and the wiring of adapters;
//!   [`aws_sdk`]: the one AWS SDK configuration (one shared HTTP client) every cold start builds from.
//! - Lambda glue every function shares: [`idempotency`] (Powertools-grade idempotency records, memory,
//!   redb and DynamoDB backends), [`sqs_batch`] (partial batch failures, FIFO group ordering),
//!   [`metrics`] (CloudWatch Embedded Metric Format).
//! - [`backoff`]: in-invocation retries with full jitter for short contention (DynamoDB transaction
//!   conflicts on hot items).
//! - [`auth`]: bearer JWT validation for the read APIs (JWKS cache with refresh on unknown `kid`, RS256 /
//!   ES256 only, iss/aud/exp/nbf, scopes) and the `pos-local` development issuer.
//! - [`api`]: the query API: one axum router with REST under `/v1` (OpenAPI 3.1 document generated from
//!   the handlers) and GraphQL at `/graphql` (async-graphql, depth/complexity limits), over shared read
//!   operations; its Lambda glue and configuration (JWKS over HTTPS, cursor key from Secrets Manager).
//! - [`read`]: read models for the query API (sales by id, by store and time) with keyset pagination
//!   behind signed cursors.
//! - [`outbox`]: the relay publishing what captures left pending.
//! - [`samples`]: signed sample deliveries (the single source of `events/`, tests and load runs).

pub mod api;
pub mod auth;
pub mod aws_sdk;
pub mod backoff;
pub mod bus;
pub mod capture;
pub mod config;
pub mod delivery;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod idempotency;
pub mod ids;
pub mod loyalty;
pub mod metrics;
pub mod model;
pub mod money;
pub mod outbox;
pub mod ports;
pub mod quarantine;
pub mod read;
pub mod runtime;
pub mod samples;
pub mod secrets;
pub mod sqs_batch;
pub mod stock;
pub mod store;
pub mod vendors;
