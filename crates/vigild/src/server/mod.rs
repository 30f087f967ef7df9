//! The socket: accepts connections, checks the handshake and frames, and hands requests to the loop.
//!
//! A connection that breaks the protocol (bad frame, unknown version) is closed with a logged reason; it
//! never reaches the loop, so it cannot touch state.
//!
//! Every connection is bounded (docs/security.md): how many a uid may hold, how long the Hello and
//! each frame may take, how many of its requests may wait for an answer (beyond that, vigild stops
//! reading it), and how many bytes of answers may wait for it to read (beyond that, or when it reads
//! nothing for `send_timeout` while answers wait, it is closed). The bytes of requests read and not
//! yet handled by the loop are bounded per uid: beyond `request_bytes_per_uid`, the uid's connections
//! are not read until the loop has handled earlier requests.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, Semaphore};
use tracing::{debug, warn, Instrument};
use vigil_proto::{ClientMsg, FrameError, ServerMsg, HEADER_LEN, PROTOCOL_VERSION};

use crate::conn::{Admission, Caller, ConnTx, Limits, Outgoing, Queued, Shared};
use crate::msg::Msg;

/// Bytes read from a connection ahead of the frame being decoded: a request's frame is rarely larger,
/// and a connection that is not read (backpressure) holds at most this much beyond its socket buffer.
const READ_BUFFER: usize = 8 << 10;

/// Connections being turned away at once: each gets its Goodbye within a second, and no more than this
/// many hold a descriptor for it (beyond that they are closed without one).
const REFUSING: usize = 64;

/// Tells a connection over a limit why, then closes it. Its Hello is read first (if it comes within a
/// second), so that the client finds the Goodbye rather than a broken pipe.
async fn refuse(stream: UnixStream, reason: String) {
    let (mut rd, mut wr) = stream.into_split();
    if let Ok(bytes) = vigil_proto::encode(&ServerMsg::Goodbye { reason }) {
        let _ = tokio::time::timeout(Duration::from_secs(1), wr.write_all(&bytes)).await;
    }
    let mut sink = [0u8; 512];
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let mut got = 0;
        while got < vigil_proto::MAX_HELLO_LEN + HEADER_LEN {
            match rd.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
        }
    })
    .await;
}

/// One open connection in the count `/metrics` shows; dropping it takes it off.
struct Open(Arc<AtomicUsize>);

impl Open {
    fn new(count: &Arc<AtomicUsize>) -> Open {
        count.fetch_add(1, Ordering::Relaxed);
        Open(count.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves the main socket. `admission` is shared with the HTTP API's listeners: a uid's connections
/// of both count in one share, and its request bytes in one budget. `open` counts the connections
/// being served (for `/metrics`).
pub async fn accept_loop(
    listener: UnixListener,
    tx: mpsc::UnboundedSender<Msg>,
    admission: Admission,
    open: Arc<AtomicUsize>,
) {
    let limits = admission.limits.clone();
    let refusing = Arc::new(Semaphore::new(REFUSING));
    let mut next_conn = 1u64;
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let conn = next_conn;
                next_conn += 1;
                let cred = match stream.peer_cred() {
                    Ok(c) => c,
                    Err(e) => {
                        warn!(conn, "no peer credentials: {e}");
                        continue;
                    }
                };
                let slot = match admission.admit(cred.uid(), "") {
                    Ok(slot) => slot,
                    Err(reason) => {
                        debug!(conn, uid = cred.uid(), "refused: {reason}");
                        if let Ok(permit) = refusing.clone().try_acquire_owned() {
                            tokio::spawn(async move {
                                refuse(stream, reason).await;
                                drop(permit);
                            });
                        }
                        continue;
                    }
                };
                let tx = tx.clone();
                let limits = limits.clone();
                let budget = slot.as_ref().map(|s| s.budget.clone());
                let counted = Open::new(&open);
                tokio::spawn(
                    async move {
                        if let Err(reason) = connection(stream, cred, conn, tx, &limits, budget).await {
                            warn!("closed: {reason}");
                        }
                        drop(slot);
                        drop(counted);
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

enum ReadError {
    Closed,
    Bad(String),
}

impl From<FrameError> for ReadError {
    fn from(e: FrameError) -> ReadError {
        ReadError::Bad(e.to_string())
    }
}

fn mid_frame(e: std::io::Error) -> ReadError {
    match e.kind() {
        std::io::ErrorKind::UnexpectedEof => FrameError::Truncated.into(),
        _ => FrameError::Io(e).into(),
    }
}

/// Reads one frame's payload, of at most `max` bytes. The first byte may take as long as the peer
/// likes; from there the whole frame must come within `frame_timeout`, and the buffer grows with the
/// bytes that actually arrive, so a header alone costs nothing.
async fn read_payload<R: AsyncRead + Unpin>(
    r: &mut BufReader<R>,
    max: usize,
    frame_timeout: Duration,
) -> Result<Vec<u8>, ReadError> {
    let len = read_header(r, max, frame_timeout).await?;
    read_body(r, len, frame_timeout).await
}

fn too_slow(frame_timeout: Duration) -> ReadError {
    ReadError::Bad(format!(
        "a frame was not complete {} s after its first byte ([daemon] frame_timeout)",
        frame_timeout.as_secs_f64()
    ))
}

/// Reads a frame's header and returns the length of its payload, at most `max`. The first byte may
/// take as long as the peer likes, the rest must come within `frame_timeout`.
async fn read_header<R: AsyncRead + Unpin>(
    r: &mut BufReader<R>,
    max: usize,
    frame_timeout: Duration,
) -> Result<usize, ReadError> {
    let mut header = [0u8; HEADER_LEN];
    match r.read(&mut header[..1]).await {
        Ok(0) => return Err(ReadError::Closed),
        Ok(_) => {}
        Err(e) => return Err(FrameError::Io(e).into()),
    }
    if r.buffer().len() >= HEADER_LEN - 1 {
        // Read ahead with the first byte: no wait, so no timer.
        header[1..].copy_from_slice(&r.buffer()[..HEADER_LEN - 1]);
        r.consume(HEADER_LEN - 1);
    } else {
        tokio::time::timeout(frame_timeout, r.read_exact(&mut header[1..]))
            .await
            .map_err(|_| too_slow(frame_timeout))?
            .map_err(mid_frame)?;
    }
    Ok(vigil_proto::frame_payload_len_max(header, max)?)
}

/// Reads a payload of `len` bytes within `frame_timeout`; the buffer grows with the bytes that
/// actually arrive, so a header alone costs nothing.
async fn read_body<R: AsyncRead + Unpin>(
    r: &mut BufReader<R>,
    len: usize,
    frame_timeout: Duration,
) -> Result<Vec<u8>, ReadError> {
    if r.buffer().len() >= len {
        // The whole payload was read ahead (the common case of a small request).
        let payload = r.buffer()[..len].to_vec();
        r.consume(len);
        return Ok(payload);
    }
    let rest = async {
        let mut payload = Vec::with_capacity(len.min(64 << 10));
        (&mut *r)
            .take(len as u64)
            .read_to_end(&mut payload)
            .await
            .map_err(mid_frame)?;
        if payload.len() < len {
            return Err(FrameError::Truncated.into());
        }
        Ok(payload)
    };
    tokio::time::timeout(frame_timeout, rest)
        .await
        .map_err(|_| too_slow(frame_timeout))?
}

/// The payload length of the frame at the front of `buf` when the whole frame is there, None when more
/// must be read. A header over the limit is refused here as when it is read.
fn whole_frame(buf: &[u8]) -> Result<Option<usize>, FrameError> {
    let Some(header) = buf.first_chunk::<HEADER_LEN>() else {
        return Ok(None);
    };
    let len = vigil_proto::frame_payload_len_max(*header, vigil_proto::MAX_FRAME_LEN)?;
    Ok((buf.len() - HEADER_LEN >= len).then_some(len))
}

/// What a request of `len` payload bytes holds of its uid's budget until the loop has handled it.
fn cost(len: usize, limits: &Limits) -> u32 {
    u32::try_from((len + HEADER_LEN).min(limits.request_bytes)).unwrap_or(u32::MAX)
}

/// Resolves once the peer has closed the connection (both ways: one that only shut its writing end
/// still reads its answers), without reading what it sent. Readiness stays set while unread requests
/// wait, so it is looked at again every second rather than awaited.
async fn hung_up(rd: &tokio::net::unix::OwnedReadHalf) {
    loop {
        match rd
            .ready(tokio::io::Interest::READABLE | tokio::io::Interest::WRITABLE)
            .await
        {
            Ok(r) if r.is_write_closed() => return,
            Ok(_) => tokio::time::sleep(Duration::from_secs(1)).await,
            Err(_) => return,
        }
    }
}

/// Writes one frame. A frame the peer takes none of for `send_timeout` closes the connection when it
/// is an answer or answers wait behind it; a pushed event alone may wait (its subscriber loses events,
/// and is told which, instead).
async fn write_frame(
    wr: &mut OwnedWriteHalf,
    bytes: &[u8],
    shared: &Shared,
    answer: bool,
    send_timeout: Duration,
) -> Result<(), String> {
    let mut pos = 0;
    // Most often the socket takes it all at once: no wait, so no timer.
    while pos < bytes.len() {
        match wr.try_write(&bytes[pos..]) {
            Ok(0) => return Err("the client is gone".into()),
            Ok(n) => pos += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("cannot write: {e}")),
        }
    }
    while pos < bytes.len() {
        match tokio::time::timeout(send_timeout, wr.write(&bytes[pos..])).await {
            Ok(Ok(0)) => return Err("the client is gone".into()),
            Ok(Ok(n)) => pos += n,
            Ok(Err(e)) => return Err(format!("cannot write: {e}")),
            Err(_) if answer || shared.queued.load(Ordering::Relaxed) > 0 => {
                return Err(format!(
                    "the client read nothing for {} s while answers waited for it ([daemon] send_timeout)",
                    send_timeout.as_secs_f64()
                ))
            }
            Err(_) => {}
        }
    }
    Ok(())
}

/// Appends a message to `buf` for the wire; an answer too large to encode becomes an error answer,
/// so that the client does not wait forever for it.
fn encode_out(msg: &ServerMsg, buf: &mut Vec<u8>) {
    match (vigil_proto::encode_into(msg, buf), msg) {
        (Ok(()), _) => {}
        (Err(e), ServerMsg::Response { id, .. }) => {
            warn!("cannot encode a reply: {e}");
            let err = vigil_proto::WireError::new(
                vigil_proto::ErrorCode::LimitExceeded,
                format!("the answer cannot be sent: {e}; ask for less"),
            );
            let _ = vigil_proto::encode_into(
                &ServerMsg::Response {
                    id: *id,
                    result: Err(err),
                },
                buf,
            );
        }
        (Err(e), _) => warn!("cannot encode a message: {e}"),
    }
}

/// Appends the frame that tells how many CMAP notifications found no room since the last one, if any
/// did.
fn lost_marker(shared: &Shared, buf: &mut Vec<u8>) {
    let lost = shared.notes_lost.swap(0, Ordering::Relaxed);
    if lost > 0 {
        let _ = vigil_proto::encode_into(&ServerMsg::CmapLost { count: lost as u64 }, buf);
    }
}

/// Bytes of frames the writer gathers for one write: the answers of many pipelined requests (or a
/// burst of notifications) go out in one system call rather than one each.
const WRITE_BATCH: usize = 64 << 10;

async fn write_loop(
    mut wr: OwnedWriteHalf,
    mut out_rx: mpsc::UnboundedReceiver<(Outgoing, Queued)>,
    shared: Arc<Shared>,
    send_timeout: Duration,
) {
    let mut events: Option<mpsc::Receiver<ServerMsg>> = None;
    let mut buf: Vec<u8> = Vec::new();
    let mut batch: Vec<(Outgoing, Option<Queued>)> = Vec::new();
    'conn: loop {
        // Replies first: a subscription's answer is queued there before any of its events.
        let first = tokio::select! {
            biased;
            o = out_rx.recv() => match o {
                Some((mut o, q)) => {
                    if let Some(rx) = o.events.take() {
                        events = Some(rx);
                    }
                    (o, Some(q))
                }
                None => break,
            },
            m = async { match &mut events { Some(rx) => rx.recv().await, None => std::future::pending().await } } => match m {
                Some(m) => (Outgoing::msg(m), None),
                None => {
                    events = None;
                    continue;
                }
            },
        };
        // Whatever else is queued already goes in the same write, in order, up to the batch's size.
        buf.clear();
        batch.clear();
        let mut next = Some(first);
        while let Some((o, q)) = next.take() {
            encode_out(&o.msg, &mut buf);
            // Notifications that found no room are told as a count, after those queued before them
            // and before any queued after.
            lost_marker(&shared, &mut buf);
            let goodbye = matches!(*o.msg, ServerMsg::Goodbye { .. });
            batch.push((o, q));
            if goodbye || buf.len() >= WRITE_BATCH {
                break;
            }
            if let Ok((mut o, q)) = out_rx.try_recv() {
                if let Some(rx) = o.events.take() {
                    events = Some(rx);
                }
                next = Some((o, Some(q)));
            }
        }
        // An answer must make progress; notifications or events alone may wait for their reader.
        let must = batch.iter().any(|(_, q)| q.is_some_and(|q| !q.note));
        let mut written = if buf.is_empty() {
            Ok(())
        } else {
            write_frame(&mut wr, &buf, &shared, must, send_timeout).await
        };
        // A loss while the batch was written is told now, not with the next message (if any comes).
        if written.is_ok() {
            let mut marker = Vec::new();
            lost_marker(&shared, &mut marker);
            if !marker.is_empty() {
                written = write_frame(&mut wr, &marker, &shared, false, send_timeout).await;
            }
        }
        for (o, q) in batch.drain(..) {
            match q {
                Some(Queued { size, note: true }) => shared.noted.fetch_sub(size, Ordering::Relaxed),
                Some(Queued { size, note: false }) => shared.queued.fetch_sub(size, Ordering::Relaxed),
                None => 0,
            };
            if written.is_err() {
                continue;
            }
            if matches!(*o.msg, ServerMsg::Response { .. }) {
                shared.answered();
            }
            if let Some(w) = o.written {
                let _ = w.send(());
            }
            if matches!(*o.msg, ServerMsg::Goodbye { .. }) {
                break 'conn;
            }
        }
        if let Err(reason) = written {
            shared.close(reason);
            break;
        }
        // One large answer must not stay held by an idle connection.
        if buf.capacity() > 2 * WRITE_BATCH {
            buf = Vec::new();
        }
    }
}

/// Why no request was read.
enum NoRequest {
    /// The peer closed the connection: `true` at a frame's boundary (it may still read its answers).
    Closed(bool),
    /// It broke the protocol: told in a Goodbye.
    Bad(String),
    /// The connection ends for this reason, untold (closed for reading too slowly, or vigild stops).
    Ended(String),
}

/// Reads the next request's payload from the socket, waiting as long as it takes: for its first byte,
/// for room in the uid's budget, and (within `frame_timeout`) for the rest of it. Answers the payload and
/// what it holds of the budget.
async fn read_request(
    rd: &mut BufReader<tokio::net::unix::OwnedReadHalf>,
    shared: &Shared,
    budget: Option<&Arc<Semaphore>>,
    limits: &Limits,
    uid: u32,
) -> Result<(Vec<u8>, Option<tokio::sync::OwnedSemaphorePermit>), NoRequest> {
    let killed = || NoRequest::Ended(shared.killed().unwrap_or_default());
    let len = tokio::select! {
        l = read_header(rd, vigil_proto::MAX_FRAME_LEN, limits.frame_timeout) => l,
        _ = shared.kill.notified() => return Err(killed()),
    };
    let len = match len {
        Ok(l) => l,
        Err(ReadError::Closed) => return Err(NoRequest::Closed(true)),
        Err(ReadError::Bad(e)) => return Err(NoRequest::Bad(e)),
    };
    // Backpressure across the uid's connections: the payload is read only once its bytes fit in the
    // uid's budget of requests the loop has not handled yet. The wait is not the peer's fault, so it
    // does not count against `frame_timeout`.
    let held = match budget {
        Some(b) => {
            let cost = cost(len, limits);
            let p = match b.clone().try_acquire_many_owned(cost) {
                Ok(p) => p,
                Err(_) => {
                    debug!(
                        uid,
                        "the uid's requests waiting for the loop fill its budget \
                         ([daemon] request_bytes_per_uid = {}): not reading this connection until \
                         the loop has handled some",
                        limits.request_bytes
                    );
                    tokio::select! {
                        p = b.clone().acquire_many_owned(cost) => p.map_err(|_| NoRequest::Ended("closed".into()))?,
                        _ = shared.kill.notified() => return Err(killed()),
                        _ = hung_up(rd.get_ref()) => return Err(NoRequest::Closed(false)),
                    }
                }
            };
            Some(p)
        }
        None => None,
    };
    let frame = tokio::select! {
        f = read_body(rd, len, limits.frame_timeout) => f,
        _ = shared.kill.notified() => return Err(killed()),
    };
    match frame {
        Ok(payload) => Ok((payload, held)),
        Err(ReadError::Closed) => Err(NoRequest::Closed(false)),
        Err(ReadError::Bad(e)) => Err(NoRequest::Bad(e)),
    }
}

async fn connection(
    stream: UnixStream,
    cred: tokio::net::unix::UCred,
    conn: u64,
    tx: mpsc::UnboundedSender<Msg>,
    limits: &Limits,
    budget: Option<Arc<Semaphore>>,
) -> Result<(), String> {
    let caller = Caller {
        uid: cred.uid(),
        gid: cred.gid(),
        pid: cred.pid(),
        conn,
    };
    debug!(uid = caller.uid, "connected");
    let (rd, wr) = stream.into_split();
    // A frame (and whatever follows it) in one read, rather than a read for its first byte, one for the
    // rest of its header and one for its payload.
    let mut rd = BufReader::with_capacity(READ_BUFFER, rd);
    let (out_tx, out_rx) = ConnTx::new(conn, Some(limits));
    let shared = out_tx.shared.clone();
    let mut writer = tokio::spawn(write_loop(wr, out_rx, shared.clone(), limits.send_timeout));
    let goodbye = |reason: String| {
        let _ = out_tx.send(Outgoing::msg(ServerMsg::Goodbye { reason: reason.clone() }));
        reason
    };
    let result = async {
        // Before the Hello a peer gets a short time, a small frame, and nothing decoded but a Hello.
        let hello = tokio::time::timeout(
            limits.hello_timeout,
            read_payload(&mut rd, vigil_proto::MAX_HELLO_LEN, limits.hello_timeout),
        )
        .await
        .map_err(|_| {
            goodbye(format!(
                "no hello within {} s ([daemon] hello_timeout)",
                limits.hello_timeout.as_secs_f64()
            ))
        })?;
        let payload = match hello {
            Ok(p) => p,
            Err(ReadError::Closed) => return Ok(false),
            Err(ReadError::Bad(e)) => return Err(goodbye(e)),
        };
        match vigil_proto::decode_hello(&payload) {
            Ok(Some((version, client))) if version == PROTOCOL_VERSION => {
                debug!(client, "hello");
                let welcome = ServerMsg::Welcome {
                    version: PROTOCOL_VERSION,
                    daemon_version: env!("CARGO_PKG_VERSION").into(),
                    pid: std::process::id(),
                };
                let _ = out_tx.send(Outgoing::msg(welcome));
            }
            Ok(Some((version, _))) => {
                return Err(goodbye(format!(
                    "protocol version {version} is not supported; this vigild speaks {PROTOCOL_VERSION}"
                )))
            }
            Ok(None) => return Err(goodbye("the first message must be Hello".into())),
            Err(e) => return Err(goodbye(e.to_string())),
        }
        loop {
            // Backpressure: while `in_flight` requests wait for their answers to be written, the next
            // request stays unread in the socket.
            // Most often there is room at once: then no wait, and no hang-up watch (whose timer would
            // be set and cleared for every request).
            let ready = shared.in_flight.try_acquire().ok();
            let permit = match ready {
                Some(p) => p,
                None => tokio::select! {
                p = shared.in_flight.acquire() => p.map_err(|_| "closed".to_string())?,
                _ = shared.kill.notified() => return Err(shared.killed().unwrap_or_default()),
                // The peer may hang up meanwhile: its waiting requests must go with it, though the
                // requests it left unread keep the socket readable.
                _ = hung_up(rd.get_ref()) => return Ok(false),
                },
            };
            // A whole frame read ahead with an earlier one, with room in the uid's budget, is taken at
            // once: no timer, no wake-up to arm, no copy of its payload (a pipelining client's frames).
            let ahead = match whole_frame(rd.buffer()) {
                Ok(Some(len)) if !shared.is_killed.load(Ordering::Acquire) => match &budget {
                    Some(b) => b
                        .clone()
                        .try_acquire_many_owned(cost(len, limits))
                        .ok()
                        .map(|p| (len, Some(p))),
                    None => Some((len, None)),
                },
                Ok(_) => None,
                Err(e) => return Err(goodbye(e.to_string())),
            };
            let (decoded, held) = match ahead {
                Some((len, held)) => {
                    let decoded = vigil_proto::decode::<ClientMsg>(&rd.buffer()[HEADER_LEN..HEADER_LEN + len]);
                    rd.consume(HEADER_LEN + len);
                    (decoded, held)
                }
                None => match read_request(&mut rd, &shared, budget.as_ref(), limits, caller.uid).await {
                    Ok((payload, held)) => (vigil_proto::decode::<ClientMsg>(&payload), held),
                    Err(NoRequest::Closed(clean)) => return Ok(clean),
                    Err(NoRequest::Bad(e)) => return Err(goodbye(e)),
                    Err(NoRequest::Ended(why)) => return Err(why),
                },
            };
            match decoded {
                Ok(ClientMsg::Request { id, body }) => {
                    // Given back by the writer once this request's answer is on the socket.
                    permit.forget();
                    let msg = Msg::Request {
                        caller,
                        id,
                        req: Box::new(body),
                        out: out_tx.clone(),
                        held,
                    };
                    if tx.send(msg).is_err() {
                        return Err(goodbye("vigild is shutting down".into()));
                    }
                }
                Ok(ClientMsg::Hello { .. }) => return Err(goodbye("Hello sent twice".into())),
                Err(e) => return Err(goodbye(e.to_string())),
            }
        }
    }
    .await;
    let result = match result {
        // The peer shut its writing end after its last request (`printf ... | nc -U` does): it still
        // reads, so its requests are answered before the loop forgets the connection.
        Ok(true) => {
            let all = u32::try_from(shared.max_in_flight).unwrap_or(u32::MAX);
            tokio::select! {
                _ = shared.in_flight.acquire_many(all) => {}
                _ = shared.kill.notified() => {}
                _ = hung_up(rd.get_ref()) => {}
            }
            Ok(())
        }
        Ok(false) => Ok(()),
        Err(e) => Err(e),
    };
    // The loop forgets what the connection held, its waiting requests included.
    let _ = tx.send(Msg::Closed { conn });
    drop(out_tx);
    if result.is_ok() || shared.killed().is_some() {
        // The client is gone, or it does not read: nothing to flush. Ending the writer drops its
        // subscription channel, which is how the loop learns to forget the subscriber.
        writer.abort();
    } else if tokio::time::timeout(Duration::from_secs(5), &mut writer).await.is_err() {
        // The writer ends once the Goodbye is out; a peer that does not take it is not waited for.
        writer.abort();
    }
    if result.is_ok() {
        debug!("disconnected");
    }
    result
}

#[cfg(test)]
mod tests;
