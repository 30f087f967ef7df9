//! What the fuzz targets share: reading a connection's bytes as the peer would, and the round-trip check
//! of every decoded message.

use serde::{de::DeserializeOwned, Serialize};

/// Reads `data` as the bytes of one connection: frames until the first error, as the reader of a real
/// connection does (a bad frame ends the connection). `first` sees the first message and says whether the
/// connection goes on (vigild closes a connection whose first message is not Hello); every decoded
/// message is checked by [`round_trip`].
pub fn read_connection<T>(data: &[u8], first: impl FnOnce(&T) -> bool)
where
    T: Serialize + DeserializeOwned,
{
    let mut r = data;
    let Ok(msg) = vigil_proto::read_msg::<T, _>(&mut r) else {
        return;
    };
    round_trip(&msg);
    if !first(&msg) {
        return;
    }
    while let Ok(msg) = vigil_proto::read_msg::<T, _>(&mut r) {
        round_trip(&msg);
    }
}

/// A decoded message encodes to a frame that decodes to a message with the very same encoding: what one
/// side sends, the other reads back whole. Bytes are compared, not values, so that a NaN in a CMAP value
/// compares equal to itself.
pub fn round_trip<T: Serialize + DeserializeOwned>(msg: &T) {
    let frame = vigil_proto::encode(msg).expect("a decoded message encodes");
    let back: T = vigil_proto::decode(&frame[vigil_proto::HEADER_LEN..]).expect("an encoded message decodes");
    let again = vigil_proto::encode(&back).expect("a decoded message encodes");
    assert_eq!(frame, again, "the frame changed on a round trip");
}
