//! Tags with resources (user and group, limits, nice, umask, stderr log, tag group), and tags named by
//! pattern or group.

use vigil_proto::{Request, Resources, Response, RunSpec, Supervision, TagResources, TagStatus};

use crate::{unexpected, Client, Result};

impl Client {
    /// `run` (or `run_once` with `once`) with resources. With none asked for, the plain request is sent,
    /// which a vigild without resources understands too.
    pub fn run_with(&mut self, spec: RunSpec, resources: Resources, once: bool) -> Result<TagStatus> {
        self.run_supervised_with(spec, Supervision::default(), resources, once)
    }

    /// `run_supervised` with resources: with none asked for, the request `run_supervised` sends (a plain
    /// `Run` for default settings), so that a vigild without resources understands it.
    pub fn run_supervised_with(
        &mut self,
        spec: RunSpec,
        supervision: Supervision,
        resources: Resources,
        once: bool,
    ) -> Result<TagStatus> {
        if resources == Resources::default() {
            return self.run_supervised(spec, supervision, once);
        }
        match self.request(Request::RunWith {
            spec: Box::new(spec),
            resources: Box::new(resources),
            once,
            supervision,
        })? {
            Response::Tag(t) => Ok(*t),
            other => Err(unexpected(other)),
        }
    }

    /// The resources of one tag, or of every tag.
    pub fn resources(&mut self, tag: Option<&str>) -> Result<Vec<TagResources>> {
        match self.request(Request::Resources {
            tag: tag.map(Into::into),
        })? {
            Response::Resources(r) => Ok(r),
            other => Err(unexpected(other)),
        }
    }

    /// The tags that `targets` name, each once, in the order named: a tag name, a glob (`web*`, `?`),
    /// or `@GROUP` (every tag whose `tag_group` is GROUP). A name that is no tag is kept (the request
    /// on it says so); a pattern or group that matches nothing is an error.
    pub fn select_tags(&mut self, targets: &[String]) -> Result<Vec<String>, SelectError> {
        let mut out: Vec<String> = Vec::new();
        let mut names: Option<Vec<String>> = None;
        let mut groups: Option<Vec<TagResources>> = None;
        for t in targets {
            let found: Vec<String> = if let Some(g) = t.strip_prefix('@') {
                if groups.is_none() {
                    groups = Some(self.resources(None)?);
                }
                groups
                    .as_ref()
                    .expect("fetched")
                    .iter()
                    .filter(|r| r.resources.tag_group.as_deref() == Some(g))
                    .map(|r| r.tag.clone())
                    .collect()
            } else if t.contains(['*', '?']) {
                if names.is_none() {
                    names = Some(self.list()?.into_iter().map(|s| s.name).collect());
                }
                names
                    .as_ref()
                    .expect("fetched")
                    .iter()
                    .filter(|n| vigil_proto::name_matches(t, n))
                    .cloned()
                    .collect()
            } else {
                vec![t.clone()]
            };
            if found.is_empty() {
                return Err(SelectError::NoMatch(t.clone()));
            }
            for f in found {
                if !out.contains(&f) {
                    out.push(f);
                }
            }
        }
        Ok(out)
    }
}

/// Why `select_tags` failed.
#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    #[error(transparent)]
    Client(#[from] crate::ClientError),
    /// A pattern or `@GROUP` that names no tag.
    #[error("{0} matches no tag")]
    NoMatch(String),
}
