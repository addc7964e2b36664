//! Deterministic simulation of the pipeline under injected faults (issue 12, part 1).
//!
//! One seed decides everything: the sales and returns the vendors send, the order in which `sale-capture`,
//! the stream publisher, the relay's sweep and the consumers run, which of them crash between two steps,
//! which adapter calls fail (before or after their effect), which messages are duplicated or delayed,
//! and how the clock moves. The functions are the production code (`CaptureService`, `OutboxRelay`,
//! `StockSync`, `LoyaltyAccrual`) on the production embedded adapters (redb in memory); only the AWS
//! services around them are simulated ([`ports`]: bus routing from `infra/consumers.tf`, SQS queues with
//! their infra visibility timeouts and receive counts, the DynamoDB stream and its retries).
//!
//! Not covered (yet): the delivery functions (commercetools, Dynamics 365, webhooks), the other three
//! vendors' wire formats (the simulation sends Standard Webhooks), stock counts, and the DynamoDB adapters
//! (their conditional writes are covered by the conformance suites against moto, not here).
//!
//! Entry point: [`run`]; the campaign and the broken variants are in `tests/tests/simulation.rs`.

pub mod check;
pub mod ctl;
pub mod ports;
pub mod world;

pub use check::{Invariant, Violation};
pub use ctl::Breaks;
pub use world::{Config, Failure, Report, run};
