//! credseal: SOPS-compatible age encryption for Kubernetes database credentials.
//!
//! `sops` is the format core (bytes in, bytes out; the `credseal-sops` crate), `cli` the only
//! layer that touches argv, the environment and stdout.

#[cfg(feature = "cluster")]
pub mod apply;
pub mod check;
pub mod clock;
#[cfg(feature = "cluster")]
pub mod cluster_key;
pub mod diff;
pub mod file_io;
#[cfg(feature = "cluster")]
pub mod k8s;
pub mod log;
pub mod manifest;
pub mod materialize;
pub mod merge;
#[cfg(feature = "cluster")]
pub mod rotate;
// The format core is its own crate (crates/credseal-sops); re-exported under the names the
// rest of the code and the tests use.
pub use credseal_sops as sops;
pub use credseal_sops::secret;
