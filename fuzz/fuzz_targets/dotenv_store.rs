//! The dotenv store: parse, emit, parse gives the same tree; encrypted-file loading (the
//! flattened `sops_…` metadata keys) never panics.
#![no_main]

#[path = "common.rs"]
mod common;

use credseal::sops::dotenv;
use credseal::sops::store::{self, Format};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = store::load_encrypted(data, Format::Dotenv);
    let Ok(map) = dotenv::parse(data) else {
        return;
    };
    let Ok(first) = dotenv::emit(&map) else {
        return;
    };
    let again = dotenv::parse(&first).unwrap_or_else(|e| {
        panic!(
            "emitted dotenv does not parse: {e}\n{}",
            String::from_utf8_lossy(&first)
        )
    });
    let second = dotenv::emit(&again).expect("emits what it emitted before");
    assert_eq!(first, second, "emitting is not a fixed point");
    // Input that is valid UTF-8 without `\n` escapes keeps its data exactly.
    if std::str::from_utf8(data).is_ok() && !data.windows(2).any(|w| w == b"\\n") {
        assert!(
            common::same_map(&map, &again, true),
            "data changed in a dotenv round trip"
        );
    }
});
