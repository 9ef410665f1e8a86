//! The engine in process: ingest, programs, withdrawals, payout runs, the four rails against
//! their simulators (faults injected), webhooks, provider records, reconciliation and the
//! accounting exports. One binary, one module per topic, sharing `common`.

#[path = "../common/mod.rs"]
mod common;

mod accounting_exports;
mod bonus_seed;
mod duplicate_resolution;
mod events;
mod holding_period;
mod ingest_and_ledger;
mod large_totals;
mod late_evidence;
mod object_match;
mod operator_actions;
mod pacing;
mod payout_faults;
mod payout_leases;
mod payout_runs;
mod pool_hygiene;
mod program_properties;
mod programs;
mod provider_records_stripe_paypal;
mod provider_records_wise_partnerstack;
mod rail_partnerstack;
mod rail_partnerstack_webhooks;
mod rail_paypal;
mod rail_wise;
mod rails;
mod reconcile;
mod reconcile_daily;
mod retention;
mod review_queue;
mod settle_faults;
mod stale_sender;
mod statements;
mod stripe_webhooks;
mod tax_gate;
mod tax_report;
mod watch_window;
mod webhook_bounds;
mod wise_paging;
mod withdrawals;
