//! The one place a descriptor is registered with tokio's reactor (feature `tokio`, which vigild turns on;
//! the libraries built on vigil-client go without).
//!
//! tokio's registration is an `unsafe fn`: the descriptor must stay open, and be the same, for as long as
//! it is registered. [`ReadableFd`] meets that by construction, so it is safe to call: it keeps an `Arc`
//! of the value that owns the descriptor, that value is one of this crate's own types, each holding an
//! `OwnedFd` it never replaces ([`Watchable`] is sealed), and the registration is never handed out, so no
//! caller can swap what it holds.

use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::Arc;

use tokio::io::unix::{AsyncFd, AsyncFdReadyGuard};
use tokio::io::Interest;

mod sealed {
    pub trait Sealed {}
}

/// A descriptor-owning type of this crate whose descriptor is fixed for its whole life: the pidfd, the
/// process connector, the notify socket and the inotify instance.
pub trait Watchable: AsFd + sealed::Sealed {}

impl sealed::Sealed for crate::PidFd {}
impl Watchable for crate::PidFd {}
impl sealed::Sealed for crate::ProcConnector {}
impl Watchable for crate::ProcConnector {}
impl sealed::Sealed for crate::NotifySocket {}
impl Watchable for crate::NotifySocket {}
impl sealed::Sealed for crate::Inotify {}
impl Watchable for crate::Inotify {}

/// What tokio's registration holds: the owner of the descriptor, shared with the rest of the program.
/// Its field is private, so nothing but this module makes one.
pub struct Held<T>(Arc<T>);

impl<T: Watchable> AsRawFd for Held<T> {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

/// A [`Watchable`] registered with the current tokio runtime's reactor for readability.
pub struct ReadableFd<T: Watchable>(AsyncFd<Held<T>>);

impl<T: Watchable> ReadableFd<T> {
    /// Registers `owner`'s descriptor for readability. Must be called within a tokio runtime (tokio
    /// panics otherwise).
    pub fn register(owner: Arc<T>) -> io::Result<ReadableFd<T>> {
        // SAFETY: tokio asks that the descriptor stay open and the same while registered. `Held` keeps an
        // `Arc` of its owner, so the owner (and its `OwnedFd`) outlives the registration; every
        // `Watchable` is a type of this crate whose descriptor field is set once at construction and
        // never replaced, so `as_raw_fd` always answers the same descriptor; and the `AsyncFd` stays
        // private to `ReadableFd`, so no caller can reach `get_mut` to swap the `Held` it holds.
        let fd = unsafe { AsyncFd::register_with_interest(Held(owner), Interest::READABLE) }?;
        Ok(ReadableFd(fd))
    }

    /// Waits until the descriptor is readable; the guard's `clear_ready` re-arms the wait.
    pub async fn readable(&self) -> io::Result<AsyncFdReadyGuard<'_, Held<T>>> {
        self.0.readable().await
    }

    /// The owner of the descriptor.
    pub fn get_ref(&self) -> &Arc<T> {
        &self.0.get_ref().0
    }
}
