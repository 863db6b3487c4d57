//! The SOPS format core: bytes in, bytes out. Knows nothing of Kubernetes, databases or the
//! filesystem; randomness and time are passed in so tests can reproduce sops' output exactly.

pub mod cipher;
pub mod config;
pub mod dotenv;
pub mod error_text;
pub mod file;
pub mod ini;
pub mod json;
pub mod keys;
pub mod master_key;
pub mod metadata;
pub mod path;
pub mod pgp;
pub mod rules;
pub mod secret;
pub mod shamir;
pub mod store;
pub mod tree;
pub mod value;
pub mod walk;
pub mod yaml;
