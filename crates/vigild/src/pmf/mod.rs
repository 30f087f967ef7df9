//! PMF in vigild: tags, their processes, probes, logs, and the requests that run and stop them.

pub mod drain;
pub mod health;
pub mod lineage;
pub mod logs;
pub mod marks;
pub mod policy;
pub mod procs;
pub mod reap_scan;
pub mod requests;
pub mod resources;
pub mod restore;
pub mod state;

pub use state::*;
