//! The relay's small HTTP side on `metrics_listen`: `/metrics` (Prometheus text format),
//! `/health` (liveness) and `/ready` (SPEC 3.2: 200 while accepting new allocations, 503
//! once shutting down).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::metrics::Metrics;

/// Whether the relay accepts new allocations (`/ready`).
#[derive(Debug, Default)]
pub struct Readiness(AtomicBool);

impl Readiness {
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::SeqCst);
    }

    #[must_use]
    pub fn get(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// The router, testable with `oneshot`.
pub fn app(metrics: Arc<Metrics>, ready: Arc<Readiness>) -> Router {
    let metrics_routes = Router::new()
        .route("/metrics", get(render))
        .with_state(metrics);
    Router::new()
        .route("/health", get(|| async { "ok\n" }))
        .route("/ready", get(readiness))
        .with_state(ready)
        .merge(metrics_routes)
}

async fn readiness(State(ready): State<Arc<Readiness>>) -> impl IntoResponse {
    if ready.get() {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: starting or shutting down\n",
        )
    }
}

async fn render(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.encode(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt as _;

    async fn status(app: Router, path: &str) -> StatusCode {
        app.oneshot(Request::get(path).body(Body::empty()).expect("request"))
            .await
            .expect("answer")
            .status()
    }

    #[tokio::test]
    async fn ready_follows_the_flag_and_health_does_not() {
        let ready = Arc::new(Readiness::default());
        let app = || app(Arc::new(Metrics::new()), ready.clone());
        assert_eq!(
            status(app(), "/ready").await,
            StatusCode::SERVICE_UNAVAILABLE
        );
        ready.set(true);
        assert_eq!(status(app(), "/ready").await, StatusCode::OK);
        ready.set(false);
        assert_eq!(
            status(app(), "/ready").await,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(status(app(), "/health").await, StatusCode::OK);
        assert_eq!(status(app(), "/metrics").await, StatusCode::OK);
    }
}
