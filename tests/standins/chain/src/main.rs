//! `regtest-standin`: a regtest STAND-IN for tests and the demo (not Bitcoin
//! Core, not a node). See the crate README.

use std::io::Write as _;
use std::net::IpAddr;

use chain_standin::rpc::RpcAuth;
use chain_standin::server::{Config, bind};
use clap::Parser;

/// A regtest STAND-IN for tests and the demo, not Bitcoin Core: real blocks
/// and a mempool checked with libbitcoinconsensus, served through Esplora's
/// HTTP API (plus /control/ endpoints) and a bitcoind JSON-RPC face.
/// Prints one line, `regtest-standin ready esplora=URL rpc=URL`, when both
/// ports answer.
#[derive(Debug, Parser)]
#[command(name = "regtest-standin", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    listen: IpAddr,
    /// Esplora API and /control/ port (0: any free port).
    #[arg(long, default_value_t = 3002)]
    esplora_port: u16,
    /// bitcoind JSON-RPC port (0: any free port).
    #[arg(long, default_value_t = 18443)]
    rpc_port: u16,
    /// JSON-RPC user.
    #[arg(long, default_value = "standin")]
    rpc_user: String,
    /// JSON-RPC password (test credentials).
    #[arg(
        long,
        env = "REGTEST_STANDIN_RPC_PASSWORD",
        default_value = "standin",
        hide_env_values = true
    )]
    rpc_password: String,
    /// Seed of the stand-in's own wallet key (coinbase payee, `fund` payer).
    #[arg(long, default_value = "regtest-standin wallet")]
    seed: String,
    /// Blocks to mine to the stand-in's wallet before serving (101 makes one coinbase spendable).
    #[arg(long, default_value_t = 0)]
    initial_blocks: u32,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("regtest_standin=info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let bound = bind(Config {
        listen: args.listen,
        esplora_port: args.esplora_port,
        rpc_port: args.rpc_port,
        rpc_auth: RpcAuth {
            user: args.rpc_user,
            password: args.rpc_password,
        },
        seed: args.seed,
        initial_blocks: args.initial_blocks,
    })
    .await?;
    let esplora = bound.esplora_addr()?;
    let rpc = bound.rpc_addr()?;
    tracing::info!(target: "regtest_standin", %esplora, %rpc, "regtest stand-in serving (not Bitcoin Core)");
    // The one line a parent process waits for (the spawn helper reads it).
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "regtest-standin ready esplora=http://{esplora} rpc=http://{rpc}"
    )?;
    out.flush()?;
    drop(out);
    bound.serve().await
}
