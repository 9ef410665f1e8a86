//! Pure domain rules: money, identifiers, program rules, the ledger and the payout state
//! machine. Nothing in here performs I/O, so every rule is unit- and property-tested directly.

pub mod accounting;
pub mod api_key;
pub mod cooling_off;
pub mod destination;
pub mod eligibility;
pub mod events;
pub mod fingerprint;
pub mod ids;
pub mod ledger;
pub mod money;
pub mod object_match;
pub mod operator;
pub mod pacing;
pub mod payout;
pub mod payout_run;
pub mod program;
pub mod reconcile;
pub mod referral;
pub mod retention;
pub mod review;
pub mod settle;
pub mod statement;
pub mod status;
pub mod step;
pub mod tax;
pub mod tracking;
pub mod transition;
pub mod usage;
pub mod withdrawal;
