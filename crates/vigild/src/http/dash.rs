//! The dashboard (one page, its script and style, embedded: no build step) and the OpenAPI document.
//! The page reads the same API as anyone; on TCP, `POST /api/login` turns the token into a cookie
//! (HttpOnly, SameSite=Strict) so that the browser's EventSource, which cannot send headers, is
//! authenticated too.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::http::auth::{body_bytes, csrf, same, COOKIE};
use crate::http::call::Api;
use crate::http::errors::HttpError;

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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Login {
    token: String,
}

/// `POST /api/login {"token": ...}`: on TCP, the token as a cookie for the dashboard.
pub async fn login(State(api): State<Arc<Api>>, req: axum::extract::Request) -> Result<Response, HttpError> {
    let (parts, body) = req.into_parts();
    csrf(&parts)?;
    let bytes = body_bytes(axum::extract::Request::from_parts(parts, body), api.max_body).await?;
    let l: Login = serde_json::from_slice(&bytes)
        .map_err(|e| HttpError::bad(format!("the body is not the JSON expected: {e}")))?;
    if !api
        .token
        .as_ref()
        .is_some_and(|t| same(t.secret.as_bytes(), l.token.as_bytes()))
    {
        return Err(HttpError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the token is wrong",
        ));
    }
    // Over TLS the browser keeps the cookie to https:// pages: a plain HTTP server on another port of
    // the same host (the same site, to a browser) is not sent it.
    let secure = if api.tls { "; Secure" } else { "" };
    let cookie = format!("{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict{secure}", l.token);
    Ok((
        [(header::SET_COOKIE, cookie)],
        axum::Json(serde_json::json!({ "ok": true })),
    )
        .into_response())
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
