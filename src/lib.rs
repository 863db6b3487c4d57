//! credseal: SOPS-compatible age encryption for Kubernetes database credentials.
//!
//! The module tree follows `DESIGN.md` §6: `sops` is the format core (bytes in, bytes out),
//! `cli` the only layer that touches argv, the environment and stdout.

#[cfg(feature = "cluster")]
pub mod apply;
pub mod check;
pub mod cli;
#[cfg(feature = "cluster")]
pub mod cluster_key;
pub mod diff;
pub mod fsx;
#[cfg(feature = "cluster")]
pub mod k8s;
pub mod manifest;
pub mod materialize;
pub mod merge;
#[cfg(feature = "cluster")]
pub mod rotate;
pub mod secret;
pub mod sops;
