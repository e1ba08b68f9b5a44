//! `lnd-standin`: a stand-in for LND (not LND) for tests and the demo. It serves the
//! subset of LND's gRPC API (lnrpc.Lightning, routerrpc.Router, invoicesrpc.Invoices) that
//! Bastion's LND adapter uses, over TLS with a macaroon, each call backed by a real LDK
//! node, so that real HTLCs move. See README.md.
#![allow(
    clippy::result_large_err,
    reason = "gRPC handlers answer tonic::Status; their helpers return it as it is"
)]

mod auth;
mod lightning;
mod node;
mod router;
mod store;

/// The server traits generated from LND's .proto files (messages: fedimint-tonic-lnd's).
#[allow(clippy::all, missing_docs, missing_debug_implementations)]
mod proto {
    pub mod lnrpc {
        tonic::include_proto!("lnrpc");
    }
    pub mod routerrpc {
        tonic::include_proto!("routerrpc");
    }
    pub mod invoicesrpc {
        tonic::include_proto!("invoicesrpc");
    }
}

use std::io::Write as _;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use tonic::transport::{Identity, Server, ServerTlsConfig};

use crate::auth::MacaroonCheck;
use crate::lightning::LightningService;
use crate::node::NodeOptions;
use crate::router::{InvoicesService, RouterService};

const ABOUT: &str = "A stand-in for LND in tests, NOT LND: a subset of LND's gRPC API \
(lnrpc.Lightning, routerrpc.Router, invoicesrpc.Invoices) over TLS with a macaroon, backed \
by a real LDK node on regtest with an Esplora chain source.";

#[derive(Debug, Parser)]
#[command(name = "lnd-standin", about = ABOUT)]
struct Args {
    /// Data directory: tls.cert, tls.key, admin.macaroon, the LDK node's storage, the
    /// invoice store. Made if missing; reused on restart.
    #[arg(long)]
    data_dir: PathBuf,
    /// Esplora API of the regtest chain (the regtest stand-in's URL).
    #[arg(long)]
    esplora_url: String,
    /// gRPC port on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 10009)]
    grpc_port: u16,
    /// Lightning P2P port on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 9735)]
    p2p_port: u16,
    /// How often the node syncs its wallets with the chain, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    sync_interval_ms: u64,
}

/// A free port now (P2P: LDK binds it itself, a moment later).
fn free_port() -> std::io::Result<u16> {
    Ok(StdListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "lnd_standin=info,warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    tracing::warn!("lnd-standin: a stand-in for LND (not LND), for tests only");
    std::fs::create_dir_all(&args.data_dir)?;
    let (cert, key) = auth::tls_identity(&args.data_dir)?;
    let macaroon = MacaroonCheck::new(auth::macaroon_hex(&args.data_dir)?);
    let p2p_port = if args.p2p_port == 0 {
        free_port()?
    } else {
        args.p2p_port
    };
    // LDK Node starts its own runtime: build it before ours exists.
    let shared = node::start(&NodeOptions {
        data_dir: args.data_dir.clone(),
        esplora_url: args.esplora_url.clone(),
        p2p_port,
    })?;
    let grpc = StdListener::bind(("127.0.0.1", args.grpc_port))?;
    grpc.set_nonblocking(true)?;
    let grpc_addr: SocketAddr = grpc.local_addr()?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        tokio::spawn(node::event_loop(std::sync::Arc::clone(&shared)));
        tokio::spawn(node::sync_loop(
            std::sync::Arc::clone(&shared),
            Duration::from_millis(args.sync_interval_ms),
        ));
        tokio::spawn(node::reconnect_loop(
            std::sync::Arc::clone(&shared),
            Duration::from_secs(2),
        ));
        let listener = tokio::net::TcpListener::from_std(grpc)?;
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        let router = Server::builder()
            .tls_config(ServerTlsConfig::new().identity(Identity::from_pem(cert, key)))?
            .add_service(
                proto::lnrpc::lightning_server::LightningServer::with_interceptor(
                    LightningService(std::sync::Arc::clone(&shared)),
                    macaroon.clone(),
                ),
            )
            .add_service(proto::routerrpc::router_server::RouterServer::with_interceptor(
                RouterService(std::sync::Arc::clone(&shared)),
                macaroon.clone(),
            ))
            .add_service(
                proto::invoicesrpc::invoices_server::InvoicesServer::with_interceptor(
                    InvoicesService(std::sync::Arc::clone(&shared)),
                    macaroon,
                ),
            );
        let pubkey = shared.node.node_id();
        tracing::info!(%grpc_addr, p2p_port, %pubkey, "lnd-standin (not LND) serving");
        // The ready line tests wait for (stdout, one line).
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "lnd-standin (a stand-in for LND, not LND) ready grpc=https://{grpc_addr} p2p=127.0.0.1:{p2p_port} pubkey={pubkey}"
        )?;
        out.flush()?;
        drop(out);
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        router.serve_with_incoming_shutdown(incoming, shutdown).await?;
        shared.node.stop()?;
        anyhow::Ok(())
    })
}
