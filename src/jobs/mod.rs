//! Background work: the payout step and the apalis worker that runs it.

pub mod events;
mod heartbeat;
pub mod payout_step;
pub mod prune;
pub mod schedule;
pub mod worker;

pub use events::EventSender;
pub use payout_step::{PayoutDeps, StepOutcome, advance_payout};
pub use worker::{WorkerOptions, run_worker, shutdown_signal};
