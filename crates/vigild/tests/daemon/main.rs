//! vigild's integration tests: real daemons in temp dirs, real processes, the real socket.

mod bad_input;
mod c_cfg;
mod c_cmap;
mod c_dsdev;
mod c_sam;
mod cluster;
mod cluster_events;
mod cluster_faults;
mod cmap;
mod compat_c;
mod etcd;
mod harness;
mod health;
mod lifecycle;
mod pmf;
mod pmfadm;
mod psm;
mod remote;
mod sam;
mod sam_compat;
mod sec_client;
mod sec_limits;
mod sec_logs;
mod sec_review;
mod sec_store;
mod sec_wire;
