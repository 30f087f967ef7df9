//! Framing: check the length first, then parse; a bad frame is an error for that connection only.

use std::io::{self, Read, Write};

use serde::{de::DeserializeOwned, Serialize};

/// Bytes before the payload: its length, little-endian.
pub const HEADER_LEN: usize = 4;
/// The largest payload accepted; a longer frame closes the connection.
pub const MAX_FRAME_LEN: usize = 4 << 20;

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
    let mut buf = vec![0u8; HEADER_LEN];
    let buf = postcard::to_extend(msg, std::mem::take(&mut buf)).map_err(|e| FrameError::Malformed(e.to_string()))?;
    let len = buf.len() - HEADER_LEN;
    if len > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge {
            len,
            max: MAX_FRAME_LEN,
        });
    }
    let mut buf = buf;
    buf[..HEADER_LEN].copy_from_slice(&(len as u32).to_le_bytes());
    Ok(buf)
}

/// Reads the length from a header, refusing one over the limit before any payload is read.
pub fn payload_len(header: [u8; HEADER_LEN]) -> Result<usize, FrameError> {
    let len = u32::from_le_bytes(header) as usize;
    if len > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge {
            len,
            max: MAX_FRAME_LEN,
        });
    }
    Ok(len)
}

/// Decodes a payload (the bytes after the header). Trailing bytes are an error, not ignored.
pub fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, FrameError> {
    let (msg, rest) = postcard::take_from_bytes(payload).map_err(|e| FrameError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(FrameError::Malformed(format!("{} trailing bytes", rest.len())));
    }
    Ok(msg)
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
}
