//! Live streams as Server-Sent Events: the event stream with replay (`Last-Event-ID` or `?since=` is
//! the sequence number the client has; it gets every later event, and a `lost` event where the
//! history or its queue dropped some, never a silent gap), and CMAP tracking by key or prefix.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::json;
use vigil_proto::{Request, ServerMsg};

use crate::http::auth::Asker;
use crate::http::call::Api;
use crate::http::errors::HttpError;
use crate::http::json::cmap_note;
use crate::http::routes::{self, filter, LogsQ, Q};

#[derive(Debug, Default, Deserialize)]
pub struct EventsQ {
    /// The last sequence number the client has (0: every stored event).
    since: Option<u64>,
    name: Option<String>,
    tag: Option<String>,
    category: Option<String>,
}

fn keep_alive() -> KeepAlive {
    // Also how a vanished client is noticed while nothing happens.
    KeepAlive::new().interval(Duration::from_secs(15))
}

fn data(v: serde_json::Value) -> SseEvent {
    SseEvent::default().data(v.to_string())
}

/// `GET /api/events`.
pub async fn events(
    State(api): State<Arc<Api>>,
    who: Asker,
    headers: HeaderMap,
    Q(q): Q<EventsQ>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, HttpError> {
    // A reconnecting EventSource sends the id of the last event it received; it wins over the URL's
    // `since`, which only said where the first connection started.
    let last = match headers.get("last-event-id").map(|v| v.to_str().map(str::trim)) {
        Some(Ok(v)) if !v.is_empty() => Some(
            v.parse::<u64>()
                .map_err(|_| HttpError::bad(format!("Last-Event-ID {v:?} is not a sequence number")))?,
        ),
        Some(Err(_)) => return Err(HttpError::bad("Last-Event-ID is not text")),
        _ => None,
    };
    let after = last.or(q.since);
    let mut session = who.session(&api);
    let req = Request::Subscribe {
        after,
        filter: filter(q.name.as_deref(), q.tag, q.category),
    };
    let (_, rx) = session.ask(req).await?;
    let rx = rx.ok_or_else(|| HttpError::bad("the subscription gave no stream"))?;
    let s = stream::unfold((session, rx), |(session, mut rx)| async move {
        loop {
            let ev = match rx.recv().await? {
                ServerMsg::Event(e) => SseEvent::default()
                    .id(e.seq.to_string())
                    .data(crate::http::json::event(&e).to_string()),
                // Resuming after `to` is right: the events up to it are gone for good.
                ServerMsg::Lost { from, to } => {
                    data(json!({ "from": from, "to": to })).event("lost").id(to.to_string())
                }
                _ => continue,
            };
            return Some((Ok(ev), (session, rx)));
        }
    });
    Ok(Sse::new(s).keep_alive(keep_alive()))
}

#[derive(Debug, Default, Deserialize)]
pub struct TrackQ {
    key: Option<String>,
    prefix: Option<String>,
}

/// `GET /api/cmap/track?prefix=` (or `?key=`): additions, deletions and changes as `cmap` events.
pub async fn cmap_track(
    State(api): State<Arc<Api>>,
    who: Asker,
    Q(q): Q<TrackQ>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, HttpError> {
    const ALL: u32 = 4 | 1 | 2;
    const PREFIX: u32 = 8;
    let (key, flags) = match (q.key, q.prefix) {
        (Some(k), None) => (k, ALL),
        (None, Some(p)) => (p, ALL | PREFIX),
        _ => return Err(HttpError::bad("give one of ?key= and ?prefix=")),
    };
    let mut session = who.session(&api);
    let req = Request::CmapTrackAdd {
        map: vigil_proto::CmapMap::Main,
        key,
        flags,
        context: 0,
    };
    session.ask(req).await?;
    let s = stream::unfold(session, |mut session| async move {
        loop {
            let ev = match session.pushed().await? {
                ServerMsg::CmapNotify(n) => data(cmap_note(&n)).event("cmap"),
                ServerMsg::CmapLost { count } => data(json!({ "count": count })).event("lost"),
                _ => continue,
            };
            return Some((Ok(ev), session));
        }
    });
    Ok(Sse::new(s).keep_alive(keep_alive()))
}

/// A followed log: where reading goes on, and the end of a line not yet complete.
struct Follow {
    f: std::fs::File,
    pos: u64,
    partial: Vec<u8>,
}

/// Bytes read from a followed log a tick.
const FOLLOW_READ: usize = 64 << 10;

impl Follow {
    /// Opens a log at its end ([`routes::open_log`]).
    fn open(log: &routes::LogFile) -> std::io::Result<Follow> {
        use std::io::Seek;
        let mut f = routes::open_log(&log.path, log.owner)?;
        let pos = f.seek(std::io::SeekFrom::End(0))?;
        Ok(Follow {
            f,
            pos,
            partial: Vec::new(),
        })
    }

    /// The complete lines written since the last look, if any; a line longer than any reader wants
    /// is sent as it is. The file shrank: it was truncated, reading starts again at its beginning.
    fn step(&mut self) -> std::io::Result<Option<Vec<String>>> {
        use std::io::{Read, Seek};
        let len = self.f.metadata()?.len();
        if len < self.pos {
            self.pos = 0;
            self.partial.clear();
        }
        if len == self.pos {
            return Ok(None);
        }
        self.f.seek(std::io::SeekFrom::Start(self.pos))?;
        let mut buf = Vec::new();
        let n = (&mut self.f).take(FOLLOW_READ as u64).read_to_end(&mut buf)?;
        self.pos += n as u64;
        self.partial.extend_from_slice(&buf);
        let Some(end) = self.partial.iter().rposition(|b| *b == b'\n') else {
            if self.partial.len() < FOLLOW_READ {
                return Ok(None);
            }
            let taken = std::mem::take(&mut self.partial);
            return Ok(Some(vec![String::from_utf8_lossy(&taken).into_owned()]));
        };
        let done: Vec<u8> = self.partial.drain(..=end).collect();
        Ok(Some(String::from_utf8_lossy(&done).lines().map(String::from).collect()))
    }
}

/// `GET /api/tags/{tag}/logs`: the last lines as JSON; with `?follow=true`, then every new line as
/// `log` events `{"lines": [...]}`, across rotations (a copy-and-truncate: the file shrinks, reading
/// starts again at its beginning). The file is looked at twice a second: a log has no event to wait on
/// that would not cost vigild a watch per follower. Every look is done in the blocking pool, never on
/// the runtime's threads (a file on a slow disk must not stall the other connections).
pub async fn logs(
    State(api): State<Arc<Api>>,
    who: Asker,
    Path(tag): Path<String>,
    Q(q): Q<LogsQ>,
) -> Result<Response, HttpError> {
    if !q.follow {
        return Ok(routes::logs(&api, who, tag, &q).await?.into_response());
    }
    let first = routes::logs(&api, who, tag.clone(), &q).await?.0;
    let log = routes::log_path(&api, who, &tag).await?;
    let follow = tokio::task::spawn_blocking(move || Follow::open(&log))
        .await
        .map_err(|e| HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
        .map_err(|e| HttpError::new(StatusCode::NOT_FOUND, "not_found", format!("no log for tag {tag}: {e}")))?;
    let head = stream::once(async move { Ok::<_, Infallible>(data(json!({ "lines": first["lines"] })).event("log")) });
    let tick = tokio::time::interval(Duration::from_millis(500));
    let rest = stream::unfold((follow, tick), |(mut follow, mut tick)| async move {
        loop {
            tick.tick().await;
            let (back, lines) = tokio::task::spawn_blocking(move || {
                let r = follow.step();
                (follow, r)
            })
            .await
            .ok()?;
            follow = back;
            match lines {
                Ok(Some(lines)) => {
                    return Some((Ok(data(json!({ "lines": lines })).event("log")), (follow, tick)));
                }
                Ok(None) => continue,
                Err(_) => return None,
            }
        }
    });
    Ok(Sse::new(head.chain(rest)).keep_alive(keep_alive()).into_response())
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::unix::fs::MetadataExt;

    use super::*;

    fn log(dir: &std::path::Path) -> (std::path::PathBuf, routes::LogFile) {
        let p = dir.join("t.log");
        std::fs::write(&p, "before\n").unwrap();
        let owner = std::fs::metadata(&p).unwrap().uid();
        let path = p.to_str().unwrap().to_string();
        (p, routes::LogFile { path, owner })
    }

    #[test]
    fn follow_gives_whole_lines_from_the_end_and_starts_again_after_a_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let (p, lf) = log(dir.path());
        let mut f = Follow::open(&lf).unwrap();
        assert_eq!(f.step().unwrap(), None, "what was there before is not followed");
        let mut w = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        w.write_all(b"one\ntw").unwrap();
        assert_eq!(f.step().unwrap(), Some(vec!["one".to_string()]));
        // The end of a line waits for its newline.
        assert_eq!(f.step().unwrap(), None);
        w.write_all(b"o\n").unwrap();
        assert_eq!(f.step().unwrap(), Some(vec!["two".to_string()]));
        // Copy-and-truncate: reading starts again at the beginning.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(0)
            .unwrap();
        assert_eq!(f.step().unwrap(), None);
        w.write_all(b"three\n").unwrap();
        assert_eq!(f.step().unwrap(), Some(vec!["three".to_string()]));
        // A line longer than a read is sent as it is.
        w.write_all(&vec![b'x'; FOLLOW_READ]).unwrap();
        assert_eq!(f.step().unwrap().map(|l| l[0].len()), Some(FOLLOW_READ));
    }

    #[test]
    fn follow_opens_only_the_regular_file_of_the_owner_checked() {
        let dir = tempfile::tempdir().unwrap();
        let (p, lf) = log(dir.path());
        let wrong = routes::LogFile {
            path: lf.path.clone(),
            owner: lf.owner + 1,
        };
        let e = Follow::open(&wrong).err().unwrap();
        assert!(e.to_string().contains("belongs to uid"), "{e}");
        let link = dir.path().join("link.log");
        std::os::unix::fs::symlink(&p, &link).unwrap();
        let via_link = routes::LogFile {
            path: link.to_str().unwrap().to_string(),
            owner: lf.owner,
        };
        assert!(Follow::open(&via_link).is_err(), "a symbolic link is not followed");
        let fifo = dir.path().join("fifo.log");
        assert!(std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success());
        let fifo = routes::LogFile {
            path: fifo.to_str().unwrap().to_string(),
            owner: lf.owner,
        };
        let e = Follow::open(&fifo).err().unwrap();
        assert!(e.to_string().contains("not a regular file"), "{e}");
    }
}
