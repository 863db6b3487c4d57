//! The targets of the `tracing` events the library emits. The library never prints: the
//! binary's subscriber selects these targets and writes them as text lines or JSON objects,
//! so a target or field name here is part of the JSON log format.

/// Rotation steps (fields `credential`, `engine`, `role`, `step`, `outcome`, `generation`
/// on a commit) and Kubernetes Events that could not be recorded (`reason`, `object`,
/// `error`).
pub const AUDIT: &str = "credseal::audit";

/// The sidecar's renders (`outcome`, `secrets`, `out`, `elapsed_ms`, or `error`).
pub const MATERIALIZE: &str = "credseal::materialize";
