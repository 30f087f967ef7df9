//! Framing: check the length first, then parse; a bad frame is an error for that connection only.

use std::cell::Cell;
use std::io::{self, Read, Write};

use serde::{de::DeserializeOwned, Deserialize, Deserializer, Serialize};

use crate::msg::{HelloMsg, Request};

/// Bytes before the payload: its length, little-endian.
pub const HEADER_LEN: usize = 4;
/// The largest payload accepted; a longer frame closes the connection.
pub const MAX_FRAME_LEN: usize = 4 << 20;
/// The largest first frame (the Hello) a server accepts: before the handshake a peer gets no more room
/// than a Hello needs.
pub const MAX_HELLO_LEN: usize = 4 << 10;

thread_local! {
    /// Set while the body of an `OnNode` is being decoded on this thread.
    static IN_ON_NODE: Cell<bool> = const { Cell::new(false) };
    /// Why the last decode on this thread was refused by a check of ours (postcard keeps only its own
    /// generic message for errors raised inside `Deserialize`).
    static REFUSED: Cell<Option<&'static str>> = const { Cell::new(None) };
}

const NESTED_ON_NODE: &str = "OnNode may not carry another OnNode";

/// `deserialize_with` of `Request::OnNode`'s body: refuses an `OnNode` inside an `OnNode` before it is
/// decoded, so the decoder's recursion is bounded by the types, not by the input.
pub(crate) fn one_level<'de, D: Deserializer<'de>>(d: D) -> Result<Box<Request>, D::Error> {
    struct Leave;
    impl Drop for Leave {
        fn drop(&mut self) {
            IN_ON_NODE.with(|c| c.set(false));
        }
    }
    if IN_ON_NODE.with(Cell::get) {
        REFUSED.with(|r| r.set(Some(NESTED_ON_NODE)));
        return Err(serde::de::Error::custom(NESTED_ON_NODE));
    }
    IN_ON_NODE.with(|c| c.set(true));
    let _leave = Leave;
    Request::deserialize(d).map(Box::new)
}

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {len} bytes is over the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("malformed frame: {0}")]
    Malformed(String),
    #[error("connection closed")]
    Closed,
    #[error("connection closed in the middle of a frame")]
    Truncated,
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Encodes one message as a complete frame.
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, FrameError> {
    let mut buf = Vec::new();
    encode_into(msg, &mut buf)?;
    Ok(buf)
}

/// Appends one message to `buf` as a complete frame, with no buffer of its own to allocate and copy
/// (a writer gathering many answers for one write). On an error `buf` is left as it was.
pub fn encode_into<T: Serialize>(msg: &T, buf: &mut Vec<u8>) -> Result<(), FrameError> {
    let start = buf.len();
    buf.extend_from_slice(&[0; HEADER_LEN]);
    let written = postcard::serialize_with_flavor(msg, Append(buf));
    let len = buf.len() - start - HEADER_LEN;
    let refused = match written {
        Err(e) => FrameError::Malformed(e.to_string()),
        Ok(()) if len > MAX_FRAME_LEN => FrameError::TooLarge {
            len,
            max: MAX_FRAME_LEN,
        },
        Ok(()) => {
            buf[start..start + HEADER_LEN].copy_from_slice(&(len as u32).to_le_bytes());
            return Ok(());
        }
    };
    buf.truncate(start);
    Err(refused)
}

/// postcard's output appended to a `Vec` it borrows.
struct Append<'a>(&'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for Append<'_> {
    type Output = ();

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.push(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// Reads the length from a header, refusing one over the limit before any payload is read.
pub fn payload_len(header: [u8; HEADER_LEN]) -> Result<usize, FrameError> {
    payload_len_max(header, MAX_FRAME_LEN)
}

/// Reads the length from a header, refusing one over `max` before any payload is read.
pub fn payload_len_max(header: [u8; HEADER_LEN], max: usize) -> Result<usize, FrameError> {
    let len = u32::from_le_bytes(header) as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    Ok(len)
}

/// Decodes a payload (the bytes after the header). Trailing bytes are an error, not ignored.
pub fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, FrameError> {
    REFUSED.with(|r| r.set(None));
    let (msg, rest) = postcard::take_from_bytes(payload).map_err(|e| {
        FrameError::Malformed(match REFUSED.with(Cell::take) {
            Some(why) => why.to_string(),
            None => e.to_string(),
        })
    })?;
    if !rest.is_empty() {
        return Err(FrameError::Malformed(format!("{} trailing bytes", rest.len())));
    }
    Ok(msg)
}

/// Decodes the first payload of a connection as a Hello and nothing else: `Ok(None)` when it holds
/// another message, which is then not decoded at all.
pub fn decode_hello(payload: &[u8]) -> Result<Option<(u32, String)>, FrameError> {
    // `ClientMsg::Hello` is variant 0, one byte on the wire; every other message starts otherwise.
    if payload.first() != Some(&0) {
        return Ok(None);
    }
    let HelloMsg::Hello { version, client } = decode(payload)?;
    Ok(Some((version, client)))
}

/// Blocking read of one message.
pub fn read_msg<T: DeserializeOwned, R: Read>(r: &mut R) -> Result<T, FrameError> {
    let mut header = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        match r.read(&mut header[got..]) {
            Ok(0) if got == 0 => return Err(FrameError::Closed),
            Ok(0) => return Err(FrameError::Truncated),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    let len = payload_len(header)?;
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => FrameError::Truncated,
        _ => FrameError::Io(e),
    })?;
    decode(&payload)
}

/// Blocking write of one message.
pub fn write_msg<T: Serialize, W: Write>(w: &mut W, msg: &T) -> Result<(), FrameError> {
    w.write_all(&encode(msg)?)?;
    w.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ClientMsg, Request};

    #[test]
    fn round_trip_and_limits() {
        let msg = ClientMsg::Request {
            id: 7,
            body: Request::Query { tag: "web".into() },
        };
        let frame = encode(&msg).unwrap();
        let back: ClientMsg = read_msg(&mut &frame[..]).unwrap();
        assert_eq!(back, msg);
        // Truncated: header promises more than is there.
        assert!(matches!(
            read_msg::<ClientMsg, _>(&mut &frame[..frame.len() - 1]),
            Err(FrameError::Truncated)
        ));
        // Oversized: refused from the header alone.
        let huge = ((MAX_FRAME_LEN + 1) as u32).to_le_bytes();
        assert!(matches!(
            read_msg::<ClientMsg, _>(&mut &huge[..]),
            Err(FrameError::TooLarge { .. })
        ));
        // Garbage payload.
        let bad = [3u8, 0, 0, 0, 0xff, 0xff, 0xff];
        assert!(matches!(
            read_msg::<ClientMsg, _>(&mut &bad[..]),
            Err(FrameError::Malformed(_))
        ));
        assert!(matches!(
            read_msg::<ClientMsg, _>(&mut &[][..]),
            Err(FrameError::Closed)
        ));
    }

    #[test]
    fn frames_are_appended_and_a_refused_one_leaves_the_buffer_as_it_was() {
        let a = ClientMsg::Request {
            id: 1,
            body: Request::Query { tag: "web".into() },
        };
        let b = ClientMsg::Request {
            id: 2,
            body: Request::List,
        };
        let mut buf = Vec::new();
        encode_into(&a, &mut buf).unwrap();
        encode_into(&b, &mut buf).unwrap();
        assert_eq!(buf, [encode(&a).unwrap(), encode(&b).unwrap()].concat());
        let mut r = &buf[..];
        assert_eq!(read_msg::<ClientMsg, _>(&mut r).unwrap(), a);
        assert_eq!(read_msg::<ClientMsg, _>(&mut r).unwrap(), b);
        let before = buf.clone();
        let huge = ClientMsg::Request {
            id: 3,
            body: Request::Query {
                tag: "x".repeat(MAX_FRAME_LEN),
            },
        };
        assert!(matches!(encode_into(&huge, &mut buf), Err(FrameError::TooLarge { .. })));
        assert_eq!(buf, before);
    }

    /// Every request and answer is moved several times between the socket and the loop: the large
    /// variants are boxed so that a CMAP set does not move hundreds of bytes each time.
    #[test]
    fn messages_stay_small() {
        use std::mem::size_of;
        for (name, size) in [
            ("Request", size_of::<Request>()),
            ("ClientMsg", size_of::<ClientMsg>()),
            ("Response", size_of::<crate::Response>()),
            ("ServerMsg", size_of::<crate::ServerMsg>()),
        ] {
            assert!(size <= 128, "{name} takes {size} bytes");
        }
    }
}
