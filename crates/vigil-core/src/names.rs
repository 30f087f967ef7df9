//! Names a user chooses, checked once at the edge so the rest of vigil can trust them.

use std::fmt;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("tag name is empty")]
    Empty,
    #[error("tag name is {len} bytes long; the limit is {max}")]
    TooLong { len: usize, max: usize },
    #[error("tag name {name:?} contains {what}; use letters, digits and . _ - : @ + ,")]
    BadChar { name: String, what: &'static str },
}

/// The name of a PMF tag: 1 to 240 bytes of letters, digits and `. _ - : @ + ,`.
///
/// The name becomes part of file names (logs) and CMAP keys, hence the narrow alphabet. The comma is
/// there for Solaris Cluster's tags, `<group>,<resource>,<instance>.svc` (libdsdev, pmfadm scripts).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TagName(String);

impl TagName {
    /// The longest name a new tag may have. Every file named after a tag must fit in NAME_MAX (255
    /// bytes): the longest is its oldest rotated log, `NAME.log.100` (`log_keep` is at most 100), 8
    /// bytes more than the name; the rest is a margin for names derived later.
    pub const MAX_LEN: usize = 240;
    /// The longest name an existing tag may have: older versions allowed up to 255 bytes, and a tag
    /// stored then must stay reachable (to be stopped and removed) rather than be dropped with its
    /// processes left unsupervised.
    pub const MAX_STORED_LEN: usize = 255;

    /// Checks the name of a new tag.
    pub fn new(name: &str) -> Result<TagName, NameError> {
        Self::check(name, Self::MAX_LEN)
    }

    /// Checks the name of a tag that may already exist (a lookup, a stored record, a dependency): the
    /// same rules with the older length limit.
    pub fn existing(name: &str) -> Result<TagName, NameError> {
        Self::check(name, Self::MAX_STORED_LEN)
    }

    fn check(name: &str, max: usize) -> Result<TagName, NameError> {
        if name.is_empty() {
            return Err(NameError::Empty);
        }
        if name.len() > max {
            return Err(NameError::TooLong { len: name.len(), max });
        }
        for c in name.chars() {
            let what = if c.is_control() {
                "a control character"
            } else if c.is_whitespace() {
                "whitespace"
            } else if c == '/' {
                "a '/'"
            } else if !(c.is_alphanumeric() || "._-:@+,".contains(c)) {
                "a character outside the allowed set"
            } else {
                continue;
            };
            return Err(NameError::BadChar {
                name: name.escape_debug().to_string(),
                what,
            });
        }
        if name == "." || name == ".." {
            return Err(NameError::BadChar {
                name: name.to_string(),
                what: "only dots",
            });
        }
        Ok(TagName(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TagName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let cases: &[(&str, bool)] = &[
            ("web", true),
            ("db-1.main_x:2@a+b", true),
            ("web-rg,web-rs,0.svc", true),
            ("", false),
            ("has space", false),
            ("a/b", false),
            ("tab\there", false),
            ("nl\n", false),
            ("..", false),
            ("semi;colon", false),
        ];
        for (name, ok) in cases {
            assert_eq!(TagName::new(name).is_ok(), *ok, "{name:?}");
        }
        assert!(TagName::new(&"x".repeat(240)).is_ok());
        assert_eq!(
            TagName::new(&"x".repeat(241)),
            Err(NameError::TooLong { len: 241, max: 240 })
        );
        assert_eq!(
            TagName::new(&"x".repeat(255)).unwrap_err().to_string(),
            "tag name is 255 bytes long; the limit is 240"
        );
        // A tag stored by an older version keeps its name.
        assert!(TagName::existing(&"x".repeat(255)).is_ok());
        assert!(TagName::existing(&"x".repeat(256)).is_err());
        assert!(TagName::existing("a/b").is_err());
    }
}
