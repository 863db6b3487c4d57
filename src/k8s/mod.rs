//! The Kubernetes side: connecting like kubectl, and the API calls credseal makes, with
//! errors a user can act on. Knows nothing of the SOPS format.

pub mod access;
pub mod client;
pub mod error;
pub mod events;
pub mod lease;
pub mod secrets;
pub mod watch;
pub mod workloads;

pub use error::K8sError;
