//! Provider simulators: the four mock providers, the kit they share, and the sandbox that wires
//! them to a store. They speak each provider's wire format so the real adapters can be tested
//! and demonstrated end to end; they are not production code.
//!
//! Compiled only with the default-on `simulators` feature. The production binary is built
//! without it (`cargo build --release --no-default-features`) and so carries no mock route and
//! no test key.

pub mod kit;
pub mod partnerstack;
pub mod paypal;
pub mod sandbox;
pub mod stripe;
pub mod wise;
