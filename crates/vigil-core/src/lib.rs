//! vigil's pure rules.
//!
//! Every rule of the supervisor lives here as `(state, event, now) -> effects`: the restart budget, the
//! backoff, the tree of watched processes with its levels, the state machine of a PMF tag, the PSM
//! registry, the CMAP map with its tracking, and SAM's policies and deadlines.
//!
//! Invariant: no I/O, no async, no libc, no serde, no clock. Time is an argument (`Timestamp`), processes
//! are plain `ProcId`s, and effects are returned for the caller to carry out.

// The workspace denies unsafe code; its safe crates forbid it outright, so that no module can allow it.
#![forbid(unsafe_code)]

pub mod budget;
pub mod cmap;
pub mod envfile;
pub mod event;
pub mod health;
pub mod names;
pub mod policy;
pub mod psm;
pub mod res;
pub mod sam;
pub mod signal;
pub mod spec;
pub mod tag;
pub mod time;
pub mod tree;

pub use budget::{Backoff, Period, RestartBudget, Retries, Storm};
pub use event::TagEvent;
pub use health::{Health, HealthFailure, HealthSpec, Notify, ProbeCheck, ProbeSpec};
pub use names::{NameError, TagName};
pub use policy::{RestartPolicy, Supervision};
pub use res::{Limit, LimitKind, ResError, Resources};
pub use signal::{BadSignal, Signal};
pub use spec::{Level, ProgramType, SpecError, TagSpec};
pub use tag::{Effect, Refused, SpawnFailure, StopMode, Tag, TagState, Throttle};
pub use time::Timestamp;
pub use tree::{Exit, ProcId, ProcTree};
