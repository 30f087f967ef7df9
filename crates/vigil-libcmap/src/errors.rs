//! `cs_error_t`, and the one table from vigild's answers to it.

use std::ffi::c_int;

use vigil_client::proto::ErrorCode;
use vigil_client::ClientError;

pub const CS_OK: c_int = 1;
pub const CS_ERR_LIBRARY: c_int = 2;
pub const CS_ERR_TIMEOUT: c_int = 5;
pub const CS_ERR_TRY_AGAIN: c_int = 6;
pub const CS_ERR_INVALID_PARAM: c_int = 7;
pub const CS_ERR_NO_MEMORY: c_int = 8;
pub const CS_ERR_BAD_HANDLE: c_int = 9;
pub const CS_ERR_ACCESS: c_int = 11;
pub const CS_ERR_NOT_EXIST: c_int = 12;
pub const CS_ERR_NAME_TOO_LONG: c_int = 13;
pub const CS_ERR_EXIST: c_int = 14;
pub const CS_ERR_NOT_SUPPORTED: c_int = 19;
pub const CS_ERR_FAILED_OPERATION: c_int = 21;
pub const CS_ERR_MESSAGE_ERROR: c_int = 22;
pub const CS_ERR_NO_SECTIONS: c_int = 27;

/// What corosync answers where vigild answers `code`. vigild's CMAP errors were chosen to be corosync's
/// (see vigil-core's `CmapError`): a refused read-only key is `CS_ERR_ACCESS`, a missing one
/// `CS_ERR_NOT_EXIST`, a bad parameter or a type mismatch `CS_ERR_INVALID_PARAM`, a value above the size
/// limit too (icmap's answer to a value above `ICMAP_MAX_VALUE_LEN`).
pub fn from_code(code: ErrorCode) -> c_int {
    match code {
        ErrorCode::InvalidArgument | ErrorCode::LimitExceeded => CS_ERR_INVALID_PARAM,
        ErrorCode::NotFound | ErrorCode::NoProcess => CS_ERR_NOT_EXIST,
        ErrorCode::PermissionDenied => CS_ERR_ACCESS,
        ErrorCode::AlreadyExists => CS_ERR_EXIST,
        // CMAP requests are never sent to another node; were one, its node may come back.
        ErrorCode::Busy | ErrorCode::NodeDown => CS_ERR_TRY_AGAIN,
        ErrorCode::Timeout => CS_ERR_TIMEOUT,
        ErrorCode::Unsupported => CS_ERR_NOT_SUPPORTED,
        ErrorCode::ExecFailed | ErrorCode::Conflict => CS_ERR_FAILED_OPERATION,
        ErrorCode::Protocol => CS_ERR_MESSAGE_ERROR,
        ErrorCode::Internal | ErrorCode::Unknown(_) => CS_ERR_LIBRARY,
    }
}

/// A failed request: vigild's refusal through [`from_code`]; a connection that failed (vigild gone, a
/// broken frame) is `CS_ERR_LIBRARY`, as libqb's errors are for corosync's library.
pub fn from_client(e: &ClientError) -> c_int {
    e.code().map_or(CS_ERR_LIBRARY, from_code)
}

/// A failed connection: an impostor on vigild's socket is `CS_ERR_ACCESS`, what libqb answers when the
/// server's credentials are not the ones expected; anything else (no vigild) `CS_ERR_LIBRARY`.
pub fn from_connect(e: &ClientError) -> c_int {
    match e {
        ClientError::Untrusted { .. } => CS_ERR_ACCESS,
        _ => CS_ERR_LIBRARY,
    }
}

/// A refused set. icmap checks a new key's name last and answers `CS_ERR_NAME_TOO_LONG` for any bad
/// one, where vigild answers an invalid argument: the key rule (vigil-core's, the one vigild applied)
/// tells which of the two the refusal was.
pub fn from_set(e: &ClientError, key: &str) -> c_int {
    match e.code() {
        Some(ErrorCode::InvalidArgument) if vigil_core::cmap::validate_key(key).is_err() => CS_ERR_NAME_TOO_LONG,
        _ => from_client(e),
    }
}

/// A refused track_delete: corosync keeps tracks in a handle database, so an unknown one is a bad handle.
pub fn from_track_delete(e: &ClientError) -> c_int {
    match e.code() {
        Some(ErrorCode::NotFound) => CS_ERR_BAD_HANDLE,
        _ => from_client(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_a_cs_error() {
        let expect = [
            (1, CS_ERR_INVALID_PARAM),
            (2, CS_ERR_NOT_EXIST),
            (3, CS_ERR_EXIST),
            (4, CS_ERR_ACCESS),
            (5, CS_ERR_TRY_AGAIN),
            (6, CS_ERR_NOT_EXIST),
            (7, CS_ERR_FAILED_OPERATION),
            (8, CS_ERR_TIMEOUT),
            (9, CS_ERR_NOT_SUPPORTED),
            (10, CS_ERR_INVALID_PARAM),
            (11, CS_ERR_LIBRARY),
            (12, CS_ERR_MESSAGE_ERROR),
            (13, CS_ERR_FAILED_OPERATION),
            (99, CS_ERR_LIBRARY),
        ];
        for (n, cs) in expect {
            assert_eq!(from_code(ErrorCode::from(n)), cs, "code {n}");
        }
    }

    #[test]
    fn a_refused_set_of_a_bad_key_is_name_too_long() {
        let e = |code| ClientError::Server(vigil_client::proto::WireError::new(code, "x"));
        assert_eq!(from_set(&e(ErrorCode::InvalidArgument), "ab"), CS_ERR_NAME_TOO_LONG);
        assert_eq!(from_set(&e(ErrorCode::InvalidArgument), "a b.c"), CS_ERR_NAME_TOO_LONG);
        assert_eq!(from_set(&e(ErrorCode::InvalidArgument), "a.key"), CS_ERR_INVALID_PARAM);
        assert_eq!(from_set(&e(ErrorCode::PermissionDenied), "ab"), CS_ERR_ACCESS);
        assert_eq!(from_track_delete(&e(ErrorCode::NotFound)), CS_ERR_BAD_HANDLE);
    }
}
