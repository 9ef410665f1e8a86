//! The real `payouts` binary run as a user runs it: commands, program configuration, the
//! benchmarks' smoke tests, and worker processes killed or stopped mid-send. One binary, one
//! module per topic, sharing `common`.

#[path = "../common/mod.rs"]
mod common;

mod bonus_seed;
mod commands;
mod crash_recovery;
mod edges;
mod events;
mod operate;
mod programs;
mod simulation;
mod statements;
