//! The HTTP server around an actix-web application: every request goes to
//! the application, except `Connection: Upgrade` requests, which actix-http
//! hands over with their socket to [`websocket::upgrade`] (the Engine.IO
//! WebSocket transport, see there why it runs on the bare socket).
//!
//! It is what `actix_web::HttpServer` builds, with the same defaults
//! (keep-alive, request and disconnect timeouts, graceful shutdown of idle
//! keep-alive connections), plus the upgrade route and `TCP_NODELAY` on
//! every connection: a server push often takes several small writes in a row
//! (a CONNECT answer and the first event, a burst of broadcasts), and with
//! Nagle on each write after the first waits for the client's delayed ACK.

use crate::websocket::{self, WsRoutes};
use actix_http::body::MessageBody;
use actix_http::{HttpService, KeepAlive, Request, Response};
use actix_service::{
    fn_service, map_config, IntoServiceFactory, Service, ServiceFactory, ServiceFactoryExt as _,
};
use actix_web::dev::AppConfig;
use std::convert::Infallible;
use std::time::Duration;

/// How the server runs.
#[derive(Debug, Clone, Copy)]
pub struct ServerOptions {
    /// Worker threads; 0 means one per CPU the process may run on.
    pub workers: usize,
    /// Seconds a graceful stop waits for open connections.
    pub shutdown_timeout_secs: u64,
}

impl Default for ServerOptions {
    /// One worker per CPU, 30 s to stop (as `actix_web::HttpServer`).
    fn default() -> Self {
        ServerOptions {
            workers: 0,
            shutdown_timeout_secs: 30,
        }
    }
}

/// Starts serving `app` (built once per worker) on `listener`, with
/// WebSocket upgrades routed by `routes`. Needs a running actix system.
pub fn serve<F, I, S, B>(
    listener: std::net::TcpListener,
    app: F,
    routes: WsRoutes,
    options: ServerOptions,
) -> std::io::Result<actix_server::Server>
where
    F: Fn() -> I + Send + Clone + 'static,
    I: IntoServiceFactory<S, Request>,
    S: ServiceFactory<Request, Config = AppConfig> + 'static,
    S::Error: Into<actix_web::Error> + 'static,
    S::InitError: std::fmt::Debug,
    S::Response: Into<Response<B>> + 'static,
    <S::Service as Service<Request>>::Future: 'static,
    S::Service: 'static,
    B: MessageBody + 'static,
{
    let mut builder = actix_server::Server::build()
        .disable_signals()
        .shutdown_timeout(options.shutdown_timeout_secs);
    if options.workers > 0 {
        builder = builder.workers(options.workers);
    }
    let shutdown = builder.graceful_shutdown_signal();
    let addr = listener.local_addr()?;
    let builder = builder.listen("huddle", listener, move || {
        let shutdown = shutdown.clone();
        let routes = routes.clone();
        let upgrade = fn_service(move |(req, framed)| {
            let routes = routes.clone();
            async move {
                if let Err(e) = websocket::upgrade(routes, req, framed).await {
                    log::debug!("websocket upgrade: {e}");
                }
                Ok::<_, Infallible>(())
            }
        });
        let app = app().into_factory().map_err(|e| e.into().error_response());
        HttpService::build()
            .keep_alive(KeepAlive::default())
            .client_request_timeout(Duration::from_secs(5))
            .client_disconnect_timeout(Duration::from_secs(1))
            .tcp_nodelay(true)
            .local_addr(addr)
            .graceful_shutdown_signal(move || {
                let shutdown = shutdown.clone();
                async move { shutdown.notified().await }
            })
            .upgrade(upgrade)
            .finish(map_config(app, |_| AppConfig::default()))
            .tcp()
    })?;
    Ok(builder.run())
}
