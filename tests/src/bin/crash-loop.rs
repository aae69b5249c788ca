//! `crash-loop`: kill -9 a real `weir serve` under mixed load, again and again, and check that
//! nothing acknowledged is lost or duplicated. Ends with `cycles N, acked A, lost L,
//! duplicated D` and exits non-zero if anything broke.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use weir_tests::crash_loop::{self, Config};

/// Crash-loop weir and verify its promises after every restart.
#[derive(Parser)]
struct Args {
    /// Kill/restart cycles.
    #[arg(long, default_value_t = 5)]
    cycles: u32,
    /// Seed of the random kill timing (a failing seed reproduces the run's schedule).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Server durability: `sync` (fsync per group commit) or `os` (no fsync; survives
    /// process crashes, not power loss).
    #[arg(long, default_value = "sync")]
    durability: String,
    /// Messages per produce request (load scale).
    #[arg(long, default_value_t = 200)]
    batch: usize,
    /// Longest time load runs before a kill, ms (the shortest is a fifth of it).
    #[arg(long, default_value_t = 1500)]
    max_run_ms: u64,
    /// Run the load without kills for this long (e.g. 10m), reporting throughput and RSS.
    #[arg(long, value_parser = humantime::parse_duration)]
    soak: Option<Duration>,
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
        soak: a.soak,
        ..Config::default()
    };
    crash_loop::report(crash_loop::run(&config).await)
}
