//! The one integration-test binary (one link on a 2-core machine).

mod age_keys;
mod check;
mod day_one;
mod diff;
mod edit_set;
mod errors;
mod examples;
mod fixtures;
mod fuzz;
mod hostile_parsers;
mod identities;
mod inplace;
mod interop_age;
mod interop_sops;
mod key_custody;
mod kube;
mod manifests;
mod materialize;
mod merge_driver;
mod properties;
mod rotate;
mod rotate_k8s;
mod rotate_operator;
mod support;
mod yaml_store;
