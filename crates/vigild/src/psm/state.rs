//! PSM's state in vigild: the node's process set and whether the cluster mirror is behind.

/// The process set (categories and members) and whether the mirror must be sent again.
pub struct Psm {
    pub registry: vigil_core::psm::Registry,
    /// PSM members changed since the mirror was last sent.
    pub changed: bool,
}

impl Default for Psm {
    fn default() -> Psm {
        Psm {
            registry: Default::default(),
            // A new vigild sends its members once, whatever the mirror holds.
            changed: true,
        }
    }
}
