//! The engine in process: ingest, programs, withdrawals, payout runs, the four rails against
//! their simulators (faults injected), webhooks, provider records, reconciliation and the
//! accounting exports. One binary, one module per topic, sharing `common`.

#[path = "../common/mod.rs"]
mod common;

mod accounting_exports;
mod ingest_and_ledger;
mod large_totals;
mod object_match;
mod payout_faults;
mod payout_runs;
mod program_properties;
mod programs;
mod provider_records_stripe_paypal;
mod provider_records_wise_partnerstack;
mod rail_partnerstack;
mod rail_paypal;
mod rail_wise;
mod rails;
mod reconcile;
mod settle_faults;
mod stripe_webhooks;
mod withdrawals;
