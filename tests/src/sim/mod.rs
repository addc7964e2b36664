//! Deterministic simulation of the pipeline under injected faults (issue 12, part 1).
//!
//! One seed decides everything: the sales and returns the vendors send, the order in which `sale-capture`,
//! the stream publisher, the relay's sweep, the consumers and a delivery function run, which of them crash
//! between two steps, which adapter calls fail (before or after their effect), which messages are
//! duplicated or delayed, and how the clock moves. The functions are the production code (`CaptureService`,
//! `OutboxRelay`, `StockSync`, `LoyaltyAccrual`, `DeliverySync` with the delivery engine) on the production
//! embedded adapters (redb in memory); only the AWS services and the destination around them are simulated
//! ([`ports`]: bus routing from `infra/consumers.tf`, SQS queues with their infra visibility timeouts and
//! receive counts, the DynamoDB stream and its retries, an ERP with a unique key).
//!
//! Not covered (yet): the other three vendors' wire formats (the simulation sends Standard Webhooks), stock
//! counts, the commercetools, Dynamics 365 and webhooks adapters themselves (tested against their peers),
//! and the DynamoDB adapters (their conditional writes are covered by the conformance suites against moto).
//!
//! Entry point: [`run`]; the campaign and the broken variants are in `tests/tests/simulation.rs`.

pub mod check;
pub mod ctl;
pub mod ports;
pub mod world;

pub use check::{Invariant, Violation};
pub use ctl::Breaks;
pub use world::{Config, Failure, Report, run};
