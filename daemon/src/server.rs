//! The running daemon: its HTTP listeners, and the order of a graceful shutdown.

use std::net::SocketAddr;

use actors::Catalog;
use actors::cluster::Membership;
use actors::cluster::bus::Bus;
use actors::health::HealthEngine;
use actors::registry::PluginRegistry;
use actors::sinks::Sinks;
use poem::listener::{Acceptor, Listener, TcpListener};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::{Error, SHUTDOWN_GRACE};

/// A started daemon.
pub struct Running {
    /// The listener of `/metrics`, when it has one of its own (`[telemetry] metrics_listen`).
    pub(crate) metrics: Option<Server>,
    /// The administrator key generated at this start, if one was; the caller shows it once.
    pub generated_admin_key: Option<String>,
    pub(crate) server: Server,
    pub(crate) shutdown_streams: tokio::sync::watch::Sender<bool>,
    pub(crate) catalog: Catalog,
    pub(crate) catalog_handle: JoinHandle<()>,
    pub(crate) health: Option<HealthEngine>,
    /// The event sinks that run (webhooks, NATS), stopped after the engine.
    pub(crate) sinks: Sinks,
    pub(crate) plugins: PluginRegistry,
    pub(crate) plugins_handle: JoinHandle<()>,
    /// This replica's leases, in a cluster; released last, once nothing acts on them.
    pub(crate) membership: Option<Membership>,
    /// What the replicas tell each other, and the signal that stops it.
    pub(crate) bus: Option<(tokio::sync::watch::Sender<bool>, Bus)>,
    /// The SQLite single-process lock, released when the daemon stops.
    pub(crate) _sqlite_lock: Option<std::fs::File>,
    /// Applies a configuration read again (on `SIGHUP`).
    pub(crate) reloader: crate::reload::Reloader,
}

impl Running {
    /// Where the HTTP server listens (the real port when configured with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.server.addr
    }

    /// Where `/metrics` is served when it has a listener of its own (the real port when
    /// configured with port 0); `None` when it is served at [`Running::local_addr`].
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|m| m.addr)
    }

    /// Applies what can change without a restart of a configuration read again (the API
    /// keys, the JWT settings, the log filter), or refuses it; see [`crate::reload`].
    pub fn reload(&self, loaded: Result<crate::config::Config, crate::config::ConfigError>) {
        self.reloader.reload(loaded);
    }

    /// Stops accepting connections, lets in-flight requests finish, then stops the actors.
    ///
    /// # Errors
    /// When the server failed while running.
    pub async fn shutdown(self) -> Result<(), Error> {
        let metrics = self.metrics.map(Server::stop);
        let main = self.server.stop();
        self.shutdown_streams.send_replace(true);
        let served = main.await;
        let metrics_served = match metrics {
            Some(stopped) => stopped.await,
            None => Ok(()),
        };
        self.catalog.stop();
        let _ = self.catalog_handle.await;
        if let Some(health) = &self.health {
            health.stop().await;
        }
        self.sinks.stop().await;
        if let Some((stop, bus)) = self.bus {
            let _ = stop.send(true);
            bus.join().await;
        }
        if let Some(membership) = self.membership {
            membership.stop().await;
        }
        self.plugins.stop();
        let _ = self.plugins_handle.await;
        served.and(metrics_served).map_err(Error::Serve)
    }

    /// Runs until `signal` completes, then shuts down gracefully.
    ///
    /// # Errors
    /// See [`Running::shutdown`].
    pub async fn serve_until(self, signal: impl Future<Output = ()>) -> Result<(), Error> {
        self.serve_reloading(signal, futures::stream::pending(), || {
            unreachable!("no reload is asked for")
        })
        .await
    }

    /// Runs until `signal` completes, applying `load()` each time `reloads` yields (on
    /// `SIGHUP`, in the binary), then shuts down gracefully.
    ///
    /// # Errors
    /// See [`Running::shutdown`].
    pub async fn serve_reloading(
        self,
        signal: impl Future<Output = ()>,
        reloads: impl futures::Stream<Item = ()>,
        load: impl Fn() -> Result<crate::config::Config, crate::config::ConfigError>,
    ) -> Result<(), Error> {
        use futures::StreamExt as _;
        tokio::pin!(signal);
        tokio::pin!(reloads);
        loop {
            tokio::select! {
                () = &mut signal => break,
                Some(()) = reloads.next() => {
                    tracing::info!(message = "Reloading the configuration.");
                    self.reload(load());
                }
            }
        }
        tracing::info!(message = "Shutting down.");
        self.shutdown().await
    }
}

/// One HTTP listener and the task serving it.
pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), std::io::Error>>,
}

/// A bound listener, not yet served.
pub(crate) struct Bound {
    acceptor: poem::listener::TcpAcceptor,
    addr: SocketAddr,
}

impl Bound {
    pub(crate) async fn bind(listen: SocketAddr) -> Result<Self, Error> {
        let acceptor = TcpListener::bind(listen)
            .into_acceptor()
            .await
            .map_err(|source| Error::Listen {
                addr: listen,
                source,
            })?;
        let addr = acceptor
            .local_addr()
            .first()
            .and_then(|a| a.as_socket_addr().copied())
            .unwrap_or(listen);
        Ok(Self { acceptor, addr })
    }

    /// Serves `app` here until stopped.
    pub(crate) fn serve(self, app: impl poem::Endpoint + 'static) -> Server {
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            poem::Server::new_with_acceptor(self.acceptor)
                .run_with_graceful_shutdown(
                    app,
                    async move {
                        let _ = stopped.await;
                    },
                    Some(SHUTDOWN_GRACE),
                )
                .await
        });
        Server {
            addr: self.addr,
            stop,
            task,
        }
    }
}

impl Server {
    /// Stops accepting connections; the returned future ends when in-flight requests have.
    fn stop(self) -> impl Future<Output = Result<(), std::io::Error>> {
        let _ = self.stop.send(());
        async move {
            match self.task.await {
                Ok(result) => result,
                Err(join) => Err(std::io::Error::other(join)),
            }
        }
    }
}
