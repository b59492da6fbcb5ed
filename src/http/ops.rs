//! Operations endpoints: `/health` says the process is alive; `/ready` says
//! whether its dependencies answer, so a load balancer can route around a
//! node whose store is down. The document store and the blob store are
//! required (503 when one fails). Redis, when configured, is checked too but
//! only degrades the answer: without it the node still serves its own clients
//! (limits and delivery fall back to the node), so taking it out of the load
//! balancer would only make things worse.

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

/// Runs one readiness check with the timeout: `"ok"`, `"error"` or `"timeout"`.
async fn check<E: std::error::Error + 'static>(
    what: &str,
    probe: impl std::future::Future<Output = Result<(), E>>,
) -> &'static str {
    match tokio::time::timeout(CHECK_TIMEOUT, probe).await {
        Ok(Ok(())) => "ok",
        Ok(Err(err)) => {
            log::warn!(
                "readiness: {what} ping failed: {}",
                crate::error::cause_chain(&err)
            );
            "error"
        }
        Err(_) => {
            log::warn!("readiness: {what} ping timed out after {CHECK_TIMEOUT:?}");
            "timeout"
        }
    }
}

/// `GET /ready`: 200 `{ status: "ok", checks: { store: "ok", blobs: "ok",
/// redis: "ok" } }` (`redis` only when configured); 200 with status
/// `degraded` and `degraded: ["redis"]` when only Redis fails; 503 with the
/// failing checks and the contract's error object when the document or blob
/// store fails.
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let redis = async {
        match &state.redis {
            Some(r) => Some(check("redis", r.ping()).await),
            None => None,
        }
    };
    // The probes run side by side, so a slow one costs its timeout once.
    let (store, blobs, redis) = futures_util::join!(
        check("store", state.store.ping()),
        check("blob store", state.blobs.ping()),
        redis
    );
    let mut checks = json!({ "store": store, "blobs": blobs });
    if let Some(redis) = redis {
        checks["redis"] = json!(redis);
    }
    if store == "ok" && blobs == "ok" {
        match redis {
            Some(r) if r != "ok" => HttpResponse::Ok().json(json!({
                "status": "degraded",
                "checks": checks,
                "degraded": ["redis"],
            })),
            _ => HttpResponse::Ok().json(json!({ "status": "ok", "checks": checks })),
        }
    } else {
        HttpResponse::ServiceUnavailable().json(json!({
            "status": "unavailable",
            "checks": checks,
            "error": { "code": "unavailable", "message": "a dependency is not reachable" },
        }))
    }
}
