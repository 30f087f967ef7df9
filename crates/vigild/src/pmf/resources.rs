//! `Request::Resources`: a tag's user and group, limits, nice, umask, stderr log and tag group.

use vigil_proto::{Response, WireError};

use crate::state::Daemon;

impl Daemon {
    /// Anyone may read them, as a tag's status (which already shows its uid and command).
    pub fn resources(&self, tag: Option<String>) -> Result<Response, WireError> {
        let names = match tag {
            Some(t) => vec![self.known(&t)?],
            None => self.pmf.tags.keys().cloned().collect(),
        };
        Ok(Response::Resources(
            names
                .iter()
                .map(|n| crate::tag_res::to_wire(n, self.pmf.tags[n].tag.spec()))
                .collect(),
        ))
    }
}
