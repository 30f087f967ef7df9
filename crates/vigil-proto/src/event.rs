//! Events: numbered, timed, named facts about the node, with typed attributes, and the filters that
//! select them.

use serde::{Deserialize, Serialize};

/// A typed attribute value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Value {
    Str(String),
    Int(i64),
    Bool(bool),
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Str(s) => f.write_str(s),
            Value::Int(i) => write!(f, "{i}"),
            Value::Bool(b) => write!(f, "{b}"),
        }
    }
}

/// One event: a sequence number that only grows (across restarts of vigild), a time, a name in the
/// `sys.*` families, the node, the object it is about, and attributes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub seq: u64,
    pub time_ms: u64,
    pub name: String,
    pub node: String,
    /// The tag, the category, or the daemon.
    pub subject: String,
    pub attrs: Vec<(String, Value)>,
}

impl Event {
    /// The attribute `key`, if present.
    pub fn attr(&self, key: &str) -> Option<&Value> {
        self.attrs.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
}

/// Which events a reader wants. Empty fields match everything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct EventFilter {
    /// Name patterns, any of which may match: a glob with `*` and `?`, or a prefix ending at a dot
    /// (`sys.unix.psm` matches `sys.unix.psm.instance.exited`).
    pub names: Vec<String>,
    /// Only events about this PSM category.
    pub category: Option<String>,
    /// Only events about this PMF tag.
    pub tag: Option<String>,
}

impl EventFilter {
    pub fn matches(&self, e: &Event) -> bool {
        if !self.names.is_empty() && !self.names.iter().any(|p| name_matches(p, &e.name)) {
            return false;
        }
        if let Some(c) = &self.category {
            if !(e.name.starts_with("sys.unix.psm.")
                && (e.subject == *c || e.attr("category") == Some(&Value::Str(c.clone()))))
            {
                return false;
            }
        }
        if let Some(t) = &self.tag {
            if !(e.name.starts_with("sys.vigil.pmf.") && e.subject == *t) {
                return false;
            }
        }
        true
    }
}

/// A glob (`*` any run, `?` one character) or a dotted prefix.
pub fn name_matches(pattern: &str, name: &str) -> bool {
    if pattern.contains(['*', '?']) {
        return glob(pattern.as_bytes(), name.as_bytes());
    }
    name == pattern
        || name
            .strip_prefix(pattern)
            .is_some_and(|rest| rest.starts_with('.') || pattern.ends_with('.'))
}

fn glob(p: &[u8], s: &[u8]) -> bool {
    // Iterative matching with one backtrack point: linear in practice, no recursion blow-up.
    let (mut pi, mut si, mut star, mut mark) = (0, 0, None, 0);
    while si < s.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = si;
            pi += 1;
        } else if let Some(st) = star {
            pi = st + 1;
            mark += 1;
            si = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert!(name_matches("sys.unix.psm", "sys.unix.psm.instance.exited"));
        assert!(!name_matches("sys.unix.ps", "sys.unix.psm.instance.exited"));
        assert!(name_matches("sys.*.exited", "sys.unix.psm.instance.exited"));
        assert!(name_matches("sys.vigil.pmf.tag.?xit", "sys.vigil.pmf.tag.exit"));
        assert!(!name_matches("sys.*.start", "sys.vigil.pmf.tag.exit"));
        assert!(name_matches("*", "anything"));
    }
}
