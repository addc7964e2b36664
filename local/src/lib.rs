//! `pos-local`: the whole platform on one laptop, no AWS account.
//!
//! # Layout
//! - [`apigw`]: turns a plain HTTP request into the API Gateway HTTP API (v2) event the Lambda receives,
//!   so the handler runs exactly the code path it runs in AWS (base64 bodies included).
//! - [`server`]: the HTTP server: `POST /webhooks/{vendor}` through the real sale-capture handler on the
//!   embedded store and an in-process event bus, plus read-only inspection under `/_local/`.
//! - [`events`]: the generator of `events/` (every sample delivery, signed with the dev secrets) and the
//!   manifest of the answer each one must get.
//! - [`infra`]: `infra/` as data; the local bus routes with the rules of `infra/consumers.tf`.
//! - [`pipeline`]: the emulated bus (rules from infra/), durable SQS queues with visibility timeout, receive
//!   counts and DLQ, and the pollers feeding stock-sync and loyalty-accrual.
//! - [`client`]: `pos-local send` (post an `events/` file) and `pos-local load` (a load generator for
//!   signed Standard Webhooks sales).
//! - [`simulate`]: `pos-local simulate`, a seeded store day in all four vendors' wire formats, sent and
//!   reconciled (stock, points, deliveries) against its own model.

pub mod apigw;
pub mod client;
pub mod events;
pub mod infra;
pub mod pipeline;
pub mod server;
pub mod simulate;
