//! The metadata reader (src/sops/metadata.rs): any `sops` block that reads writes back (as
//! sops 3.13 does) to a block that reads the same, the dotenv flattening of it reads back the
//! same too, and the age entries it yields never panic the key code.
#![no_main]

use std::sync::OnceLock;

use credseal::sops::dotenv;
use credseal::sops::json;
use credseal::sops::keys::{Keyring, Recipient, generate_identity};
use credseal::sops::metadata::{Metadata, MetadataStore};
use credseal::sops::tree::{Map, MapItem, Node};
use libfuzzer_sys::fuzz_target;

/// Deep nesting is a known defect of the JSON parser (fuzzed by json_store), not the subject
/// here: skip inputs nested deeper than any metadata block.
fn too_deep(data: &[u8]) -> bool {
    let mut depth = 0i32;
    for &b in data {
        match b {
            b'[' | b'{' => depth += 1,
            b']' | b'}' => depth -= 1,
            _ => {}
        }
        if depth > 64 {
            return true;
        }
    }
    false
}

/// Whether a written metadata block survives dotenv flattening: no empty mapping or list
/// (except the `age` and `hc_vault` lists of a key group, which read the same when absent),
/// no duplicate key, no key holding a flattening separator.
fn flattenable(written: &Node) -> bool {
    let Node::Map(top) = written else {
        return false;
    };
    let group_ok = |g: &Node| match g {
        Node::Map(m) => check_map(m, true),
        _ => false,
    };
    check_map(top, true)
        && match top.get("key_groups") {
            Some(Node::Seq(groups)) => groups.nodes().all(group_ok),
            _ => true,
        }
}

fn empty_seq(v: &Node) -> bool {
    matches!(v, Node::Seq(s) if s.nodes().next().is_none())
}

/// `group`: the map is the top level or a key group, where `age: []` and `hc_vault: []` are
/// allowed and `key_groups` is checked by the caller.
fn check_map(m: &Map, group: bool) -> bool {
    let keys: Vec<&str> = m.pairs().map(|(k, _)| k).collect();
    m.pairs().any(|(_, v)| !empty_seq(v))
        && keys
            .iter()
            .enumerate()
            .all(|(i, k)| !keys[..i].contains(k) && !k.contains("__") && !k.is_empty())
        && m.pairs().all(|(k, v)| match v {
            _ if group && k == "key_groups" => true,
            _ if empty_seq(v) => group && (k == "age" || k == "hc_vault"),
            Node::Map(inner) => check_map(inner, false),
            Node::Seq(s) => s.nodes().all(|n| match n {
                Node::Map(inner) => check_map(inner, false),
                Node::Seq(_) => !empty_seq(n) && check_map(&seq_as_map(n), false),
                _ => true,
            }),
            _ => true,
        })
}

/// A nested list checked like a mapping of its elements.
fn seq_as_map(n: &Node) -> Map {
    let mut m = Map::new();
    if let Node::Seq(s) = n {
        for (i, v) in s.nodes().enumerate() {
            m.insert(format!("i{i}"), v.clone());
        }
    }
    m
}

fn ring() -> &'static Keyring {
    static RING: OnceLock<Keyring> = OnceLock::new();
    RING.get_or_init(|| {
        let (text, _) = generate_identity("fuzz");
        let mut ring = Keyring::new();
        ring.add_identities(text.expose(), "fuzz").unwrap();
        ring
    })
}

fuzz_target!(|data: &[u8]| {
    if too_deep(data) {
        return;
    }
    let Ok(doc) = json::parse(data) else {
        return;
    };
    // Either a whole file (`{"sops": {…}}`) or the block itself.
    let node = doc.get("sops").cloned().unwrap_or(Node::Map(doc));
    let Ok(meta) = Metadata::from_node(&node) else {
        return;
    };
    let _ = meta.mac_aad();
    for r in meta.age_recipients() {
        let _ = Recipient::parse(r);
    }
    let _ = ring().data_key(&meta);

    let written = meta.to_node(MetadataStore::Yaml);
    let read = Metadata::from_node(&written).expect("written metadata reads back");
    assert_eq!(meta.key_groups.len(), read.key_groups.len());
    for (a, b) in meta.key_groups.iter().zip(&read.key_groups) {
        assert_eq!(a.age, b.age, "age entries changed");
        assert_eq!(a.others.len(), b.others.len(), "other master keys dropped");
    }
    assert_eq!(
        (
            &meta.lastmodified,
            &meta.mac,
            &meta.version,
            meta.shamir_threshold
        ),
        (
            &read.lastmodified,
            &read.mac,
            &read.version,
            read.shamir_threshold
        )
    );
    assert_eq!(meta.selector, read.selector);
    assert_eq!(meta.mac_only_encrypted, read.mac_only_encrypted);
    assert!(
        read.to_node(MetadataStore::Yaml) == written,
        "writing metadata is not a fixed point"
    );

    // The dotenv store keeps the block as flattened `sops_…` keys. As in sops, that form has
    // no room for empty collections, duplicate keys or keys containing the separators: the
    // property holds for blocks without them (what sops and credseal write).
    if !flattenable(&written) {
        return;
    }
    let Node::Map(m) = &written else {
        panic!("metadata is written as a mapping")
    };
    let mut flat = Map::new();
    dotenv::flatten(m, "", &mut flat);
    let pairs = flat
        .items
        .into_iter()
        .filter_map(|i| match i {
            MapItem::Pair(k, v) => Some((k, v)),
            MapItem::Comment(_) => None,
        })
        .collect();
    let unflat = dotenv::unflatten(pairs).expect("flattened metadata unflattens");
    let back = Metadata::from_node(&Node::Map(unflat)).expect("unflattened metadata reads");
    assert_eq!(read, back, "metadata changed through the dotenv flattening");
});
