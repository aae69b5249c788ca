//! `weir bench`: throughput of produce, consume and a wasm pipeline against a temporary
//! server started for the run.

use clap::Args;

#[derive(Args)]
pub struct BenchArgs {
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

pub async fn run(_args: BenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("bench: not built yet")
}
