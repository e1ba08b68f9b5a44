//! Prometheus metrics: the recorder behind the `metrics` macros (the ledger, the API and
//! the bank emit through them), `GET /metrics` on its own listener, and the samplers of
//! what is read rather than counted (payment states, the connection pool).

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use sqlx::PgPool;

/// Buckets of latencies, seconds.
const SECONDS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Buckets of batch sizes, postings.
const POSTINGS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// Why metrics cannot start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetricsError {
    /// Another recorder is installed, or a bucket list is empty.
    #[error("metrics: cannot install the Prometheus recorder: {0}")]
    Install(String),
    /// The listener's address cannot be bound.
    #[error("metrics: cannot bind {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// Installs the process-wide Prometheus recorder (once per process).
///
/// # Errors
/// [`MetricsError::Install`] if a recorder is installed already.
pub fn install() -> Result<PrometheusHandle, MetricsError> {
    let install = |e: metrics_exporter_prometheus::BuildError| MetricsError::Install(e.to_string());
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), SECONDS)
        .map_err(install)?
        .set_buckets_for_metric(
            Matcher::Full("bastion_ledger_batch_postings".to_owned()),
            POSTINGS,
        )
        .map_err(install)?
        .install_recorder()
        .map_err(install)
}

/// Binds `addr` and serves `GET /metrics` there until `shutdown` resolves; the recorder's
/// upkeep (draining histograms) runs alongside.
///
/// # Errors
/// [`MetricsError::Bind`].
pub async fn serve(
    addr: SocketAddr,
    handle: PrometheusHandle,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<tokio::task::JoinHandle<()>, MetricsError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| MetricsError::Bind { addr, source })?;
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let handle = handle.clone();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    handle.render(),
                )
            }
        }),
    );
    tracing::info!(%addr, "serving metrics");
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "metrics listener failed");
        }
    }))
}

/// Samples the pool and the payment states now and every `every` (the pool is read from
/// memory; the payment counts use the partial indexes of pending payments).
pub fn spawn_sampler(pool: PgPool, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            sample(&pool).await;
        }
    })
}

async fn sample(pool: &PgPool) {
    let idle = pool.num_idle();
    let size = pool.size() as usize;
    metrics::gauge!("bastion_db_pool_connections", "state" => "idle").set(idle as f64);
    metrics::gauge!("bastion_db_pool_connections", "state" => "used")
        .set(size.saturating_sub(idle) as f64);
    let pending: Result<i64, _> =
        sqlx::query_scalar("SELECT count(*) FROM intraledger_payments WHERE status = 'PENDING'")
            .fetch_one(pool)
            .await;
    match pending {
        Ok(n) => metrics::gauge!("bastion_payments", "state" => "pending").set(n as f64),
        Err(e) => tracing::warn!(error = %e, "cannot sample the payment states"),
    }
    // Lightning payments in flight, and how long the oldest has been: a payment the node
    // holds for hours is what an operator must look at (its funds stay held meanwhile).
    let ln: Result<(i64, f64), _> = sqlx::query_as(
        "SELECT count(*), coalesce(extract(epoch FROM now() - min(created_at))::float8, 0) \
         FROM ln_payments WHERE status = 'PENDING'",
    )
    .fetch_one(pool)
    .await;
    match ln {
        Ok((n, oldest)) => {
            metrics::gauge!("bastion_lightning_payments", "state" => "pending").set(n as f64);
            metrics::gauge!("bastion_lightning_oldest_pending_seconds").set(oldest);
        }
        Err(e) => tracing::warn!(error = %e, "cannot sample the Lightning payments"),
    }
}
