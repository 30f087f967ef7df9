//! Many requests in flight on one connection ([`Client::pipeline`]): what a program that sets a
//! thousand keys does instead of a thousand round trips.

use std::io;

use vigil_proto::{ClientMsg, Request, Response, ServerMsg, WireError};

use crate::{Client, NoSigpipe, Result};

/// The most requests [`Client::pipeline`] keeps in flight: vigild's default `max_in_flight`.
pub const PIPELINE_WINDOW_MAX: usize = 64;

/// The bytes of answers [`Client::pipeline`] takes from the socket at once.
const INBOX: usize = 64 << 10;

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
        let mut inbox = vec![0u8; INBOX];
        loop {
            // Refill the window in one write once a quarter of it is answered (or at the start). The
            // answers are taken a quarter of the window at a time: vigild answers a batch of requests
            // in one write, and taking the whole window before sending more would leave it idle, with
            // nothing to read, while this process reads and sends.
            let quarter = window.div_ceil(4);
            if sent - answered <= window - quarter && bodies.peek().is_some() {
                frames.clear();
                while sent - answered < window {
                    let Some(body) = bodies.next() else { break };
                    let body = self.addressed(body);
                    let id = self.next_id;
                    self.next_id += 1;
                    vigil_proto::encode_into(&ClientMsg::Request { id, body }, &mut frames)?;
                    results.push(None);
                    sent += 1;
                }
                io::Write::write_all(&mut NoSigpipe(&self.stream), &frames).map_err(vigil_proto::FrameError::from)?;
            }
            if answered == sent {
                break;
            }
            for msg in self.arrived(&mut inbox, quarter)? {
                match msg {
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
        }
        Ok(results
            .into_iter()
            .map(|r| r.expect("every request answered"))
            .collect())
    }

    /// The messages whose whole frames have arrived, waiting for the first if none has: two system
    /// calls for all of them (a peek at what is there, then a read of exactly the whole frames), where
    /// reading frame by frame takes two per frame. A frame not yet whole stays in the socket, for any
    /// later read; one larger than `inbox` is read alone.
    fn arrived(&mut self, inbox: &mut [u8], most: usize) -> Result<Vec<ServerMsg>> {
        use rustix::io::Errno;
        use rustix::net::{recv, RecvFlags};
        let io_err = |e: Errno| crate::ClientError::from(vigil_proto::FrameError::from(io::Error::from(e)));
        // Answers are on their way: poll for them a while, as a single request does, before sleeping.
        let soon = vigil_sys::busy_poll::spin(crate::answer_spin(), || {
            match recv(&self.stream, &mut *inbox, RecvFlags::PEEK | RecvFlags::DONTWAIT) {
                Err(Errno::AGAIN | Errno::INTR) => None,
                r => Some(r),
            }
        });
        let peeked = match soon {
            Some(r) => r,
            None => loop {
                match recv(&self.stream, &mut *inbox, RecvFlags::PEEK) {
                    Err(Errno::INTR) => {}
                    r => break r,
                }
            },
        };
        let there = match peeked {
            Err(e) => return Err(io_err(e)),
            Ok((0, _)) => return Err(vigil_proto::FrameError::Closed.into()),
            Ok((n, _)) => n,
        };
        let mut whole = 0;
        let mut frames = 0;
        while frames < most {
            let Some(header) = inbox.get(whole..whole + vigil_proto::HEADER_LEN) else {
                break;
            };
            if whole + vigil_proto::HEADER_LEN > there {
                break;
            }
            let header: [u8; vigil_proto::HEADER_LEN] = header.try_into().expect("a header's length");
            let end = whole + vigil_proto::HEADER_LEN + vigil_proto::frame_payload_len(header)?;
            if end > there {
                break;
            }
            whole = end;
            frames += 1;
        }
        if whole == 0 {
            // The first frame is not whole yet, or does not fit: read it as one.
            return Ok(vec![vigil_proto::read_msg(&mut self.stream)?]);
        }
        // Take exactly what was peeked: a stream socket gives it back in order.
        let mut taken = 0;
        while taken < whole {
            match recv(&self.stream, &mut inbox[taken..whole], RecvFlags::empty()) {
                Err(Errno::INTR) => {}
                Err(e) => return Err(io_err(e)),
                Ok((0, _)) => return Err(vigil_proto::FrameError::Truncated.into()),
                Ok((n, _)) => taken += n,
            }
        }
        let mut msgs = Vec::new();
        let mut pos = 0;
        while pos < whole {
            let header: [u8; vigil_proto::HEADER_LEN] = inbox[pos..pos + vigil_proto::HEADER_LEN]
                .try_into()
                .expect("a header's length");
            let end = pos + vigil_proto::HEADER_LEN + vigil_proto::frame_payload_len(header)?;
            msgs.push(vigil_proto::decode::<ServerMsg>(
                &inbox[pos + vigil_proto::HEADER_LEN..end],
            )?);
            pos = end;
        }
        Ok(msgs)
    }
}
