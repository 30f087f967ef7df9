//! `Request::Resources`: a tag's user and group, limits, nice, umask, stderr log, timestamps and tag
//! group.

use vigil_proto::{Response, TagResources, WireError};

use crate::fit::{LIST_BUDGET, TRIM_BYTES, TRIM_ITEMS};
use crate::state::Daemon;

impl Daemon {
    /// Anyone may read them, as a tag's status (which already shows its uid and command).
    pub fn resources(&self, tag: Option<String>) -> Result<Response, WireError> {
        let names = match tag {
            Some(t) => {
                let n = self.known(&t)?;
                return Ok(Response::Resources(vec![crate::tag_res::to_wire(
                    &n,
                    self.pmf.tags[&n].tag.spec(),
                )]));
            }
            None => self.pmf.tags.keys().cloned().collect::<Vec<_>>(),
        };
        Ok(Response::Resources(fit(names
            .iter()
            .map(|n| crate::tag_res::to_wire(n, self.pmf.tags[n].tag.spec()))
            .collect())))
    }
}

/// The list of every tag's resources fits one frame, whatever the users put in their tags (as
/// `crate::fit` does for statuses): it leaves out stderr logs, cuts names and supplementary groups,
/// and, if that is still too much, keeps of each tag only what selects it: name, ids and tag group.
/// `vigil status TAG` asks for one tag, which is always whole.
pub fn fit(mut all: Vec<TagResources>) -> Vec<TagResources> {
    let cut = |s: &mut Option<String>| {
        if let Some(v) = s.as_mut().filter(|v| v.len() > TRIM_BYTES) {
            let mut at = TRIM_BYTES;
            while !v.is_char_boundary(at) {
                at -= 1;
            }
            v.truncate(at);
        }
    };
    for r in &mut all {
        r.resources.stderr_log = None;
        r.groups.truncate(TRIM_ITEMS);
        cut(&mut r.user);
        cut(&mut r.group);
        cut(&mut r.resources.user);
        cut(&mut r.resources.group);
    }
    let size: usize = all
        .iter()
        .map(|r| postcard::to_allocvec(r).map_or(usize::MAX / 4, |v| v.len()))
        .sum();
    if size > LIST_BUDGET {
        for r in &mut all {
            *r = TagResources {
                tag: std::mem::take(&mut r.tag),
                uid: r.uid,
                gid: r.gid,
                user: None,
                group: None,
                groups: Vec::new(),
                resources: vigil_proto::Resources {
                    tag_group: r.resources.tag_group.take(),
                    ..Default::default()
                },
            };
        }
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_fits_a_frame() {
        let one = |i: usize| TagResources {
            tag: format!("t{i:0>200}"),
            uid: 1,
            gid: 1,
            user: Some("u".repeat(300)),
            group: None,
            groups: (0..100).collect(),
            resources: vigil_proto::Resources {
                stderr_log: Some(format!("/{}", "x".repeat(4000))),
                tag_group: Some("web".into()),
                ..Default::default()
            },
        };
        let few = fit((0..3).map(one).collect());
        assert_eq!(few[0].user.as_ref().map(String::len), Some(TRIM_BYTES));
        assert_eq!(
            (few[0].groups.len(), few[0].resources.stderr_log.is_none()),
            (TRIM_ITEMS, true)
        );
        let many = fit((0..10_000).map(one).collect());
        assert_eq!(many.len(), 10_000);
        assert!(many
            .iter()
            .all(|r| r.user.is_none() && r.resources.tag_group.as_deref() == Some("web")));
        let bytes = postcard::to_allocvec(&many).unwrap().len();
        assert!(bytes < LIST_BUDGET, "{bytes}");
    }
}
