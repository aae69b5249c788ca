//! `lossyfs BACKING MOUNTPOINT`: mount a filesystem that loses what was not fsynced.
//!
//! Prints `mounted` on stdout once the mount is live. Control it by writing commands to
//! `MOUNTPOINT/.lossyfs-control` (`lose-power [tear SEED]`, `eio add SUBSTRING`, `eio clear`,
//! `stats`) and reading the JSON result back from it, or with SIGUSR1 (lose power). SIGTERM,
//! SIGINT or SIGHUP unmount and exit, keeping everything unless `--lose-on-exit` is given.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use weir_lossyfs::daemon::{self, Options};

/// A FUSE filesystem for crash tests that loses what was not fsynced.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The directory whose contents the mount shows (and where writes land).
    backing: PathBuf,
    /// Where to mount (an existing directory).
    mountpoint: PathBuf,
    /// Lose power when stopping (signal, stdin EOF, or unmounted from outside).
    #[arg(long)]
    lose_on_exit: bool,
    /// Stop when standard input reaches its end (how the Rust harness ties us to its life).
    #[arg(long)]
    exit_on_stdin_eof: bool,
    /// Never mount with auto_unmount (used by default when fusermount3 is on PATH).
    #[arg(long)]
    no_auto_unmount: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let opts = Options {
        backing: args.backing,
        mountpoint: args.mountpoint,
        lose_on_exit: args.lose_on_exit,
        exit_on_stdin_eof: args.exit_on_stdin_eof,
        auto_unmount: !args.no_auto_unmount,
    };
    match daemon::run(&opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lossyfs: {e:#}");
            ExitCode::FAILURE
        }
    }
}
