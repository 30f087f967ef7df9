//! The dashboard (one page, its script and style, embedded: no build step) and the OpenAPI document.
//! The page reads the same API as anyone; on TCP it asks for the token, keeps it for the tab
//! (sessionStorage) and sends it in the `Authorization` header of every request, the event stream's
//! included (read with `fetch`, since EventSource cannot send headers). No cookie: a browser would send
//! it to every port of the host (docs/http.md).

use axum::http::header;
use axum::response::{IntoResponse, Response};

const INDEX: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/dash.js");
const STYLE: &str = include_str!("assets/dash.css");
const OPENAPI: &str = include_str!("assets/openapi.json");

/// What a page may do: only this origin's script and style, no framing by another site.
const CSP: &str = "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

fn asset(ty: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, ty),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

pub async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX)
}

pub async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

pub async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

pub async fn openapi() -> Response {
    asset("application/json", OPENAPI)
}

#[cfg(test)]
mod tests {
    /// The OpenAPI document is JSON and names every route the router serves (a drift check).
    #[test]
    fn openapi_names_every_route() {
        let doc: serde_json::Value = serde_json::from_str(super::OPENAPI).expect("openapi.json is JSON");
        let paths = doc["paths"].as_object().expect("paths");
        let src = include_str!("mod.rs");
        let mut n = 0;
        for line in src.lines() {
            let Some(rest) = line
                .trim()
                .strip_prefix(".route(\"")
                .or_else(|| line.trim().strip_prefix("\"/"))
            else {
                continue;
            };
            let path = rest.split('"').next().unwrap_or_default();
            let path = if line.trim().starts_with("\"/") {
                format!("/{path}")
            } else {
                path.to_string()
            };
            if matches!(path.as_str(), "/" | "/dash.js" | "/dash.css") {
                continue;
            }
            let path = path.replace("{*", "{");
            assert!(paths.contains_key(&path), "{path} is served but not in openapi.json");
            n += 1;
        }
        assert!(n >= 20, "found only {n} routes in http/mod.rs");
    }
}
