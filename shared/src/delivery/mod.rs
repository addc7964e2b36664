//! The outbound half: delivering every sale, return and stock movement to the systems behind the store
//! (commercetools, Microsoft Dynamics 365, signed webhooks), exactly once in effect.
//!
//! The parts every destination shares, each in its module:
//! - [`oauth`]: OAuth 2.0 client credentials with a token cache (refresh before expiry, one refresh
//!   after a 401);
//! - [`retry`]: classification of answers, `Retry-After`, short waits in process and longer ones as a
//!   growing SQS visibility timeout;
//! - [`breaker`]: a circuit breaker per destination shared by every instance through conditional writes.

pub mod breaker;
pub mod oauth;
pub mod retry;
