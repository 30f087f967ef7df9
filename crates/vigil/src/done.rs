//! What a command that changes something says it did: `web: stopped`, `web: started (pid 42)`; with
//! `--json`, a [`view::Done`] object.

use vigil_client::proto::json::{self as view, AttrValue, Pairs};
use vigil_client::proto::TagStatus;

use crate::output::{print_json, word};

/// One result line.
pub struct Done {
    subject: String,
    done: &'static str,
    state: Option<String>,
    details: Vec<(String, AttrValue)>,
    /// The text after `subject: done`, in parentheses.
    note: Option<String>,
}

impl Done {
    pub fn new(subject: &str, done: &'static str) -> Done {
        Done {
            subject: subject.into(),
            done,
            state: None,
            details: vec![],
            note: None,
        }
    }

    pub fn detail(mut self, key: &str, v: impl Into<AttrValue>) -> Done {
        self.details.push((key.into(), v.into()));
        self
    }

    pub fn note(mut self, note: impl Into<String>) -> Done {
        self.note = Some(note.into());
        self
    }

    /// The tag as it is now: its state, its main pid, and its state in the text where it is not what
    /// was done (`web: started (running, pid 42)`).
    pub fn tag(mut self, st: &TagStatus) -> Done {
        self.state = Some(st.state.clone());
        if let Some(pid) = st.main_pid.filter(|_| !st.procs.is_empty()) {
            self.details.push(("pid".into(), AttrValue::Int(pid.into())));
        }
        self
    }

    pub fn print(self, json: bool) {
        if json {
            return print_json(&view::Done {
                subject: self.subject,
                done: self.done.into(),
                state: self.state,
                details: Pairs(self.details),
            });
        }
        let mut notes: Vec<String> = self.note.into_iter().collect();
        if let Some(state) = self.state.as_deref().filter(|s| *s != self.done) {
            notes.push(word(state));
        }
        if let Some((_, AttrValue::Int(pid))) = self.details.iter().find(|(k, _)| k == "pid") {
            notes.push(format!("pid {pid}"));
        }
        let notes = if notes.is_empty() {
            String::new()
        } else {
            format!(" ({})", notes.join(", "))
        };
        println!("{}: {}{notes}", word(&self.subject), self.done);
    }
}
