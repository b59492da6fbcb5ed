//! Operations endpoints: `/health` says the process is alive; `/ready` says
//! whether its dependencies answer, so a load balancer can route around a
//! node whose store is down. Only the document store exists in this
//! milestone; Redis and the blob store join the `checks` map when they land.

use crate::state::AppState;
use actix_web::{web, HttpResponse};
use serde_json::json;
use std::time::Duration;

/// How long a dependency may take to answer a readiness probe.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// `GET /health`: 200 `{ status: "ok" }` while the process serves requests.
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// `GET /ready`: 200 `{ status: "ok", checks: { store: "ok" } }`, or 503 with
/// the failing check and the contract's error object.
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let store = match tokio::time::timeout(CHECK_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => "ok",
        Ok(Err(err)) => {
            log::warn!(
                "readiness: store ping failed: {}",
                crate::error::cause_chain(&err)
            );
            "error"
        }
        Err(_) => {
            log::warn!("readiness: store ping timed out after {CHECK_TIMEOUT:?}");
            "timeout"
        }
    };
    if store == "ok" {
        HttpResponse::Ok().json(json!({ "status": "ok", "checks": { "store": "ok" } }))
    } else {
        HttpResponse::ServiceUnavailable().json(json!({
            "status": "unavailable",
            "checks": { "store": store },
            "error": { "code": "unavailable", "message": "the document store is not reachable" },
        }))
    }
}
