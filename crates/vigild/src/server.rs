//! The socket: accepts connections, checks the handshake and frames, and hands requests to the loop.
//!
//! A connection that breaks the protocol (bad frame, unknown version) is closed with a logged reason; it
//! never reaches the loop, so it cannot touch state.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::OwnedReadHalf;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn, Instrument};
use vigil_proto::{ClientMsg, FrameError, Request, ServerMsg, HEADER_LEN, PROTOCOL_VERSION};

/// Who is asking, from SO_PEERCRED.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    /// The peer's pid, when the kernel gave one (for its supplementary groups).
    pub pid: Option<i32>,
    pub conn: u64,
}

/// A message to a connection's writer; `written` is told once the bytes are on the socket. `events`
/// hands the writer the bounded channel of a new subscription.
pub struct Outgoing {
    pub msg: ServerMsg,
    pub written: Option<oneshot::Sender<()>>,
    pub events: Option<mpsc::Receiver<ServerMsg>>,
}

impl Outgoing {
    pub fn msg(msg: ServerMsg) -> Outgoing {
        Outgoing {
            msg,
            written: None,
            events: None,
        }
    }
}

pub type ConnTx = mpsc::UnboundedSender<Outgoing>;

/// What the loop receives.
// Short-lived, one per request: boxing the request would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Msg {
    Request {
        caller: Caller,
        id: u64,
        req: Request,
        out: ConnTx,
    },
    /// A watched process's pidfd became readable.
    Exited { pid: i32, start_time: u64 },
    /// A connection ended: what it held (CMAP tracks) goes with it.
    Closed { conn: u64 },
    /// A probe run of a tag's instance ended; `pid` is an exec probe's process.
    ProbeDone {
        tag: vigil_core::TagName,
        instance: u64,
        index: usize,
        pid: Option<i32>,
        result: Result<(), String>,
    },
    /// What the cluster task learned from etcd.
    Cluster(crate::cluster::ClusterMsg),
}

pub async fn accept_loop(listener: UnixListener, tx: mpsc::UnboundedSender<Msg>) {
    let mut next_conn = 1u64;
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let conn = next_conn;
                next_conn += 1;
                let tx = tx.clone();
                tokio::spawn(
                    async move {
                        if let Err(reason) = connection(stream, conn, tx).await {
                            warn!("closed: {reason}");
                        }
                    }
                    .instrument(tracing::info_span!("conn", conn)),
                );
            }
            Err(e) => {
                // Out of fds, most likely: keep serving the connections we have.
                warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn read_frame(r: &mut OwnedReadHalf) -> Result<ClientMsg, FrameError> {
    let mut header = [0u8; HEADER_LEN];
    match r.read_exact(&mut header).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(FrameError::Closed),
        Err(e) => return Err(e.into()),
    }
    let len = vigil_proto::frame_payload_len(header)?;
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => FrameError::Truncated,
        _ => FrameError::Io(e),
    })?;
    vigil_proto::decode(&payload)
}

async fn connection(stream: UnixStream, conn: u64, tx: mpsc::UnboundedSender<Msg>) -> Result<(), String> {
    let cred = stream.peer_cred().map_err(|e| format!("no peer credentials: {e}"))?;
    let caller = Caller {
        uid: cred.uid(),
        gid: cred.gid(),
        pid: cred.pid(),
        conn,
    };
    debug!(uid = caller.uid, "connected");
    let (mut rd, mut wr) = stream.into_split();
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Outgoing>();
    let writer = tokio::spawn(async move {
        let mut events: Option<mpsc::Receiver<ServerMsg>> = None;
        loop {
            // Replies first: a subscription's replayed backlog is queued there before any live event.
            let o = tokio::select! {
                biased;
                o = out_rx.recv() => match o {
                    Some(mut o) => {
                        if let Some(rx) = o.events.take() {
                            events = Some(rx);
                        }
                        o
                    }
                    None => break,
                },
                m = async { match &mut events { Some(rx) => rx.recv().await, None => std::future::pending().await } } => match m {
                    Some(m) => Outgoing::msg(m),
                    None => {
                        events = None;
                        continue;
                    }
                },
            };
            let bytes = match (vigil_proto::encode(&o.msg), &o.msg) {
                (Ok(b), _) => b,
                (Err(e), ServerMsg::Response { id, .. }) => {
                    // Too large, most likely: the client must not wait forever for an answer.
                    warn!("cannot encode a reply: {e}");
                    let err = vigil_proto::WireError::new(
                        vigil_proto::ErrorCode::LimitExceeded,
                        format!("the answer cannot be sent: {e}; ask for less"),
                    );
                    match vigil_proto::encode(&ServerMsg::Response {
                        id: *id,
                        result: Err(err),
                    }) {
                        Ok(b) => b,
                        Err(_) => continue,
                    }
                }
                (Err(e), _) => {
                    warn!("cannot encode a message: {e}");
                    continue;
                }
            };
            if wr.write_all(&bytes).await.is_err() {
                break;
            }
            if let Some(w) = o.written {
                let _ = w.send(());
            }
            if matches!(o.msg, ServerMsg::Goodbye { .. }) {
                break;
            }
        }
    });
    let goodbye = |reason: String| {
        let _ = out_tx.send(Outgoing {
            events: None,
            msg: ServerMsg::Goodbye { reason: reason.clone() },
            written: None,
        });
        reason
    };
    let result = async {
        let hello = tokio::time::timeout(Duration::from_secs(10), read_frame(&mut rd))
            .await
            .map_err(|_| goodbye("no hello within 10 s".into()))?;
        match hello {
            Ok(ClientMsg::Hello { version, client }) if version == PROTOCOL_VERSION => {
                debug!(client, "hello");
                let welcome = ServerMsg::Welcome {
                    version: PROTOCOL_VERSION,
                    daemon_version: env!("CARGO_PKG_VERSION").into(),
                    pid: std::process::id(),
                };
                let _ = out_tx.send(Outgoing {
                    events: None,
                    msg: welcome,
                    written: None,
                });
            }
            Ok(ClientMsg::Hello { version, .. }) => {
                return Err(goodbye(format!(
                    "protocol version {version} is not supported; this vigild speaks {PROTOCOL_VERSION}"
                )))
            }
            Ok(_) => return Err(goodbye("the first message must be Hello".into())),
            Err(FrameError::Closed) => return Ok(()),
            Err(e) => return Err(goodbye(e.to_string())),
        }
        loop {
            match read_frame(&mut rd).await {
                Ok(ClientMsg::Request { id, body }) => {
                    let msg = Msg::Request {
                        caller,
                        id,
                        req: body,
                        out: out_tx.clone(),
                    };
                    if tx.send(msg).is_err() {
                        return Err(goodbye("vigild is shutting down".into()));
                    }
                }
                Ok(ClientMsg::Hello { .. }) => return Err(goodbye("Hello sent twice".into())),
                Err(FrameError::Closed) => return Ok(()),
                Err(e) => return Err(goodbye(e.to_string())),
            }
        }
    }
    .await;
    let _ = tx.send(Msg::Closed { conn });
    drop(out_tx);
    if result.is_ok() {
        // The client is gone: nothing left to flush. Ending the writer drops its subscription channel,
        // which is how the loop learns to forget the subscriber.
        writer.abort();
    } else {
        // The writer ends once the Goodbye is out.
        let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
    }
    if result.is_ok() {
        debug!("disconnected");
    }
    result
}
