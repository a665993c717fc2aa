//! The workers a server may use: their channels (with keepalive, so a vanished worker
//! is noticed within seconds) and a health check every second, so only reachable
//! workers of the right version get tasks.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use datafusion::error::DataFusionError;
use datafusion_distributed::grpc::{create_worker_client, BoxCloneSyncChannel};
use datafusion_distributed::{
    ChannelResolver, GetWorkerInfoRequest, WorkerChannel, WorkerResolver,
};
use tonic::transport::{Channel, Endpoint};
use url::Url;

use crate::distributed::WORKER_VERSION;
use crate::SqlError;

/// How often workers are checked, and how long one check may take.
const HEALTH_INTERVAL: Duration = Duration::from_secs(1);

/// A fixed set of workers, each marked healthy or not by the last check.
#[derive(Debug)]
pub struct WorkerPool {
    workers: Vec<Member>,
    channels: Channels,
}

#[derive(Debug)]
struct Member {
    url: Url,
    healthy: AtomicBool,
}

impl WorkerPool {
    /// A pool over `addresses` (`host:port` or `http://host:port`), checked once now and
    /// then every second on the current runtime while the pool lives.
    pub async fn connect(addresses: &[String]) -> Result<Arc<WorkerPool>, SqlError> {
        let mut workers = Vec::with_capacity(addresses.len());
        for address in addresses {
            let text = if address.contains("://") {
                address.clone()
            } else {
                format!("http://{address}")
            };
            let url = Url::parse(&text).map_err(|e| SqlError::Worker {
                worker: address.clone(),
                message: format!("not a worker address: {e}"),
            })?;
            workers.push(Member {
                url,
                healthy: AtomicBool::new(false),
            });
        }
        let pool = Arc::new(WorkerPool {
            workers,
            channels: Channels::default(),
        });
        pool.check().await;
        tokio::spawn(keep_checking(Arc::downgrade(&pool)));
        Ok(pool)
    }

    /// The workers that answered the last check.
    pub fn healthy(&self) -> Vec<Url> {
        self.workers
            .iter()
            .filter(|w| w.healthy.load(Ordering::Relaxed))
            .map(|w| w.url.clone())
            .collect()
    }

    /// Every worker, healthy or not.
    pub fn all(&self) -> Vec<Url> {
        self.workers.iter().map(|w| w.url.clone()).collect()
    }

    /// Checks every worker now, not at the next periodic check: a query just lost one,
    /// and the next query must not be planned onto it.
    pub async fn check_now(&self) {
        self.check().await;
    }

    /// The resolver the distributed planner asks for workers.
    pub(crate) fn resolver(self: &Arc<Self>) -> PoolResolver {
        PoolResolver(self.clone())
    }

    /// The channel resolver tasks are sent through.
    pub(crate) fn channels(&self) -> Channels {
        self.channels.clone()
    }

    async fn check(&self) {
        let checks = self.workers.iter().map(|worker| async move {
            let answer = tokio::time::timeout(HEALTH_INTERVAL, async {
                let mut client = self.channels.get_worker_client_for_url(&worker.url).await?;
                client.get_worker_info(GetWorkerInfoRequest {}).await
            })
            .await;
            let healthy = match answer {
                Ok(Ok(info)) if info.version == WORKER_VERSION => true,
                Ok(Ok(info)) => {
                    tracing::warn!(worker = %worker.url, version = %info.version,
                        expected = WORKER_VERSION, "worker runs another hourlake version; not used");
                    false
                }
                Ok(Err(e)) => {
                    tracing::debug!(worker = %worker.url, error = %e, "worker check failed");
                    false
                }
                Err(_) => false,
            };
            let was = worker.healthy.swap(healthy, Ordering::Relaxed);
            if was != healthy {
                tracing::info!(worker = %worker.url, healthy, "worker state changed");
            }
        });
        futures::future::join_all(checks).await;
    }
}

async fn keep_checking(pool: Weak<WorkerPool>) {
    loop {
        tokio::time::sleep(HEALTH_INTERVAL).await;
        let Some(pool) = pool.upgrade() else { return };
        pool.check().await;
    }
}

/// The planner's view of the pool: the healthy workers.
#[derive(Debug, Clone)]
pub(crate) struct PoolResolver(Arc<WorkerPool>);

impl WorkerResolver for PoolResolver {
    fn get_urls(&self) -> Result<Vec<Url>, DataFusionError> {
        Ok(self.0.healthy())
    }
}

/// One lazily connecting channel per worker, with connect timeout and HTTP/2 keepalive:
/// a worker that vanishes without closing its connections fails its tasks within
/// seconds instead of at the query's deadline.
#[derive(Debug, Clone, Default)]
pub(crate) struct Channels(Arc<Mutex<HashMap<Url, Channel>>>);

impl Channels {
    fn channel(&self, url: &Url) -> Result<Channel, DataFusionError> {
        let mut channels = self
            .0
            .lock()
            .map_err(|_| DataFusionError::Internal("worker channels poisoned".into()))?;
        if let Some(channel) = channels.get(url) {
            return Ok(channel.clone());
        }
        let channel = Endpoint::from_shared(url.to_string())
            .map_err(|e| DataFusionError::Configuration(format!("worker {url}: {e}")))?
            .connect_timeout(HEALTH_INTERVAL)
            .http2_keep_alive_interval(Duration::from_secs(2))
            .keep_alive_timeout(Duration::from_secs(2))
            .keep_alive_while_idle(true)
            .tcp_nodelay(true)
            .connect_lazy();
        channels.insert(url.clone(), channel.clone());
        Ok(channel)
    }
}

#[async_trait]
impl ChannelResolver for Channels {
    async fn get_worker_client_for_url(
        &self,
        url: &Url,
    ) -> Result<Box<dyn WorkerChannel>, DataFusionError> {
        let channel = self.channel(url)?;
        Ok(create_worker_client(BoxCloneSyncChannel::new(channel)))
    }
}
