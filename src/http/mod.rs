//! The HTTP surface of huddle outside the socket engine: `/health`, `/ready`,
//! `/metrics` and the JSON API under `/api/v1` (accounts, conversations, chat history,
//! uploads, files and download links).
//!
//! [`configure`] mounts everything on an actix `App` or `ServiceConfig`; it
//! expects `web::Data<AppState>` as app data. It also installs the pieces
//! that keep every answer in the contract's shape: extractor error handlers
//! (bad JSON, query or path → `bad_request`), a JSON body size limit, JSON 405
//! on known paths and a JSON 404 default service, and the rate-limit
//! middleware on the API scope (operations endpoints are never limited, so
//! load balancer probes always get through).

pub mod accounts;
pub mod conversations;
pub mod files;
pub mod metrics;
pub mod notifications;
pub mod ops;
pub mod publish;
pub mod tasks;
pub mod workspaces;

use crate::error::{json_config, method_not_allowed, not_found, path_config, query_config};
use crate::ratelimit::{auth_limits, http_limits};
use actix_web::middleware::from_fn;
use actix_web::{web, Resource};

/// CORS for browsers on other origins: the listed origins may call the API
/// and open sockets with credentials; with none listed, only the same origin
/// (no CORS headers at all).
pub fn cors(origins: &[String]) -> actix_cors::Cors {
    let mut cors = actix_cors::Cors::default()
        .allow_any_method()
        .allow_any_header()
        .supports_credentials()
        .max_age(3600);
    for origin in origins {
        if origin == "*" {
            cors = cors.allow_any_origin().send_wildcard();
        } else {
            cors = cors.allowed_origin(origin);
        }
    }
    cors
}

/// A resource whose other methods answer a JSON 405.
fn resource(path: &str) -> Resource {
    web::resource(path).default_service(web::to(method_not_allowed))
}

/// The collaboration routes of contract section 7 (workspaces, members,
/// projects, tasks, comments, search, notifications), relative to `/api/v1`.
fn collaboration(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("/workspaces")
            .route(web::post().to(workspaces::create))
            .route(web::get().to(workspaces::list)),
    )
    .service(resource("/workspaces/{id}").route(web::get().to(workspaces::get)))
    .service(
        resource("/workspaces/{id}/members")
            .route(web::get().to(workspaces::members))
            .route(web::post().to(workspaces::add_member)),
    )
    .service(
        resource("/workspaces/{id}/members/{user}")
            .route(web::patch().to(workspaces::change_role))
            .route(web::delete().to(workspaces::remove_member)),
    )
    .service(
        resource("/workspaces/{id}/projects")
            .route(web::post().to(workspaces::create_project))
            .route(web::get().to(workspaces::projects)),
    )
    .service(resource("/workspaces/{id}/search").route(web::get().to(tasks::search)))
    .service(
        resource("/projects/{id}/tasks")
            .route(web::post().to(tasks::create))
            .route(web::get().to(tasks::list)),
    )
    .service(
        resource("/tasks/{id}")
            .route(web::get().to(tasks::get))
            .route(web::patch().to(tasks::update))
            .route(web::delete().to(tasks::delete)),
    )
    .service(resource("/tasks/{id}/attachments").route(web::post().to(tasks::attach)))
    .service(
        resource("/tasks/{id}/comments")
            .route(web::post().to(tasks::create_comment))
            .route(web::get().to(tasks::comments)),
    )
    .service(
        resource("/comments/{id}")
            .route(web::patch().to(tasks::update_comment))
            .route(web::delete().to(tasks::delete_comment)),
    )
    .service(resource("/notifications").route(web::get().to(notifications::list)))
    .service(resource("/notifications/read-all").route(web::post().to(notifications::read_all)))
    .service(resource("/notifications/{id}/read").route(web::post().to(notifications::read)));
}

/// Mounts `/health`, `/ready` and `/api/v1/...`, and a JSON 404 for unknown
/// routes (this sets the default service of the app it is configured on).
pub fn configure(cfg: &mut web::ServiceConfig) {
    configure_with(cfg, |_| {});
}

/// Like [`configure`], with more routes mounted inside the `/api/v1` scope
/// (paths relative to it, e.g. `/publish`), so they share its rate limits and
/// error handling; a separate `/api/v1/...` service registered after
/// `configure` would never be reached, because this scope answers 404 first.
pub fn configure_with(
    cfg: &mut web::ServiceConfig,
    api_extra: impl FnOnce(&mut web::ServiceConfig),
) {
    cfg.service(resource("/health").route(web::get().to(ops::health)))
        .service(resource("/ready").route(web::get().to(ops::ready)))
        .service(resource("/metrics").route(web::get().to(metrics::metrics)))
        .service(
            web::scope("/api/v1")
                .app_data(json_config())
                .app_data(query_config())
                .app_data(path_config())
                .wrap(from_fn(http_limits))
                .service(
                    resource("/auth/register")
                        .wrap(from_fn(auth_limits))
                        .route(web::post().to(accounts::register)),
                )
                .service(
                    resource("/auth/login")
                        .wrap(from_fn(auth_limits))
                        .route(web::post().to(accounts::login)),
                )
                .service(resource("/auth/refresh").route(web::post().to(accounts::refresh)))
                .service(resource("/auth/me").route(web::get().to(accounts::me)))
                .service(
                    resource("/conversations")
                        .route(web::post().to(conversations::create))
                        .route(web::get().to(conversations::list)),
                )
                .service(
                    resource("/conversations/{id}/messages")
                        .route(web::get().to(conversations::history)),
                )
                .service(resource("/uploads").route(web::post().to(files::upload)))
                .service(resource("/files/{id}").route(web::get().to(files::metadata)))
                .service(resource("/files/{id}/content").route(web::get().to(files::content)))
                .service(
                    resource("/files/{id}/download-token")
                        .route(web::post().to(files::download_token)),
                )
                .service(resource("/dl/{token}").route(web::get().to(files::by_token)))
                .service(resource("/publish").route(web::post().to(publish::publish)))
                .configure(collaboration)
                .configure(api_extra)
                .default_service(web::to(not_found)),
        )
        .default_service(web::to(not_found));
}

/// The HTML test page: `dir/index.html` at `/`, its assets under `/`.
/// Register it after [`configure`]: it matches every path, so the API scope,
/// the socket transport and the health endpoints must come first; a path it
/// does not hold still gets the contract's JSON 404.
pub fn static_files(dir: &std::path::Path) -> actix_files::Files {
    actix_files::Files::new("/", dir)
        .index_file("index.html")
        .use_etag(true)
        .use_last_modified(true)
        .default_handler(web::to(not_found))
}
