//! Throughput benchmarks, printed as figures (never pass/fail: these machines are noisy).

use anyhow::Result;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Accrual over a synthetic data set, beside a plain bulk insert of the same rows.
    Accrual,
}

pub async fn bench(command: BenchCommand) -> Result<i32> {
    match command {
        BenchCommand::Accrual => anyhow::bail!("not built yet"),
    }
}
