//! The YAML store seen from outside: the metadata layout and the spec's worked example.
//! (Golden files made by the real sops are checked by the unit tests in src/sops/yaml/tests.rs.)

use crate::support::interop;

/// The metadata block credseal writes is the sops 3.13 layout to the byte: re-emitting a file
/// written by sops 3.13.3 through credseal's metadata model changes nothing.
#[test]
fn metadata_block_matches_sops_3_13_layout() {
    use credseal::sops::file::EncryptedFile;
    use credseal::sops::store::{EmitOptions, Format};
    let path = interop().join("workshop__k8s-secret.enc.yaml");
    let original = std::fs::read(&path).unwrap();
    let file = EncryptedFile::parse(&original, Format::Yaml).unwrap();
    let out = file.emit(&EmitOptions::default()).unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        String::from_utf8(original).unwrap()
    );
}

/// The spec's worked document (§16.2) encrypted by credseal with the injected data key and
/// IVs: values, `lastmodified`, `mac`, selector and version are the published bytes, and the
/// metadata keys come in sorted order.
#[test]
fn spec_worked_example_as_a_file() {
    use credseal::sops::file::{self, Context, EncryptSettings, EncryptedFile, KeyPlan};
    use credseal::sops::keys::{Keyring, Recipient, generate_identity};
    use credseal::sops::rules::Selector;
    use credseal::sops::store::{self, EmitOptions, Format};
    use credseal::sops::tree::Timestamp;
    use credseal::sops::walk::Entropy;

    struct Scripted(Vec<u8>);
    impl Entropy for Scripted {
        fn fill(&mut self, buf: &mut [u8]) {
            buf.copy_from_slice(&self.0[..buf.len()]);
            self.0.drain(..buf.len());
        }
    }
    let mut bytes = Vec::new();
    for start in [0x00u8, 0x20, 0x40, 0x60, 0x80] {
        bytes.extend((0..32).map(|i| start + i));
    }
    let doc = "apiVersion: v1\nkind: Secret\nmetadata:\n    name: db\nstringData:\n    password: hunter2\n    port: 5432\n    enabled: true\n";
    let (identity, recipient) = generate_identity("x");
    let settings = EncryptSettings {
        keys: KeyPlan::age(&[Recipient::parse(&recipient).unwrap()]),
        selector: Selector::from_key("encrypted_regex", "^(data|stringData)$").unwrap(),
        mac_only_encrypted: false,
    };
    let mut entropy = Scripted(bytes);
    let mut ctx = Context {
        entropy: &mut entropy,
        now: Timestamp::parse_rfc3339("2024-01-01T00:00:00Z").unwrap(),
    };
    let tree = store::load_plain(doc.as_bytes(), Format::Yaml).unwrap();
    let out = String::from_utf8(
        file::encrypt(
            tree,
            Format::Yaml,
            &settings,
            &mut ctx,
            &EmitOptions::default(),
        )
        .unwrap(),
    )
    .unwrap();
    let head = "apiVersion: v1\nkind: Secret\nmetadata:\n    name: db\nstringData:\n    password: ENC[AES256_GCM,data:f7SfPOh95A==,iv:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=,tag:WBPE6k3mfjV0rMrvCs5GEw==,type:str]\n    port: ENC[AES256_GCM,data:UU8AVg==,iv:QEFCQ0RFRkdISUpLTE1OT1BRUlNUVVZXWFlaW1xdXl8=,tag:Iyps90WiQgGLeISTv/Ew7Q==,type:int]\n    enabled: ENC[AES256_GCM,data:Pwv3GA==,iv:YGFiY2RlZmdoaWprbG1ub3BxcnN0dXZ3eHl6e3x9fn8=,tag:Lx+c3+Vy1WXhnxDo+WaTqw==,type:bool]\nsops:\n    age:\n        - enc: |\n            -----BEGIN AGE ENCRYPTED FILE-----\n";
    assert!(out.starts_with(head), "{out}");
    let tail = format!(
        "            -----END AGE ENCRYPTED FILE-----\n          recipient: {recipient}\n    encrypted_regex: ^(data|stringData)$\n    lastmodified: \"2024-01-01T00:00:00Z\"\n    mac: ENC[AES256_GCM,data:1i8F5noXIDhQuFqkiMRAAW7Tqqb+woiya2McxTa6pXXta9LKLMiPzj7Zz0zD4e93bmevJWnaP6fHjHn96ea6HByImExOXJBX6MgIEC/h0EY+DaqHxCJgE7oj1yM+JjxDYUdO/P3NG/054sjdgZ4557K3zrxbLofUavvOe7nKb/8=,iv:gIGCg4SFhoeIiYqLjI2Oj5CRkpOUlZaXmJmam5ydnp8=,tag:yL31EGKsYanjTyZu+YqUNw==,type:str]\n    version: 3.13.2\n"
    );
    assert!(out.ends_with(&tail), "{out}");
    // The armored data key: 64-column base64 lines.
    let armor: Vec<&str> = out[head.len()..out.len() - tail.len()].lines().collect();
    assert!(
        armor.iter().rev().skip(1).all(|l| l.trim().len() == 64),
        "{armor:?}"
    );
    // And it opens.
    let mut ring = Keyring::new();
    ring.add_identities(identity.expose(), "x").unwrap();
    let opened = EncryptedFile::parse(out.as_bytes(), Format::Yaml)
        .unwrap()
        .open(&ring, false)
        .unwrap();
    assert_eq!(
        String::from_utf8(
            opened
                .emit_plain(Format::Yaml, &EmitOptions::default())
                .unwrap()
        )
        .unwrap(),
        doc
    );
}
