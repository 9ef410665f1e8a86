//! `payouts`: payout orchestration for the referral, affiliate and creator programs of GPU
//! clouds.
//!
//! Layers, from the inside out:
//! - [`domain`]: pure rules (money, programs, eligibility, ledger, payout state machine);
//! - [`ingest`]: parsing platform records;
//! - [`storage`]: the database (embedded SQLite by default, PostgreSQL for many workers on many
//!   machines), including the transactional job enqueue;
//! - [`providers`]: HTTP adapters to payout rails, one folder per rail with its wire types;
//! - [`jobs`]: the apalis worker that advances payouts;
//! - [`reconcile`]: finance's check of every provider record against our payouts;
//! - [`http`]: the JSON API and the webhook receivers;
//! - [`app`]: use cases shared by the CLI and the HTTP API.
//!
//! Apart from those, behind the default-on `simulators` feature: [`sim`], the provider
//! simulators the tests, the demo and the benchmarks run against. A production build leaves
//! it out.

// The worker joins three apalis workers (payouts, payout runs, reconciliations); their
// nested futures pass the default type-depth limit in release builds.
#![recursion_limit = "256"]

pub mod app;
pub mod clock;
pub mod domain;
pub mod http;
pub mod ingest;
pub mod jobs;
pub mod providers;
pub mod reconcile;
#[cfg(feature = "simulators")]
pub mod sim;
pub mod storage;
