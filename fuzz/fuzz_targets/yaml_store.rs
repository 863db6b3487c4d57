//! The YAML store: any input that parses emits YAML that parses back to the same data, and
//! emitting is a fixed point after one round.
#![no_main]

#[path = "common.rs"]
mod common;

use credseal::sops::store::{self, Format};
use credseal::sops::yaml::{self, EmitOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(tree) = yaml::parse(data) else {
        return;
    };
    // The store layer over the same parser (encrypted-or-not detection) must not panic either.
    let _ = store::load_plain(data, Format::Yaml);
    let _ = store::load_encrypted(data, Format::Yaml);
    let opts = EmitOptions::default();
    let first = yaml::emit(&tree, &opts);
    let again = yaml::parse(&first).unwrap_or_else(|e| {
        panic!(
            "emitted YAML does not parse: {e}\n{}",
            String::from_utf8_lossy(&first)
        )
    });
    assert_eq!(
        tree.documents.len(),
        again.documents.len(),
        "document count changed"
    );
    for (a, b) in tree.documents.iter().zip(&again.documents) {
        // Comments may move (sops attaches them to the next entry); data may not change.
        assert!(
            common::same_map(a, b, false),
            "data changed in a YAML round trip"
        );
    }
    let second = yaml::emit(&again, &opts);
    assert_eq!(first, second, "emitting is not a fixed point");
});
