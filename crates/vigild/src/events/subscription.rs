//! One subscriber of the node's event stream, with its bounded queue and what it lost.

use tokio::sync::mpsc;
use vigil_proto::{EventFilter, ServerMsg};

/// One subscriber: what it wants, its bounded queue, and what it has lost and not yet been told.
pub struct Subscription {
    pub conn: u64,
    pub filter: EventFilter,
    pub tx: mpsc::Sender<ServerMsg>,
    pub lost: Option<(u64, u64)>,
    /// While the stored backlog is being replayed: the last stored event examined. The replay is paged
    /// through the bounded queue (as much as it has room for, more as the reader drains it), and live
    /// events wait in the store until the replay reaches them.
    pub replay: Option<u64>,
}

pub enum Delivery {
    Ok,
    Gone,
}

impl Subscription {
    /// Queues one event without ever waiting: a full queue turns into a loss to report.
    pub fn offer(&mut self, seq: u64, msg: ServerMsg) -> Delivery {
        if !self.flush_lost() {
            if self.tx.is_closed() {
                return Delivery::Gone;
            }
            self.lost = self.lost.map(|(a, _)| (a, seq));
            return Delivery::Ok;
        }
        match self.tx.try_send(msg) {
            Ok(()) => Delivery::Ok,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.lost = Some((seq, seq));
                Delivery::Ok
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Delivery::Gone,
        }
    }

    /// Tries to tell the subscriber what it lost; true when nothing is left untold.
    pub fn flush_lost(&mut self) -> bool {
        match self.lost {
            None => true,
            Some((from, to)) => {
                if self.tx.try_send(ServerMsg::Lost { from, to }).is_ok() {
                    self.lost = None;
                    true
                } else {
                    false
                }
            }
        }
    }
}

/// The node's event stream as the loop holds it: the last number given and who listens.
pub struct Events {
    pub seq: u64,
    pub subscriptions: Vec<Subscription>,
}
