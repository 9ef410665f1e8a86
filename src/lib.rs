//! `payouts`: payout orchestration for the referral, affiliate and creator programs of GPU
//! clouds.
//!
//! Layers, from the inside out:
//! - [`domain`]: pure rules (money, programs, eligibility, ledger, payout state machine);
//! - [`ingest`]: parsing platform records;
//! - [`storage`]: the database (SQLite today), including the transactional job enqueue;
//! - [`providers`]: HTTP adapters to payout rails, each with its wire types and a mock server;
//! - [`jobs`]: the apalis worker that advances payouts;
//! - [`reconcile`]: finance's check of every provider record against our payouts;
//! - [`app`]: use cases shared by the CLI (and later the HTTP API).

// The worker joins three apalis workers (payouts, payout runs, reconciliations); their
// nested futures pass the default type-depth limit in release builds.
#![recursion_limit = "256"]

pub mod app;
pub mod domain;
pub mod http;
pub mod ingest;
pub mod jobs;
pub mod providers;
pub mod reconcile;
pub mod storage;
