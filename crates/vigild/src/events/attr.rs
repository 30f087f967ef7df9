//! The attributes of an event, typed as the rules produce them.

/// A typed attribute, as rules produce them.
pub enum Attr {
    Str(String),
    Int(i64),
    Bool(bool),
}

pub fn attr_s(k: &str, v: impl Into<String>) -> (String, Attr) {
    (k.to_string(), Attr::Str(v.into()))
}

pub fn attr_i(k: &str, v: i64) -> (String, Attr) {
    (k.to_string(), Attr::Int(v))
}

pub fn attr_b(k: &str, v: bool) -> (String, Attr) {
    (k.to_string(), Attr::Bool(v))
}
