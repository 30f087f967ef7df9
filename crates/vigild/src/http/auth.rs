//! Who asks, and whether a request may act at all: the peer's credentials on the Unix socket, the
//! bearer token on TCP, in the `Authorization` header only (never a cookie: a browser sends a host's
//! cookies to every port of it, docs/http.md); and the checks that keep another web site from making a
//! browser act for its user (CSRF). A header-carried token is itself safe from CSRF, since another site
//! cannot make a browser add it; besides, a request that changes anything must be JSON (which a
//! cross-site form cannot send without a preflight vigild never grants) and, when the browser names its
//! Origin, come from the page's own origin.

use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, Method, StatusCode};
use serde::de::DeserializeOwned;

use crate::http::bounds::body_bytes;
use crate::http::call::{Api, Peer, Session};
use crate::http::errors::HttpError;

/// The caller of a request, checked.
#[derive(Debug, Clone, Copy)]
pub struct Asker {
    pub uid: u32,
    pub gid: u32,
    pub pid: Option<i32>,
}

impl Asker {
    pub fn session(&self, api: &Arc<Api>) -> Session {
        api.session(self.uid, self.gid, self.pid)
    }
}

/// Whether `shown` is `secret`, in time that depends on neither where they differ nor how long
/// `shown` is (only on the secret's length).
pub fn same(shown: &[u8], secret: &[u8]) -> bool {
    let differ = secret
        .iter()
        .enumerate()
        .fold(u8::from(shown.len() != secret.len()), |acc, (i, s)| {
            acc | (s ^ shown.get(i).copied().unwrap_or(0))
        });
    differ == 0
}

/// The token a request shows, from `Authorization: Bearer` (a cookie is not looked at).
fn shown_token(parts: &Parts) -> Option<&str> {
    let v = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Whom a request acts as, or why it may not act.
pub fn asker(parts: &Parts, api: &Api) -> Result<Asker, HttpError> {
    let peer = parts
        .extensions
        .get::<Peer>()
        .copied()
        .ok_or_else(|| HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "no peer"))?;
    match peer {
        Peer::Unix { uid, gid, pid } => Ok(Asker { uid, gid, pid }),
        Peer::Tcp => {
            let token = api
                .token
                .as_ref()
                .ok_or_else(|| HttpError::new(StatusCode::UNAUTHORIZED, "unauthorized", "no token is configured"))?;
            match shown_token(parts) {
                Some(t) if same(t.as_bytes(), token.secret.as_bytes()) => Ok(Asker {
                    uid: token.uid,
                    gid: token.gid,
                    pid: None,
                }),
                Some(_) => Err(HttpError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "the bearer token is wrong",
                )),
                None => Err(HttpError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "a bearer token is needed on TCP: send `Authorization: Bearer TOKEN` (the content of \
                     [http] token_file)",
                )),
            }
        }
    }
}

/// Refuses a request that changes something unless it is JSON from the page's own origin.
pub fn csrf(parts: &Parts) -> Result<(), HttpError> {
    if matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    let json = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
        });
    if !json {
        return Err(HttpError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!(
                "{} needs `Content-Type: application/json` (even without a body): it keeps other web sites from \
                 sending it through a browser",
                parts.method
            ),
        ));
    }
    if let Some(origin) = parts.headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let host = parts
            .headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let own = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .is_some_and(|o| o == host);
        if !own {
            return Err(HttpError::new(
                StatusCode::FORBIDDEN,
                "cross_origin",
                format!("a request from origin {origin} may not change anything on {host}"),
            ));
        }
    }
    Ok(())
}

impl FromRequestParts<Arc<Api>> for Asker {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, api: &Arc<Api>) -> Result<Asker, HttpError> {
        let a = asker(parts, api)?;
        csrf(parts)?;
        Ok(a)
    }
}

/// A JSON body within `[http] max_body_bytes` and `[daemon] frame_timeout`, parsed with errors that say
/// what is wrong.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<Arc<Api>> for JsonBody<T> {
    type Rejection = HttpError;

    async fn from_request(req: Request, api: &Arc<Api>) -> Result<JsonBody<T>, HttpError> {
        let bytes = body_bytes(req, api).await?;
        let bytes = if bytes.iter().all(u8::is_ascii_whitespace) {
            &b"{}"[..]
        } else {
            &bytes[..]
        };
        serde_json::from_slice(bytes)
            .map(JsonBody)
            .map_err(|e| HttpError::bad(format!("the body is not the JSON expected: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::same;

    #[test]
    fn same_only_for_the_very_secret() {
        let secret = b"0123456789abcdef";
        assert!(same(secret, secret));
        for shown in [
            &b""[..],
            b"0123456789abcde",
            b"0123456789abcdeF",
            b"0123456789abcdef0",
            b"\0",
        ] {
            assert!(!same(shown, secret), "{shown:?}");
        }
    }
}
