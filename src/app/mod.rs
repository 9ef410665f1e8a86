//! Use cases shared by the command line (and, later, the HTTP API).

pub mod config;
pub mod ingest;
