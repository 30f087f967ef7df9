//! PSM's state in vigild: the node's process set and whether the cluster mirror is behind.

use std::collections::BTreeSet;

/// The process set (categories and members) and whether the mirror must be sent again.
pub struct Psm {
    pub registry: vigil_core::psm::Registry,
    /// PSM members changed since the mirror was last sent.
    pub changed: bool,
    /// Members added, changed or removed in this step, as (category, pid): their CMAP keys follow at
    /// its end.
    pub members_changed: BTreeSet<(String, i32)>,
}

impl Default for Psm {
    fn default() -> Psm {
        Psm {
            registry: Default::default(),
            // A new vigild sends its members once, whatever the mirror holds.
            changed: true,
            members_changed: BTreeSet::new(),
        }
    }
}
