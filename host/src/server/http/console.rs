//! The web console: one page and its script, embedded in the binary (no Node build step),
//! served at `/`. It reads the same JSON API as everyone else, with the same token.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use super::App;

const INDEX: &str = include_str!("console/index.html");
const SCRIPT: &str = include_str!("console/app.js");
const STYLE: &str = include_str!("console/style.css");

/// `/`, `/console/app.js`, `/console/style.css`.
pub(super) fn router() -> Router<App> {
    Router::new()
        .route("/", get(|| async { asset("text/html; charset=utf-8", INDEX) }))
        .route("/console/app.js", get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }))
        .route("/console/style.css", get(|| async { asset("text/css; charset=utf-8", STYLE) }))
}

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    // Assets change with the binary only; a short cache keeps upgrades visible.
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "max-age=60")], body)
}
