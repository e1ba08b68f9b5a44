//! Binding the two ports and serving the stand-in's routers.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use tokio::net::TcpListener;

use crate::node::{Node, SharedNode};
use crate::rpc::RpcAuth;

/// How the stand-in is started.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on (127.0.0.1 unless told otherwise).
    pub listen: IpAddr,
    /// Esplora and control port (0: any free port).
    pub esplora_port: u16,
    /// JSON-RPC port (0: any free port).
    pub rpc_port: u16,
    /// JSON-RPC credentials.
    pub rpc_auth: RpcAuth,
    /// Seed of the stand-in's own wallet key.
    pub seed: String,
    /// Blocks to mine before serving (to the stand-in's wallet).
    pub initial_blocks: u32,
}

/// The bound listeners, before serving.
#[derive(Debug)]
pub struct Bound {
    esplora: TcpListener,
    rpc: TcpListener,
    node: SharedNode,
    auth: RpcAuth,
}

impl Bound {
    /// Where Esplora and `/control/` answer.
    ///
    /// # Errors
    /// If the socket has no local address.
    pub fn esplora_addr(&self) -> std::io::Result<SocketAddr> {
        self.esplora.local_addr()
    }

    /// Where JSON-RPC answers.
    ///
    /// # Errors
    /// If the socket has no local address.
    pub fn rpc_addr(&self) -> std::io::Result<SocketAddr> {
        self.rpc.local_addr()
    }

    /// Serves both faces until the process ends.
    ///
    /// # Errors
    /// If either server fails.
    pub async fn serve(self) -> anyhow::Result<()> {
        let esplora = crate::esplora::router(self.node.clone())
            .merge(crate::control::router(self.node.clone()));
        let rpc = crate::rpc::router(self.node, self.auth);
        let esplora = axum::serve(self.esplora, esplora);
        let rpc = axum::serve(self.rpc, rpc);
        tokio::try_join!(async { esplora.await.context("esplora server") }, async {
            rpc.await.context("rpc server")
        },)?;
        Ok(())
    }
}

/// Makes the node (mining `initial_blocks`) and binds both ports.
///
/// # Errors
/// A port in use, or a bad seed.
pub async fn bind(config: Config) -> anyhow::Result<Bound> {
    let mut node = Node::new(&config.seed)?;
    node.mine(config.initial_blocks, None)?;
    let esplora = TcpListener::bind((config.listen, config.esplora_port))
        .await
        .with_context(|| format!("binding {}:{}", config.listen, config.esplora_port))?;
    let rpc = TcpListener::bind((config.listen, config.rpc_port))
        .await
        .with_context(|| format!("binding {}:{}", config.listen, config.rpc_port))?;
    Ok(Bound {
        esplora,
        rpc,
        node: Arc::new(Mutex::new(node)),
        auth: config.rpc_auth,
    })
}
