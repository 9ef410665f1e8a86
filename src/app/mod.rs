//! Use cases shared by the command line (the HTTP API reaches storage directly).

pub mod config;
pub mod ingest;
