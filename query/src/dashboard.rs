//! `GET /`: the live dashboard — one self-contained page (no CDN: it works offline)
//! built only on the public SQL API it is served beside, so it doubles as a reference
//! client. Serving it needs no token; its queries send the one the user enters.

use axum::http::header;
use axum::response::IntoResponse;

/// The page (inline CSS, JS and hand-drawn SVG charts).
const PAGE: &str = include_str!("dashboard/index.html");

/// What its queries may reach: this server only.
const POLICY: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                      img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
                      frame-ancestors 'none'";

/// The dashboard page.
pub(crate) async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONTENT_SECURITY_POLICY, POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        PAGE,
    )
}
