//! The REST routes: one handler per operation, each a protocol request sent as the caller
//! (docs/http.md lists them).

use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Arc;

use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::Json;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;
use vigil_proto::{CmapMap, EventFilter, PsmNode, Request, Response};

use crate::http::auth::{Asker, JsonBody};
use crate::http::call::Api;
use crate::http::errors::HttpError;
use crate::http::json::{
    self, CategoryBody, CmapBody, Empty, KillBody, MemberBody, ModifyBody, RunBody, StateBody, StopBody,
};

/// The query string, with errors as JSON.
pub struct Q<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Q<T> {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, s: &S) -> Result<Q<T>, HttpError> {
        axum::extract::Query::<T>::from_request_parts(parts, s)
            .await
            .map(|q| Q(q.0))
            .map_err(|e| HttpError::bad(format!("bad query string: {}", e.body_text())))
    }
}

/// `?node=`: cluster mode, carried out by that node.
#[derive(Debug, Default, Deserialize)]
pub struct NodeQ {
    pub node: Option<String>,
}

fn on(node: &NodeQ, req: Request) -> Request {
    match &node.node {
        Some(n) => Request::OnNode {
            node: n.clone(),
            body: Box::new(req),
        },
        None => req,
    }
}

type Answer = Result<Json<Value>, HttpError>;

async fn ask(api: &Arc<Api>, who: Asker, req: Request) -> Result<Response, HttpError> {
    let mut s = who.session(api);
    Ok(s.ask(req).await?.0)
}

async fn answer(api: &Arc<Api>, who: Asker, req: Request) -> Answer {
    Ok(Json(json::response(&ask(api, who, req).await?)))
}

pub async fn tags(State(api): State<Arc<Api>>, who: Asker, Q(n): Q<NodeQ>) -> Answer {
    answer(&api, who, on(&n, Request::Status { tag: None })).await
}

/// One tag's status (the protocol answers a list of one).
async fn status_of(api: &Arc<Api>, who: Asker, n: &NodeQ, tag: &str) -> Result<vigil_proto::TagStatus, HttpError> {
    match ask(
        api,
        who,
        on(
            n,
            Request::Status {
                tag: Some(tag.to_string()),
            },
        ),
    )
    .await?
    {
        Response::Tag(t) => Ok(*t),
        Response::Tags(mut t) if t.len() == 1 => Ok(t.remove(0)),
        _ => Err(HttpError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("the status of tag {tag} came in an unexpected form"),
        )),
    }
}

pub async fn tag(State(api): State<Arc<Api>>, who: Asker, Path(tag): Path<String>, Q(n): Q<NodeQ>) -> Answer {
    let t = status_of(&api, who, &n, &tag).await?;
    Ok(Json(json::tag(&t)))
}

#[derive(Debug, Default, Deserialize)]
pub struct RunQ {
    node: Option<String>,
    /// `RunOnce`: safe to send again after a lost answer.
    #[serde(default)]
    once: bool,
}

pub async fn run(
    State(api): State<Arc<Api>>,
    who: Asker,
    Q(q): Q<RunQ>,
    JsonBody(body): JsonBody<RunBody>,
) -> Result<HttpResponse, HttpError> {
    let spec = body.spec();
    let req = if q.once {
        Request::RunOnce(Box::new(spec))
    } else {
        Request::Run(Box::new(spec))
    };
    let r = ask(&api, who, on(&NodeQ { node: q.node }, req)).await?;
    Ok((StatusCode::CREATED, Json(json::response(&r))).into_response())
}

pub async fn start(
    State(api): State<Arc<Api>>,
    who: Asker,
    Path(tag): Path<String>,
    Q(n): Q<NodeQ>,
    JsonBody(_): JsonBody<Empty>,
) -> Answer {
    answer(&api, who, on(&n, Request::Start { tag })).await
}

pub async fn restart(
    State(api): State<Arc<Api>>,
    who: Asker,
    Path(tag): Path<String>,
    Q(n): Q<NodeQ>,
    JsonBody(_): JsonBody<Empty>,
) -> Answer {
    answer(&api, who, on(&n, Request::Restart { tag })).await
}

pub async fn stop(
    State(api): State<Arc<Api>>,
    who: Asker,
    Path(tag): Path<String>,
    Q(n): Q<NodeQ>,
    JsonBody(b): JsonBody<StopBody>,
) -> Answer {
    let req = Request::Stop {
        tag,
        signal: b.signal,
        wait_ms: b.wait_ms,
    };
    answer(&api, who, on(&n, req)).await
}

pub async fn kill(
    State(api): State<Arc<Api>>,
    who: Asker,
    Path(tag): Path<String>,
    Q(n): Q<NodeQ>,
    JsonBody(b): JsonBody<KillBody>,
) -> Answer {
    let req = Request::Kill {
        tag,
        signal: b.signal,
        wait_ms: b.wait_ms,
    };
    answer(&api, who, on(&n, req)).await
}

pub async fn modify(
    State(api): State<Arc<Api>>,
    who: Asker,
    Path(tag): Path<String>,
    Q(n): Q<NodeQ>,
    JsonBody(b): JsonBody<ModifyBody>,
) -> Answer {
    let req = Request::Modify {
        tag,
        retries: b.retries,
        period: b.period,
    };
    answer(&api, who, on(&n, req)).await
}

#[derive(Debug, Default, Deserialize)]
pub struct RemoveQ {
    node: Option<String>,
    wait_ms: Option<u64>,
}

pub async fn remove(State(api): State<Arc<Api>>, who: Asker, Path(tag): Path<String>, Q(q): Q<RemoveQ>) -> Answer {
    let req = Request::Remove {
        tag,
        wait_ms: q.wait_ms,
    };
    answer(&api, who, on(&NodeQ { node: q.node }, req)).await
}

#[derive(Debug, Default, Deserialize)]
pub struct LogsQ {
    pub lines: Option<usize>,
    /// Then new lines as they are written, as Server-Sent Events.
    #[serde(default)]
    pub follow: bool,
}

/// A tag's log as the loop told it: its path, and the owner its file must have when it is opened (the
/// tag's user, or vigild's own when vigild is not root: `pmf::logs` gives it so).
pub struct LogFile {
    pub path: String,
    pub owner: u32,
}

/// The log of a tag, for its owner or root (logs may hold secrets: docs/security.md).
pub async fn log_path(api: &Arc<Api>, who: Asker, tag: &str) -> Result<LogFile, HttpError> {
    let status = status_of(api, who, &NodeQ::default(), tag).await?;
    if who.uid != 0 && who.uid != status.uid {
        return Err(HttpError::new(
            StatusCode::FORBIDDEN,
            "permission_denied",
            format!(
                "the log of tag {tag} is readable by its user (uid {}) and root only",
                status.uid
            ),
        ));
    }
    let me = vigil_sys::getuid();
    Ok(LogFile {
        path: status.log_path,
        owner: if me == 0 { status.uid } else { me },
    })
}

/// The last lines of a tag's log, for its owner or root.
pub async fn logs(api: &Arc<Api>, who: Asker, tag: String, q: &LogsQ) -> Answer {
    let LogFile { path, owner } = log_path(api, who, &tag).await?;
    let lines = q.lines.unwrap_or(100).min(10_000);
    let p = path.clone();
    let text = tokio::task::spawn_blocking(move || tail(&p, owner, lines))
        .await
        .map_err(|e| HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
        .map_err(|e| HttpError::new(StatusCode::NOT_FOUND, "not_found", format!("no log for tag {tag}: {e}")))?;
    Ok(Json(serde_json::json!({ "tag": tag, "path": path, "lines": text })))
}

/// The last `n` lines of a file, from at most its last 1 MiB; never through a symbolic link.
fn tail(path: &str, owner: u32, n: usize) -> std::io::Result<Vec<String>> {
    let mut f = open_log(path, owner)?;
    let len = f.metadata()?.len();
    let from = len.saturating_sub(1 << 20);
    f.seek(SeekFrom::Start(from))?;
    let mut buf = Vec::new();
    f.take(1 << 20).read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf);
    let mut all: Vec<&str> = text.lines().collect();
    if from > 0 && !all.is_empty() {
        // The first line read is likely cut.
        all.remove(0);
    }
    let start = all.len().saturating_sub(n);
    Ok(all[start..].iter().map(|s| s.to_string()).collect())
}

/// Opens a tag's log for reading: never through a symbolic link, only a regular file (not a FIFO that
/// would block, nor a device), and only the one the permission was checked for: between the loop's
/// answer and the open, the tag may have been removed and its name taken by another user, whose new log
/// has that user as its owner.
pub(crate) fn open_log(path: &str, owner: u32) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::MetadataExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    let m = f.metadata()?;
    if !m.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    if m.uid() != owner {
        return Err(std::io::Error::other(format!(
            "the file belongs to uid {}, not to the tag's uid {owner} (the tag was replaced meanwhile)",
            m.uid()
        )));
    }
    Ok(f)
}

#[derive(Debug, Default, Deserialize)]
pub struct EventsQ {
    #[serde(default)]
    after: u64,
    limit: Option<u32>,
    name: Option<String>,
    tag: Option<String>,
    category: Option<String>,
    node: Option<String>,
}

/// The filter of `?name=a,b&tag=&category=`.
pub fn filter(name: Option<&str>, tag: Option<String>, category: Option<String>) -> EventFilter {
    EventFilter {
        names: name
            .map(|n| n.split(',').filter(|s| !s.is_empty()).map(String::from).collect())
            .unwrap_or_default(),
        category,
        tag,
    }
}

pub async fn stored_events(State(api): State<Arc<Api>>, who: Asker, Q(q): Q<EventsQ>) -> Answer {
    let req = Request::Events {
        after: q.after,
        limit: q.limit.unwrap_or(1000).min(10_000),
        filter: filter(q.name.as_deref(), q.tag, q.category),
    };
    answer(&api, who, on(&NodeQ { node: q.node }, req)).await
}

fn psm_node(n: &NodeQ) -> PsmNode {
    PsmNode(n.node.clone().unwrap_or_default())
}

pub async fn psm_categories(State(api): State<Arc<Api>>, who: Asker, Q(n): Q<NodeQ>) -> Answer {
    answer(&api, who, Request::PsmCategoryList { node: psm_node(&n) }).await
}

pub async fn psm_category_add(
    State(api): State<Arc<Api>>,
    who: Asker,
    Q(n): Q<NodeQ>,
    JsonBody(b): JsonBody<CategoryBody>,
) -> Result<HttpResponse, HttpError> {
    let req = Request::PsmCategoryAdd {
        node: psm_node(&n),
        category: b.category,
    };
    let r = ask(&api, who, req).await?;
    Ok((StatusCode::CREATED, Json(json::response(&r))).into_response())
}

pub async fn psm_category_remove(
    State(api): State<Arc<Api>>,
    who: Asker,
    Path(category): Path<String>,
    Q(n): Q<NodeQ>,
) -> Answer {
    answer(
        &api,
        who,
        Request::PsmCategoryRemove {
            node: psm_node(&n),
            category,
        },
    )
    .await
}

#[derive(Debug, Default, Deserialize)]
pub struct MembersQ {
    node: Option<String>,
    category: Option<String>,
    pid: Option<i32>,
}

pub async fn psm_members(State(api): State<Arc<Api>>, who: Asker, Q(q): Q<MembersQ>) -> Answer {
    let req = Request::PsmGet {
        node: PsmNode(q.node.unwrap_or_default()),
        category: q.category,
        pid: q.pid,
    };
    answer(&api, who, req).await
}

pub async fn psm_member_add(
    State(api): State<Arc<Api>>,
    who: Asker,
    Q(n): Q<NodeQ>,
    JsonBody(b): JsonBody<MemberBody>,
) -> Result<HttpResponse, HttpError> {
    let req = Request::PsmAdd {
        node: psm_node(&n),
        category: b.category,
        pid: b.pid,
    };
    let r = ask(&api, who, req).await?;
    Ok((StatusCode::CREATED, Json(json::response(&r))).into_response())
}

pub async fn psm_member_remove(
    State(api): State<Arc<Api>>,
    who: Asker,
    Path(pid): Path<i32>,
    Q(q): Q<MembersQ>,
) -> Answer {
    let req = Request::PsmRemove {
        node: PsmNode(q.node.unwrap_or_default()),
        category: q.category,
        pid,
    };
    answer(&api, who, req).await
}

pub async fn psm_member_state(
    State(api): State<Arc<Api>>,
    who: Asker,
    Path(pid): Path<i32>,
    Q(n): Q<NodeQ>,
    JsonBody(b): JsonBody<StateBody>,
) -> Answer {
    let req = Request::PsmSetState {
        node: psm_node(&n),
        category: b.category,
        pid,
        state: b.state,
    };
    answer(&api, who, req).await
}

#[derive(Debug, Default, Deserialize)]
pub struct CmapQ {
    #[serde(default)]
    prefix: String,
    /// `stats` for corosync's stats map.
    map: Option<String>,
    node: Option<String>,
}

fn map_of(m: Option<&str>) -> Result<CmapMap, HttpError> {
    match m {
        None | Some("main") => Ok(CmapMap::Main),
        Some("stats") => Ok(CmapMap::Stats),
        Some(o) => Err(HttpError::bad(format!("map={o}: the maps are main and stats"))),
    }
}

pub async fn cmap_list(State(api): State<Arc<Api>>, who: Asker, Q(q): Q<CmapQ>) -> Answer {
    let req = Request::CmapIter {
        map: map_of(q.map.as_deref())?,
        prefix: q.prefix,
    };
    answer(&api, who, on(&NodeQ { node: q.node }, req)).await
}

pub async fn cmap_get(State(api): State<Arc<Api>>, who: Asker, Path(key): Path<String>, Q(q): Q<CmapQ>) -> Answer {
    let req = Request::CmapGet {
        map: map_of(q.map.as_deref())?,
        key: key.clone(),
        ty: None,
    };
    let mut v = json::response(&ask(&api, who, on(&NodeQ { node: q.node }, req)).await?);
    v["key"] = Value::String(key);
    Ok(Json(v))
}

pub async fn cmap_set(
    State(api): State<Arc<Api>>,
    who: Asker,
    Path(key): Path<String>,
    Q(n): Q<NodeQ>,
    JsonBody(b): JsonBody<CmapBody>,
) -> Answer {
    let text = b.text().map_err(HttpError::bad)?;
    let req = Request::CmapSetText {
        key,
        ty: b.ty,
        text,
        persist: b.persist,
    };
    answer(&api, who, on(&n, req)).await
}

pub async fn cmap_delete(State(api): State<Arc<Api>>, who: Asker, Path(key): Path<String>, Q(n): Q<NodeQ>) -> Answer {
    answer(&api, who, on(&n, Request::CmapDelete { key })).await
}

pub async fn sam(State(api): State<Arc<Api>>, who: Asker, Q(n): Q<NodeQ>) -> Answer {
    answer(&api, who, on(&n, Request::SamList)).await
}

pub async fn quorum(State(api): State<Arc<Api>>, who: Asker) -> Answer {
    // The track it sets up goes with the session, at the end of this request.
    answer(&api, who, Request::QuorumTrack).await
}

pub async fn nodes(State(api): State<Arc<Api>>, who: Asker) -> Answer {
    answer(&api, who, Request::Nodes).await
}

pub async fn daemon(State(api): State<Arc<Api>>, who: Asker, Q(n): Q<NodeQ>) -> Answer {
    answer(&api, who, on(&n, Request::DaemonStatus)).await
}

/// Who the request acts as: the dashboard shows buttons only for what the viewer may change.
pub async fn whoami(who: Asker) -> Json<Value> {
    Json(serde_json::json!({ "uid": who.uid, "gid": who.gid }))
}

pub async fn not_found() -> HttpError {
    HttpError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such route: see /api/openapi.json",
    )
}
