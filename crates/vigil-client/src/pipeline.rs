//! Many requests in flight on one connection ([`Client::pipeline`]): what a program that sets a
//! thousand keys does instead of a thousand round trips.

use std::io;

use vigil_proto::{ClientMsg, Request, Response, ServerMsg, WireError};

use crate::{Client, NoSigpipe, Result};

/// The most requests [`Client::pipeline`] keeps in flight: vigild's default `max_in_flight`.
pub const PIPELINE_WINDOW_MAX: usize = 64;

impl Client {
    /// Sends every request of `bodies` on this connection with up to `window` of them in flight (written
    /// in batches, a write for many frames), and answers each one's result, in the order given. vigild
    /// handles a connection's requests in order; one that waits (a `Wait`, a `stop --wait`) does not hold
    /// up the answers of those after it. Events pushed meanwhile are kept, as with [`Client::request`].
    /// `window` is kept within vigild's own bound (`[daemon] max_in_flight`, 64 by default), beyond which
    /// it would only stop reading the connection.
    pub fn pipeline(
        &mut self,
        bodies: impl IntoIterator<Item = Request>,
        window: usize,
    ) -> Result<Vec<std::result::Result<Response, WireError>>> {
        let window = window.clamp(1, PIPELINE_WINDOW_MAX);
        let mut bodies = bodies.into_iter().peekable();
        let first = self.next_id;
        let mut results: Vec<Option<std::result::Result<Response, WireError>>> = Vec::new();
        let (mut sent, mut answered) = (0usize, 0usize);
        let mut frames = Vec::new();
        loop {
            // Refill the window in one write once half of it is answered (or at the start).
            if sent - answered <= window / 2 && bodies.peek().is_some() {
                frames.clear();
                while sent - answered < window {
                    let Some(body) = bodies.next() else { break };
                    let body = self.addressed(body);
                    let id = self.next_id;
                    self.next_id += 1;
                    frames.extend_from_slice(&vigil_proto::encode(&ClientMsg::Request { id, body })?);
                    results.push(None);
                    sent += 1;
                }
                io::Write::write_all(&mut NoSigpipe(&self.stream), &frames).map_err(vigil_proto::FrameError::from)?;
            }
            if answered == sent {
                break;
            }
            match vigil_proto::read_msg(&mut self.stream)? {
                ServerMsg::Response { id, result } if (first..self.next_id).contains(&id) => {
                    let slot = &mut results[(id - first) as usize];
                    if slot.is_none() {
                        answered += 1;
                    }
                    *slot = Some(result);
                }
                other => self.keep(other)?,
            }
        }
        Ok(results
            .into_iter()
            .map(|r| r.expect("every request answered"))
            .collect())
    }
}
