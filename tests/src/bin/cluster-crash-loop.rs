//! `cluster-crash-loop`: two weir nodes over a 3-node NATS JetStream cluster under load, with
//! a fault per cycle (kill -9 of a stream leader, kill -9 of the busiest weir node during a
//! deploy, a weir node paused past its lease); checks exactly-once, order, state, offsets and
//! plugin versions after each. Ends with the summary line; exits non-zero if anything broke.

use std::process::ExitCode;

use clap::Parser;
use weir_tests::cluster_loop::{self, Config};

/// Crash-loop a weir cluster and verify its promises after every cycle.
#[derive(Parser)]
struct Args {
    /// Cycles (the faults rotate: stream leader, owner during deploy, pause).
    #[arg(long, default_value_t = 3)]
    cycles: u32,
    /// Seed of the load and fault choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Records per produce burst.
    #[arg(long, default_value_t = 300)]
    burst: u64,
}

#[tokio::main]
async fn main() -> ExitCode {
    let a = Args::parse();
    match cluster_loop::run(&Config { cycles: a.cycles, seed: a.seed, burst: a.burst }).await {
        Ok(summary) => {
            println!("{summary}");
            for v in &summary.violations {
                println!("violation: {v}");
            }
            if summary.violations.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
        }
        Err(e) => {
            eprintln!("cluster crash loop failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}
