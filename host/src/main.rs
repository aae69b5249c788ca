//! The `weir` command: the server (`weir serve`) and every client command.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
