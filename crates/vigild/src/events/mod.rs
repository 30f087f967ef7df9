//! The node's event stream: numbering, storing, filtering, and delivery to subscribers that never blocks
//! vigild. A subscriber that falls behind loses events, and is told exactly which: loss is never silent.

pub mod attr;
pub mod subscription;

pub use attr::{attr_b, attr_i, attr_s, Attr};
pub use subscription::{Delivery, Events, Subscription};

use tokio::sync::mpsc;
use tracing::{info, warn};
use vigil_proto::{ErrorCode, EventFilter, Response, ServerMsg, WireError};
use vigil_store::{AttrRecord, EventRecord};

use crate::clock::now;
use crate::conn::{ConnTx, Outgoing};
use crate::state::Daemon;

impl Daemon {
    /// Numbers an event and queues it for the store; it reaches subscribers once it is stored.
    /// Posts an event. Its text attributes are cut to [`MAX_ATTR_BYTES`]: many come from users (a SAM
    /// supervisor's reason, a failure text quoting what they sent), and every event is stored, kept for
    /// replay and copied to each subscriber, so one user's long text must not cost everyone memory and disk.
    pub fn emit(&mut self, subject: &str, name: &str, attrs: Vec<(String, Attr)>) {
        self.events.seq += 1;
        let attrs = attrs
            .into_iter()
            .map(|(k, v)| {
                let v = match v {
                    Attr::Str(s) => AttrRecord::Str(bounded_attr(s)),
                    Attr::Int(i) => AttrRecord::Int(i),
                    Attr::Bool(b) => AttrRecord::Bool(b),
                };
                (k, v)
            })
            .collect();
        let ev = EventRecord {
            seq: self.events.seq,
            time_ms: now().as_millis(),
            name: name.into(),
            node: self.node.name.clone(),
            subject: subject.into(),
            attrs,
        };
        info!(seq = ev.seq, subject, "{name} {:?}", ev.attrs);
        self.store.batch.events.push(ev);
    }

    /// Hands stored events to every subscriber whose filter takes them.
    pub fn broadcast(&mut self, events: &[EventRecord]) {
        if self.events.subscriptions.is_empty() {
            return;
        }
        let events: Vec<_> = events.iter().map(|e| self.event_to_wire(e)).collect();
        self.events.subscriptions.retain_mut(|s| {
            if s.replay.is_some() {
                // The replay reads these from the store, in order, once it gets there.
                return !s.tx.is_closed();
            }
            for e in &events {
                if s.filter.matches(e) {
                    if let Delivery::Gone = s.offer(e.seq, ServerMsg::Event(e.clone())) {
                        return false;
                    }
                }
            }
            true
        });
    }

    /// Tells lagging subscribers what they lost, and feeds replays, as soon as their queue has room.
    pub fn flush_lost(&mut self) {
        let mut subs = std::mem::take(&mut self.events.subscriptions);
        subs.retain_mut(|s| {
            if s.flush_lost() && s.replay.is_some() {
                self.replay_page(s);
            }
            !s.tx.is_closed()
        });
        self.events.subscriptions = subs;
    }

    /// Queues the next stored events of a replay, as many as the queue has room for; a replay that
    /// reaches the newest stored event turns live.
    fn replay_page(&self, s: &mut Subscription) {
        let Some(mut cursor) = s.replay else { return };
        loop {
            let room = s.tx.capacity();
            if room == 0 {
                break;
            }
            // History trimmed under a slow replay is a loss, told like any other.
            match self.store.db.first_seq() {
                Ok(first) if first > cursor + 1 => {
                    s.lost = Some((cursor + 1, first - 1));
                    cursor = first - 1;
                    if !s.flush_lost() {
                        break;
                    }
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    warn!("replay: {e}");
                    break;
                }
            }
            let chunk = match self.store.db.events_after(cursor, room.min(1000)) {
                Ok(c) => c,
                Err(e) => {
                    warn!("replay: {e}");
                    break;
                }
            };
            if chunk.is_empty() {
                s.replay = None;
                return;
            }
            for e in &chunk {
                cursor = e.seq;
                let w = self.event_to_wire(e);
                if s.filter.matches(&w) && s.tx.try_send(ServerMsg::Event(w)).is_err() {
                    // Cannot happen with the room counted above; should it, the event is not lost
                    // in silence.
                    s.lost = Some((e.seq, e.seq));
                }
            }
        }
        s.replay = Some(cursor);
    }

    pub fn any_loss_untold(&self) -> bool {
        self.events
            .subscriptions
            .iter()
            .any(|s| s.lost.is_some() || s.replay.is_some())
    }

    pub fn event_to_wire(&self, e: &EventRecord) -> vigil_proto::Event {
        crate::convert::event_to_wire(e, &self.node.name)
    }

    /// Stored events above `after` that match, oldest first, at most `limit`.
    fn stored(&self, after: u64, limit: usize, filter: &EventFilter) -> Result<Vec<vigil_proto::Event>, WireError> {
        let mut out = Vec::new();
        let mut cursor = after;
        while out.len() < limit {
            let chunk = self
                .store
                .db
                .events_after(cursor, 1000)
                .map_err(|e| WireError::new(ErrorCode::Internal, e.to_string()))?;
            let Some(last) = chunk.last() else { break };
            cursor = last.seq;
            let room = limit - out.len();
            out.extend(
                chunk
                    .iter()
                    .map(|e| self.event_to_wire(e))
                    .filter(|e| filter.matches(e))
                    .take(room),
            );
        }
        Ok(out)
    }

    /// `Events`: stored events that match, oldest first.
    pub fn events(&self, after: u64, limit: u32, filter: &EventFilter) -> Result<Response, WireError> {
        Ok(Response::Events(self.stored(
            after,
            limit.clamp(1, 10_000) as usize,
            filter,
        )?))
    }

    /// Answers `id` with `Ok` and makes a bounded queue the connection's push stream (it replaces any
    /// earlier one); the sender feeds it.
    pub fn open_stream(&mut self, id: u64, out: &ConnTx) -> mpsc::Sender<ServerMsg> {
        let (tx, rx) = mpsc::channel(self.node.settings.subscriber_queue);
        let ok = ServerMsg::Response {
            id,
            result: Ok(Response::Ok),
        };
        self.outbox.push((
            out.clone(),
            Outgoing {
                msg: Box::new(ok),
                written: None,
                events: Some(rx),
            },
        ));
        tx
    }

    /// `Subscribe`: the stored backlog that matches (after a loss marker for history already trimmed),
    /// then live events through a bounded queue.
    pub fn subscribe(
        &mut self,
        conn: u64,
        after: Option<u64>,
        filter: EventFilter,
        id: u64,
        out: &ConnTx,
    ) -> Result<(), WireError> {
        if self
            .events
            .subscriptions
            .iter()
            .any(|s| s.conn == conn && !s.tx.is_closed())
        {
            return Err(WireError::new(
                ErrorCode::Busy,
                "this connection is already subscribed; open another one",
            ));
        }
        let tx = self.open_stream(id, out);
        // The backlog is replayed page by page as the subscriber reads (`replay_page`), never queued
        // whole: a history of 100,000 events would otherwise wait in memory for a reader that may
        // never read.
        let replay = after;
        self.events.subscriptions.push(Subscription {
            conn,
            filter,
            tx,
            lost: None,
            replay,
        });
        Ok(())
    }
}

/// The longest text attribute an event keeps, in bytes; longer ones are cut at a character boundary and
/// marked with how much was cut.
pub const MAX_ATTR_BYTES: usize = 4096;

fn bounded_attr(mut s: String) -> String {
    if s.len() <= MAX_ATTR_BYTES {
        return s;
    }
    let mut end = MAX_ATTR_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let cut = s.len() - end;
    s.truncate(end);
    s.push_str(&format!("…[{cut} more bytes]"));
    s
}

#[cfg(test)]
mod bounded_attr_tests {
    use super::*;

    #[test]
    fn long_text_is_cut_at_a_character_boundary() {
        assert_eq!(bounded_attr("short".into()), "short");
        let long = "é".repeat(3000); // 6000 bytes
        let cut = bounded_attr(long);
        assert!(
            cut.starts_with(&"é".repeat(2048)) && cut.ends_with("…[1904 more bytes]"),
            "{cut}"
        );
    }
}
