//! Fuzzing on the stable toolchain: proptest feeds arbitrary and mutated bytes to every parser
//! (the document stores, the metadata, `ENC[…]`, tree paths) for a bounded number of cases.
//! A parser may reject its input; it must never panic.

use proptest::prelude::*;

use credseal::sops::cipher::Encrypted;
use credseal::sops::file::EncryptedFile;
use credseal::sops::keys::Keyring;
use credseal::sops::store::{self, Format};
use credseal::sops::{dotenv, ini, json, path, yaml};

use crate::support::interop;

const FORMATS: [Format; 5] = [
    Format::Yaml,
    Format::Json,
    Format::Dotenv,
    Format::Ini,
    Format::Binary,
];

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Seeds: every real fixture, so mutations start from realistic structure.
fn seeds() -> Vec<(Vec<u8>, Format)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(interop()).unwrap() {
        let p = entry.unwrap().path();
        if p.is_file() && !p.extension().is_some_and(|e| e == "agekey" || e == "md") {
            out.push((std::fs::read(&p).unwrap(), Format::from_path(&p)));
        }
    }
    out
}

fn keyring() -> Keyring {
    let mut ring = Keyring::new();
    for entry in std::fs::read_dir(interop()).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "agekey") {
            ring.add_identities(&std::fs::read_to_string(&p).unwrap(), "fixture")
                .unwrap();
        }
    }
    ring
}

fn exercise(bytes: &[u8]) {
    let _ = yaml::parse(bytes);
    let _ = json::parse(bytes);
    let _ = dotenv::parse(bytes);
    let _ = ini::parse(bytes);
    if let Ok(s) = std::str::from_utf8(bytes) {
        let _ = Encrypted::parse(s);
        let _ = path::parse(s);
    }
    for f in FORMATS {
        let _ = store::load_plain(bytes, f);
        let _ = EncryptedFile::parse(bytes, f);
    }
}

proptest! {
    #![proptest_config(config(3000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        exercise(&bytes);
    }

    #[test]
    fn enc_like_strings_never_panic(s in "ENC\\[AES256_GCM,(data:[A-Za-z0-9+/=]{0,12},?)?(iv:[A-Za-z0-9+/=]{0,48},?)?(tag:[A-Za-z0-9+/=]{0,24},?)?(type:[a-z]{0,8})?\\]?") {
        let _ = Encrypted::parse(&s);
    }
}

proptest! {
    #![proptest_config(config(400))]

    /// Mutated real files: parse, and where they still parse, decrypt (which must fail
    /// cleanly or succeed, never panic).
    #[test]
    fn mutated_fixtures_never_panic(seed in 0usize..64, edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        let seeds = seeds();
        let (mut bytes, format) = seeds[seed % seeds.len()].clone();
        for (pos, b) in edits {
            if bytes.is_empty() { break; }
            let i = pos % bytes.len();
            bytes[i] = b;
        }
        exercise(&bytes);
        if let Ok(file) = EncryptedFile::parse(&bytes, format) {
            let _ = file.open(&keyring(), false);
        }
    }
}
