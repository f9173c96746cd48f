//! The operator console: one page at `/ui/` (`index.html`, `app.js`, `style.css` under
//! `src/admin/ui/`), compiled into the binary. Plain JavaScript, no framework, no build step,
//! nothing fetched from elsewhere: it works offline, on the admin listener alone.
//!
//! The assets hold no data and need no token. The page asks the operator for the admin
//! token, keeps it in a JavaScript variable only (never storage, cookies or the URL), and
//! sends it as `Authorization: Bearer` on every `/api/v1/...` call it makes.
//!
//! Every answer carries a strict `Content-Security-Policy` (scripts, styles and connections
//! to this origin only, no inline code, no framing): the page renders attacker-influenced
//! text (paths, client ids, evidence), always as text, and the policy is the second wall.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// The page's policy: this origin only, no inline script or style, never in a frame.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; connect-src 'self'; img-src 'self' data:; \
     style-src 'self'; script-src 'self'; frame-ancestors 'none'";

const INDEX_HTML: &str = include_str!("ui/index.html");
const APP_JS: &str = include_str!("ui/app.js");
const STYLE_CSS: &str = include_str!("ui/style.css");

/// `/ui/` and its assets; `/ui` redirects to `/ui/`. No state, no token.
pub fn router() -> Router {
    Router::new()
        .route("/ui", get(redirect))
        .route("/ui/", get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }))
        .route("/ui/app.js", get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }))
        .route("/ui/style.css", get(|| async { asset("text/css; charset=utf-8", STYLE_CSS) }))
}

/// A relative `Location` (`ui/` from `/ui`), so the console also works behind a reverse
/// proxy that mounts gatewatch under a path prefix.
async fn redirect() -> Response {
    let mut r = axum::response::Redirect::permanent("ui/").into_response();
    secure(&mut r);
    r
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut r = ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache")], body).into_response();
    secure(&mut r);
    r
}

fn secure(r: &mut Response) {
    let h = r.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
}
