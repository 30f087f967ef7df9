//! The bounds an HTTP connection is held to, the main socket's own (docs/security.md): its request
//! bodies count against the uid's budget of request bytes and must arrive within `[daemon]
//! frame_timeout`, and a client that takes none of its answer's bytes for `[daemon] send_timeout` is
//! dropped, with whatever stream (events, a followed log) it held.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::Request;
use axum::http::{header, StatusCode};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;

use crate::http::call::Api;
use crate::http::errors::HttpError;

/// What a request's body may take: the uid's budget of request bytes (None for root and vigild's own
/// uid), and the place where the bytes it took are held until the request is answered.
#[derive(Clone, Default)]
pub struct Budget {
    pub(crate) budget: Option<Arc<Semaphore>>,
    pub(crate) held: Arc<Mutex<Option<OwnedSemaphorePermit>>>,
}

impl Budget {
    pub fn new(budget: Option<Arc<Semaphore>>) -> Budget {
        Budget {
            budget,
            held: Arc::default(),
        }
    }

    /// Gives the bytes back (the request is answered, or its client gone).
    pub fn release(&self) {
        self.held.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

/// The request's body, of at most `[http] max_body_bytes`: refused with 413 past them. Its bytes are
/// first taken from the uid's budget (as the main socket does before it reads a frame's payload; the
/// wait for them is not the client's fault, so it does not count against its time), then the body must
/// arrive within `[daemon] frame_timeout`, or the answer is 408 and the connection is closed.
pub async fn body_bytes(req: Request, api: &Api) -> Result<axum::body::Bytes, HttpError> {
    let max = api.max_body;
    let (parts, body) = req.into_parts();
    let declared = match parts.headers.get(header::CONTENT_LENGTH) {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| HttpError::bad("Content-Length is not a number"))?,
        ),
        None => None,
    };
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large(max, "its Content-Length says more"));
    }
    if let Some(b) = parts.extensions.get::<Budget>() {
        if let Some(sem) = &b.budget {
            // A body without a length may be as large as the largest allowed.
            let want = declared.map_or(max, |n| n as usize).min(api.limits.request_bytes);
            let cost = u32::try_from(want).unwrap_or(u32::MAX);
            if cost > 0 {
                let permit = match sem.clone().try_acquire_many_owned(cost) {
                    Ok(p) => p,
                    Err(_) => sem.clone().acquire_many_owned(cost).await.map_err(|_| {
                        HttpError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "vigild is stopping")
                    })?,
                };
                *b.held.lock().unwrap_or_else(|e| e.into_inner()) = Some(permit);
            }
        }
    }
    let t = api.limits.frame_timeout;
    match tokio::time::timeout(t, axum::body::to_bytes(body, max)).await {
        Ok(Ok(b)) => Ok(b),
        Ok(Err(e)) => Err(too_large(max, &e.to_string())),
        Err(_) => Err(HttpError::new(
            StatusCode::REQUEST_TIMEOUT,
            "timeout",
            format!(
                "the request's body did not arrive within {} s ([daemon] frame_timeout)",
                t.as_secs_f64()
            ),
        )),
    }
}

fn too_large(max: usize, why: &str) -> HttpError {
    HttpError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        format!("the body is larger than {max} bytes ([http] max_body_bytes), or broken: {why}"),
    )
}

/// A connection whose writes may not wait longer than `send_timeout`: a write the client takes nothing
/// of for that long fails, and hyper closes the connection (dropping the stream it was sending).
pub struct SendDeadline<S> {
    io: S,
    timeout: Duration,
    /// Armed while a write waits for the client.
    waiting: Option<Pin<Box<Sleep>>>,
}

impl<S> SendDeadline<S> {
    pub fn new(io: S, timeout: Duration) -> SendDeadline<S> {
        SendDeadline {
            io,
            timeout,
            waiting: None,
        }
    }

    /// What a write that found the socket full became: still waiting, or (past the deadline) an error.
    fn pending<T>(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<T>> {
        let t = self.timeout;
        let sleep = self.waiting.get_or_insert_with(|| Box::pin(tokio::time::sleep(t)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "the client read nothing for {} s while an answer waited for it ([daemon] send_timeout)",
                    t.as_secs_f64()
                ),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn wrote<T>(&mut self, r: Poll<std::io::Result<T>>, cx: &mut Context<'_>) -> Poll<std::io::Result<T>> {
        match r {
            Poll::Pending => self.pending(cx),
            done => {
                self.waiting = None;
                done
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for SendDeadline<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for SendDeadline<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        self.wrote(r, cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.wrote(r, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let r = Pin::new(&mut self.io).poll_flush(cx);
        self.wrote(r, cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let r = Pin::new(&mut self.io).poll_shutdown(cx);
        self.wrote(r, cx)
    }
}
