//! Test support shared by the cross-crate tests.
//!
//! # Layout
//! - [`infra`]: reads `infra/*.tf` (HCL) so tests create AWS resources from the same definitions that
//!   Terraform deploys, and check code and infra agree.
//! - [`moto`]: starts `moto_server` on a free loopback port and builds SDK clients pointed at it.
//! - [`local`]: pos-local in process with a connectors file, signed posts, the ledger read back.
//! - [`peer`]: starts a Python peer script on a free loopback port (the emulator, the receiver).
//! - [`ctp`]: starts commercetools' own API emulator on a free loopback port.
//! - [`queues`]: consumer queues in moto as `infra/` declares them, batches as Lambda delivers them.
//! - [`d365`]: an emulator of Dynamics 365 F&O's OData service and Entra ID's token endpoint.
//! - [`hooks`]: starts a Standard Webhooks receiver verifying with the reference library.
//! - [`sim`]: the deterministic fault-injection simulation of the pipeline (seeded scheduler, simulated clock).

pub mod ctp;
pub mod d365;
pub mod hooks;
pub mod local;
pub mod moto;
pub mod peer;
pub mod queues;
pub mod sim;

/// `infra/` as data (lives in `pos-local`, which routes with the same rules).
pub use pos_local::infra;
