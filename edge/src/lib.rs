//! natter-edge: the relay every client touches.
//!
//! An edge holds client connections (TCP, TLS, WebSocket), authenticates them, routes each
//! request to the broker that owns its key on the ring over one multiplexed link per broker,
//! and writes answers and deliveries back under a bounded outbound budget. It also serves the
//! HTTP API (health, metrics, backend API, dev tokens, the web client).
//!
//! The protocol logic is sans-IO ([`session`], [`outbound`], [`limits`], [`auth`]); the rest
//! drives it with tokio. Start with [`Edge::bind`] then [`Edge::run`]:
//!
//! ```no_run
//! # async fn example(connector: impl natter_edge::Connector) -> std::io::Result<()> {
//! let config = natter_edge::EdgeConfig::default();
//! let edge = natter_edge::Edge::bind(config, connector).await?;
//! println!("tcp on {:?}", edge.tcp_addr());
//! edge.run(async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```

pub mod admin;
pub mod auth;
pub mod config;
mod connection;
mod http;
mod http_listener;
mod hub;
pub mod limits;
mod link;
mod listener;
pub mod metrics;
pub mod mqtt;
pub mod outbound;
pub mod router;
pub mod session;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_rustls::TlsAcceptor;
use tracing::info;

pub use auth::{AuthError, Claims, TokenKeys};
pub use config::{EdgeConfig, TokenKey};
pub use link::{BoxedStream, ConnectFuture, Connector, LinkStream, TcpConnector};
pub use metrics::Metrics;

use crate::hub::Hub;
use crate::router::Router;

/// A cheap handle on a running edge.
#[derive(Debug, Clone)]
pub struct EdgeHandle {
    hub: Arc<Hub>,
}

impl EdgeHandle {
    /// Whether every broker link is up and the edge is not draining (what `/readyz` says).
    pub fn is_ready(&self) -> bool {
        self.hub.is_ready()
    }

    /// Waits until [`EdgeHandle::is_ready`]; links come up once [`Edge::run`] has started.
    pub async fn wait_ready(&self) {
        while !self.is_ready() {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
}

/// An edge whose listeners are bound; [`Edge::run`] serves them.
pub struct Edge {
    hub: Arc<Hub>,
    connector: Arc<dyn Connector>,
    link_queues: Vec<mpsc::Receiver<natter_codec::Frame>>,
    tcp: Option<TcpListener>,
    tls: Option<(TcpListener, TlsAcceptor)>,
    http: Option<TcpListener>,
    mqtt: Option<TcpListener>,
}

impl std::fmt::Debug for Edge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Edge")
            .field("node", &self.hub.config.node_id)
            .field("tcp", &self.tcp_addr())
            .field("tls", &self.tls_addr())
            .field("http", &self.http_addr())
            .field("mqtt", &self.mqtt_addr())
            .finish()
    }
}

impl Edge {
    /// Validates the configuration and binds every configured listener (port 0 picks a free
    /// port; read it back with the `*_addr` methods). Links start with [`Edge::run`].
    pub async fn bind(config: EdgeConfig, connector: impl Connector) -> io::Result<Self> {
        let invalid =
            |message: &str| io::Error::new(io::ErrorKind::InvalidInput, message.to_string());
        let keys = TokenKeys::new(config.token_keys.clone())
            .ok_or_else(|| invalid("edge.token_keys is empty: no token could be verified"))?;
        if config.cluster.brokers.is_empty() {
            return Err(invalid("edge.cluster.brokers is empty"));
        }
        let mut config = config;
        config.limits.resolve();
        info!(
            max_connections = config.limits.max_connections,
            max_http_connections = config.limits.http_connections(),
            "connection limits"
        );
        let max_frame = config.limits.max_frame_size;
        if !(1024..=natter_codec::MAX_FRAME_SIZE_CAP).contains(&max_frame) {
            return Err(invalid(
                "edge.limits.max_frame_size must be between 1 KiB and 16 MiB",
            ));
        }
        let router = Router::new(
            config.cluster.ring_version,
            config.cluster.brokers.clone(),
            config.cluster.vnodes,
        );
        let metrics = Metrics::new().map_err(io::Error::other)?;
        metrics.ring_version.set(router.version() as i64);
        let (links, link_queues) = link::handles(router.brokers(), config.limits.link_queue);
        for link in &links {
            metrics.link_up.with_label_values(&[&link.broker]).set(0);
        }
        let tcp = config.tcp.map(listener::bind_tcp).transpose()?;
        let tls = match (config.tls, &config.tls_cert, &config.tls_key) {
            (None, ..) => None,
            (Some(addr), Some(cert), Some(key)) => {
                let acceptor = listener::tls_acceptor(cert, key, config.tls_client_ca.as_deref())?;
                Some((listener::bind_tcp(addr)?, acceptor))
            }
            (Some(_), ..) => return Err(invalid("edge.tls needs edge.tls_cert and edge.tls_key")),
        };
        let http = config.http.map(listener::bind_tcp).transpose()?;
        let mqtt = config.mqtt.map(listener::bind_tcp).transpose()?;
        let hub = Arc::new(Hub::new(config, keys, router, metrics, links));
        Ok(Self {
            hub,
            connector: Arc::new(connector),
            link_queues,
            tcp,
            tls,
            http,
            mqtt,
        })
    }

    /// The bound native TCP address.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The bound TLS address.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls.as_ref().and_then(|(l, _)| l.local_addr().ok())
    }

    /// The bound HTTP address.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The bound MQTT address.
    pub fn mqtt_addr(&self) -> Option<SocketAddr> {
        self.mqtt.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The edge's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.hub.metrics
    }

    /// Adds a section to `GET /v1/admin/server` under `name`, computed on each request on a
    /// blocking thread (`natter serve` adds its broker's state as `broker`). A section never
    /// replaces a built-in field.
    pub fn admin_section(
        &self,
        name: &str,
        section: impl Fn() -> serde_json::Value + Send + Sync + 'static,
    ) {
        self.hub.admin.add(name, Arc::new(section));
    }

    /// A handle that outlives [`Edge::run`]'s borrow of the edge, to watch readiness.
    pub fn handle(&self) -> EdgeHandle {
        EdgeHandle {
            hub: self.hub.clone(),
        }
    }

    /// Mints a token with the edge's signing key (for `natter token` and tests).
    pub fn mint(&self, user: &str, device: &str, expires_at: u64) -> String {
        self.hub.keys.mint(user, device, expires_at)
    }

    /// Serves until `shutdown` completes, then drains: every client gets
    /// GOAWAY(SHUTTING_DOWN), accepting stops, requests in flight are answered (for at most
    /// `timing.drain_ms`), connections close, and finally the links close.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> io::Result<()> {
        let hub = self.hub;
        let (stop_clients, clients_stop) = watch::channel(false);
        let (stop_links, links_stop) = watch::channel(false);
        let (tracker, mut all_done) = mpsc::channel::<()>(1);
        let permits = Arc::new(Semaphore::new(hub.config.limits.max_connections));

        hub.metrics
            .outbound_budget_bytes
            .set(hub.config.limits.outbound_total_budget as i64);
        let shedder = tokio::spawn({
            let hub = hub.clone();
            async move {
                loop {
                    hub.over_budget.notified().await;
                    hub.shed();
                }
            }
        });
        let mut links = Vec::new();
        for (index, queue) in self.link_queues.into_iter().enumerate() {
            links.push(tokio::spawn(link::run(
                hub.clone(),
                index,
                queue,
                self.connector.clone(),
                links_stop.clone(),
            )));
        }
        if let Some(listener) = self.tcp {
            tokio::spawn(listener::accept_loop(
                hub.clone(),
                listener,
                None,
                permits.clone(),
                tracker.clone(),
                clients_stop.clone(),
            ));
        }
        if let Some((listener, acceptor)) = self.tls {
            tokio::spawn(listener::accept_loop(
                hub.clone(),
                listener,
                Some(acceptor),
                permits.clone(),
                tracker.clone(),
                clients_stop.clone(),
            ));
        }
        if let Some(listener) = self.mqtt {
            tokio::spawn(mqtt::accept_loop(
                hub.clone(),
                listener,
                permits.clone(),
                tracker.clone(),
                clients_stop.clone(),
            ));
        }
        let http = self.http.map(|listener| {
            let app = http::router(
                hub.clone(),
                permits.clone(),
                tracker.clone(),
                clients_stop.clone(),
            );
            tokio::spawn(http_listener::serve(
                hub.clone(),
                listener,
                app,
                permits.clone(),
                clients_stop.clone(),
            ))
        });
        drop(tracker);

        shutdown.await;
        info!(node = hub.config.node_id, "draining");
        hub.draining.store(true, Ordering::Release);
        let _ = stop_clients.send(true);
        // Every connection task holds a tracker clone; recv returns None once all have ended.
        let _ = all_done.recv().await;
        if let Some(http) = http {
            let _ = http.await;
        }
        let _ = stop_links.send(true);
        for link in links {
            let _ = link.await;
        }
        shedder.abort();
        info!(node = hub.config.node_id, "drained");
        Ok(())
    }
}
