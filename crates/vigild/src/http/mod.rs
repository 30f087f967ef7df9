//! The HTTP API (docs/http.md): REST over JSON for what the CLI does, Server-Sent Events, `/metrics`,
//! and the dashboard, served on `http.sock` in the state dir (the caller is the peer, from
//! SO_PEERCRED, as on the main socket) and, if configured, on TCP with a bearer token, over TLS when
//! `[http] tls_cert` and `tls_key` are set ([`tls`]).
//!
//! Requests reach the loop as socket requests do ([`call`]); nothing here holds state of its own but
//! counts. Connections are held to the main socket's bounds, in the same accounts
//! ([`crate::conn::Admission`]): a uid's HTTP connections count in its one share of `[daemon]
//! max_connections_per_uid` and `max_connections` (root and vigild's own uid exempt), their request
//! bodies in its one budget of `request_bytes_per_uid`; a body must arrive within `frame_timeout` (and
//! be no larger than `[http] max_body_bytes`), a request's head within `hello_timeout`, and a client
//! that reads nothing of an answer or a stream for `send_timeout` is dropped ([`bounds`]).

pub mod auth;
pub mod bounds;
pub mod call;
pub mod dash;
pub mod errors;
pub mod json;
pub mod metrics;
pub mod routes;
pub mod sse;
pub mod tls;

use std::future::Future;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::{get, post, put};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UnixListener};
use tower::ServiceExt;
use tracing::{debug, warn};

use crate::http::call::{Api, Peer, Token};
use crate::http::tls::Handshake;

/// Every route.
pub fn router(api: Arc<Api>) -> Router {
    use routes as r;
    Router::new()
        .route("/api/tags", get(r::tags).post(r::run))
        .route("/api/tags/{tag}", get(r::tag).patch(r::modify).delete(r::remove))
        .route("/api/tags/{tag}/start", post(r::start))
        .route("/api/tags/{tag}/stop", post(r::stop))
        .route("/api/tags/{tag}/restart", post(r::restart))
        .route("/api/tags/{tag}/kill", post(r::kill))
        .route("/api/tags/{tag}/logs", get(sse::logs))
        .route("/api/events", get(sse::events))
        .route("/api/events/stored", get(r::stored_events))
        .route("/api/psm/categories", get(r::psm_categories).post(r::psm_category_add))
        .route(
            "/api/psm/categories/{category}",
            axum::routing::delete(r::psm_category_remove),
        )
        .route("/api/psm/members", get(r::psm_members).post(r::psm_member_add))
        .route("/api/psm/members/{pid}", axum::routing::delete(r::psm_member_remove))
        .route("/api/psm/members/{pid}/state", put(r::psm_member_state))
        .route("/api/cmap/keys", get(r::cmap_list))
        .route(
            "/api/cmap/keys/{*key}",
            get(r::cmap_get).put(r::cmap_set).delete(r::cmap_delete),
        )
        .route("/api/cmap/track", get(sse::cmap_track))
        .route("/api/sam", get(r::sam))
        .route("/api/quorum", get(r::quorum))
        .route("/api/nodes", get(r::nodes))
        .route("/api/daemon", get(r::daemon))
        .route("/api/whoami", get(r::whoami))
        .route("/api/openapi.json", get(dash::openapi))
        .route("/metrics", get(metrics::metrics))
        .route("/", get(dash::index))
        .route("/dash.js", get(dash::script))
        .route("/dash.css", get(dash::style))
        .fallback(r::not_found)
        .with_state(api)
}

/// Reads the bearer token ([`tls::read_token_file`]): the token acts as the file's owner.
pub fn read_token(path: &Path) -> anyhow::Result<Token> {
    let (secret, meta) = tls::read_token_file(path)?;
    Ok(Token {
        secret,
        uid: meta.uid(),
        gid: meta.gid(),
    })
}

/// Connections being turned away at once, each holding a descriptor for up to a second.
static REFUSING: std::sync::LazyLock<Arc<tokio::sync::Semaphore>> =
    std::sync::LazyLock::new(|| Arc::new(tokio::sync::Semaphore::new(64)));

/// An open HTTP connection, for /metrics.
struct OpenConn(Arc<Api>);

impl OpenConn {
    fn new(api: &Arc<Api>) -> OpenConn {
        api.open.fetch_add(1, Ordering::Relaxed);
        OpenConn(api.clone())
    }
}

impl Drop for OpenConn {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A connection over a limit gets a 503 with the reason, and is closed.
async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(io: S, reason: String) {
    answer_and_close(io, "503 Service Unavailable", "unavailable", reason).await;
}

/// Answers a connection not served with `status` and the reason, and closes it. Its request's head is
/// read first (what comes within a second, 8 KiB at most), so that the client finds the answer rather
/// than a reset connection.
async fn answer_and_close<S: AsyncRead + AsyncWrite + Unpin>(mut io: S, status: &str, kind: &str, reason: String) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while head.len() < 8192 && !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match io.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    let body = serde_json::json!({ "error": reason, "kind": kind }).to_string();
    let resp = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        io.write_all(resp.as_bytes()).await?;
        io.shutdown().await
    })
    .await;
}

/// What a connection goes through before HTTP: nothing, or the TLS handshake. It runs in the
/// connection's task, after the connection took its place in the limits, so that a client stalling
/// it holds one place for `limit` at most and keeps no other client waiting.
trait Open<S>: Clone + Send + 'static {
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    fn open(self, io: S, limit: Duration) -> impl Future<Output = Option<Self::Io>> + Send;
}

/// Plain HTTP.
#[derive(Clone)]
struct Plain;

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Open<S> for Plain {
    type Io = S;
    async fn open(self, io: S, _limit: Duration) -> Option<S> {
        Some(io)
    }
}

/// HTTPS. A client that speaks plain HTTP to it is told so (in plain HTTP) and closed.
#[derive(Clone)]
struct Tls(tokio_rustls::TlsAcceptor);

impl Open<TcpStream> for Tls {
    type Io = Box<tokio_rustls::server::TlsStream<TcpStream>>;
    async fn open(self, io: TcpStream, limit: Duration) -> Option<Self::Io> {
        match tls::handshake(&self.0, io, limit).await {
            Handshake::Done(s) => Some(s),
            Handshake::Plain(io) => {
                debug!("http: plain HTTP on the TLS listener");
                let reason = "this port serves HTTPS only: use an https:// URL".to_string();
                answer_and_close(io, "400 Bad Request", "invalid_argument", reason).await;
                None
            }
            Handshake::Failed(reason) => {
                debug!("http: {reason}");
                None
            }
        }
    }
}

/// Bytes hyper may buffer for one connection (a request's head, an answer's pieces): past it, a head
/// is refused with 431; a connection holds no more than this beyond its socket's buffers.
const MAX_BUF: usize = 64 << 10;

/// Serves one connection whose requests act as `peer`, with `budget` the uid's budget of request
/// bytes (None for root and vigild's own uid).
async fn connection<S>(io: S, peer: Peer, app: Router, api: Arc<Api>, budget: Option<Arc<tokio::sync::Semaphore>>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let limits = api.limits.clone();
    let api_svc = tower::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        api.requests.fetch_add(1, Ordering::Relaxed);
        req.extensions_mut().insert(peer);
        // The bytes its body takes of the uid's budget are held until the request is answered.
        let b = bounds::Budget::new(budget.clone());
        req.extensions_mut().insert(b.clone());
        let answer = app.clone().oneshot(req.map(axum::body::Body::new));
        async move {
            let r = answer.await;
            b.release();
            r
        }
    });
    let svc = hyper_util::service::TowerToHyperService::new(api_svc);
    let mut b = hyper::server::conn::http1::Builder::new();
    // The head of every request, the first or one after an idle wait, within `hello_timeout`.
    b.timer(TokioTimer::new())
        .header_read_timeout(limits.hello_timeout)
        .max_header_size(MAX_BUF)
        .max_buf_size(MAX_BUF);
    let io = bounds::SendDeadline::new(io, limits.send_timeout);
    if let Err(e) = b.serve_connection(TokioIo::new(io), svc).await {
        debug!("http connection: {e}");
    }
}

/// Serves `http.sock`.
pub async fn serve_unix(listener: UnixListener, api: Arc<Api>) {
    let l = Listener::new(api);
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                warn!("http accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let cred = match stream.peer_cred() {
            Ok(c) => c,
            Err(e) => {
                warn!("http: no peer credentials: {e}");
                continue;
            }
        };
        let peer = Peer::Unix {
            uid: cred.uid(),
            gid: cred.gid(),
            pid: cred.pid(),
        };
        l.count_and_serve(stream, Plain, cred.uid(), peer);
    }
}

/// What one listener's connections share.
struct Listener {
    app: Router,
    api: Arc<Api>,
    /// The time to send a request's head (and, before it, to complete the TLS handshake).
    head: Duration,
}

impl Listener {
    fn new(api: Arc<Api>) -> Listener {
        Listener {
            app: router(api.clone()),
            head: api.limits.hello_timeout,
            api,
        }
    }

    /// Serves one connection of `uid` (opened by `open`), or tells it which limit it is over.
    fn count_and_serve<S, O>(&self, io: S, open: O, uid: u32, peer: Peer)
    where
        S: Send + 'static,
        O: Open<S>,
    {
        let head = self.head;
        let name = match peer {
            Peer::Unix { .. } => format!("uid {uid}"),
            Peer::Tcp => "the TCP listener's clients, counted as one user,".to_string(),
        };
        match self.api.admission.admit_named(uid, "HTTP ", &name) {
            Ok(slot) => {
                let app = self.app.clone();
                let api = self.api.clone();
                let counted = OpenConn::new(&api);
                let budget = slot.as_ref().map(|s| s.budget.clone());
                tokio::spawn(async move {
                    // The handshake, then the request's head, each within the head's time.
                    if let Some(io) = open.open(io, head).await {
                        connection(io, peer, app, api, budget).await;
                    }
                    drop((slot, counted));
                });
            }
            Err(reason) => {
                debug!(uid, "http refused: {reason}");
                // Bounded as the main socket's refusals: beyond that many at once, closed without a word.
                if let Ok(permit) = REFUSING.clone().try_acquire_owned() {
                    tokio::spawn(async move {
                        if let Some(io) = open.open(io, Duration::from_secs(1)).await {
                            refuse(io, reason).await;
                        }
                        drop(permit);
                    });
                }
            }
        }
    }
}

/// Serves TCP, over TLS with `tls`. Who connects is not known before a request shows the token, so
/// every TCP connection counts against one limited pseudo-uid (u32::MAX, which no process has): a flood
/// of them reaches its share and no further, while root keeps `http.sock` and the main socket, and
/// every other user their own share.
pub async fn serve_tcp(listener: TcpListener, api: Arc<Api>, tls: Option<Arc<rustls::ServerConfig>>) {
    let tls = tls.map(|c| Tls(tokio_rustls::TlsAcceptor::from(c)));
    let l = Listener::new(api);
    let uid = u32::MAX;
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                warn!("http accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        match &tls {
            Some(t) => l.count_and_serve(stream, t.clone(), uid, Peer::Tcp),
            None => l.count_and_serve(stream, Plain, uid, Peer::Tcp),
        }
    }
}
