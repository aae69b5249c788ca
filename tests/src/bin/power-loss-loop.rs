//! `power-loss-loop`: the crash loop's mixed load (keyed produces, a two-step pipeline with
//! state, a consumer group committing, a queue with acks) against a `weir serve` whose data
//! directory is a `lossyfs` mount; each cycle kills the server at a random moment and loses
//! power — everything not fsynced is dropped, the last unsynced append of each file torn at a
//! sector boundary — then restarts it and checks every promise. In `sync` durability nothing
//! acknowledged may be lost; in `os` the acknowledged writes lost are measured (the loss
//! window) and everything else must still hold. Needs root (a FUSE mount).

use std::process::ExitCode;

use clap::Parser;
use weir_tests::crash_loop::{self, Config};

/// Lose power under weir again and again, and verify its promises after every restart.
#[derive(Parser)]
struct Args {
    /// Power-loss cycles.
    #[arg(long, default_value_t = 10)]
    cycles: u32,
    /// Seed of the timing and the tears.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Server durability: `sync` (nothing acknowledged may be lost) or `os` (measured).
    #[arg(long, default_value = "sync")]
    durability: String,
    /// Drop unsynced writes whole instead of tearing the last one at a sector boundary.
    #[arg(long)]
    no_tear: bool,
    /// Messages per produce request (load scale).
    #[arg(long, default_value_t = 200)]
    batch: usize,
    /// Longest time load runs before the power goes, ms (the shortest is a fifth of it).
    #[arg(long, default_value_t = 1500)]
    max_run_ms: u64,
}

#[tokio::main]
async fn main() -> ExitCode {
    let a = Args::parse();
    let config = Config {
        cycles: a.cycles,
        seed: a.seed,
        durability: a.durability,
        batch: a.batch,
        run_ms: (a.max_run_ms / 5, a.max_run_ms),
        power_loss: true,
        tear: !a.no_tear,
        ..Config::default()
    };
    crash_loop::report(crash_loop::run(&config).await)
}
