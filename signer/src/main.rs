//! `signer`: the command line over the signer library (see `cli`).

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
