//! `ENC[AES256_GCM,…]` values and the typed plaintexts inside them (src/sops/cipher.rs parse,
//! src/sops/value.rs): what parses prints back to text that parses to the same fields, and a
//! decrypted plaintext read as any type serialises back to bytes that read the same.
#![no_main]

#[path = "common.rs"]
mod common;

use credseal::secret::SecretBytes;
use credseal::sops::cipher::{Encrypted, ValueType};
use credseal::sops::value;
use libfuzzer_sys::fuzz_target;

const TYPES: [ValueType; 6] = [
    ValueType::Str,
    ValueType::Int,
    ValueType::Float,
    ValueType::Bool,
    ValueType::Time,
    ValueType::Bytes,
];

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(enc) = Encrypted::parse(text)
    {
        let printed = enc.to_text();
        let again = Encrypted::parse(&printed).expect("printed ENC[] parses");
        assert_eq!(enc.data, again.data);
        assert_eq!(enc.iv, again.iv);
        assert_eq!(enc.tag, again.tag);
        assert_eq!(enc.value_type, again.value_type);
        assert_eq!(printed, again.to_text());
    }
    for ty in TYPES {
        let Ok(node) = value::from_bytes(SecretBytes::new(data.to_vec()), ty) else {
            continue;
        };
        let (bytes, ty2) = value::to_bytes(&node).expect("a leaf serialises");
        let again = value::from_bytes(bytes.clone(), ty2).expect("serialised leaf reads back");
        assert!(
            common::same_node(&node, &again, true),
            "{ty:?} value changed"
        );
        let (bytes2, _) = value::to_bytes(&again).expect("a leaf serialises");
        assert_eq!(bytes, bytes2, "{ty:?} serialisation is not a fixed point");
    }
});
