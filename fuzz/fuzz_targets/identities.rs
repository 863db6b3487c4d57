//! Identity and recipient parsing (src/sops/keys.rs): never panics, and an error never shows
//! the text it was given (it may be a private key).
#![no_main]

use credseal::sops::keys::{Keyring, Recipient};
use libfuzzer_sys::fuzz_target;

#[track_caller]
fn shows_nothing_of(message: &str, input: &str) {
    for token in input.split([',', '\n', ' ', '\t', '\r']) {
        let token = token.trim();
        // Long enough that it cannot occur in a message by chance.
        if token.len() >= 16 && token.is_ascii() {
            assert!(
                !message.contains(token),
                "error echoes its input: {message}"
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        let mut ring = Keyring::new();
        let _ = ring.add_identities_bytes(data, "fuzz");
        return;
    };
    let mut ring = Keyring::new();
    if let Err(e) = ring.add_identities(text, "fuzz") {
        shows_nothing_of(&e.to_string(), text);
        shows_nothing_of(&format!("{e:?}"), text);
    }
    match Recipient::parse_list_from(text, "--age") {
        Ok(list) => {
            for r in list {
                assert_eq!(Recipient::parse(r.as_str()).unwrap(), r);
            }
        }
        Err(e) => {
            shows_nothing_of(&e.to_string(), text);
            shows_nothing_of(&format!("{e:?}"), text);
        }
    }
});
