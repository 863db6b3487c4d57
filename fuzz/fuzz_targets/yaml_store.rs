//! The YAML store: any input that parses emits YAML that parses back to the same data, and
//! emitting is a fixed point after one round.
#![no_main]

#[path = "common.rs"]
mod common;

use credseal::sops::store::{self, Format};
use credseal::sops::tree::{Map, Node};
use credseal::sops::yaml::{self, EmitOptions};
use libfuzzer_sys::fuzz_target;

/// Whether a key or string value holds U+2028, U+2029 or U+0085.
fn has_unicode_line_break(m: &Map) -> bool {
    let breaks = |s: &str| s.contains(['\u{2028}', '\u{2029}', '\u{85}']);
    m.pairs().any(|(k, v)| breaks(k) || node_breaks(v, &breaks))
}

fn node_breaks(n: &Node, breaks: &dyn Fn(&str) -> bool) -> bool {
    match n {
        Node::Str(s) => breaks(s.expose()),
        Node::Map(m) => has_unicode_line_break(m),
        Node::Seq(s) => s.nodes().any(|v| node_breaks(v, breaks)),
        _ => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(tree) = yaml::parse(data) else {
        return;
    };
    // The store layer over the same parser (encrypted-or-not detection) must not panic either.
    let _ = store::load_plain(data, Format::Yaml);
    let _ = store::load_encrypted(data, Format::Yaml);
    let opts = EmitOptions::default();
    let first = yaml::emit(&tree, &opts);
    // Known and open (fuzz/findings): a comment before an empty flow sequence, and a block
    // scalar whose first line is only spaces, are emitted as YAML that does not parse. Until
    // they are fixed, output that does not parse is asserted for inputs without comments or
    // block scalars (always with CREDSEAL_FUZZ_STRICT=1), so CI fails on new defects.
    let known_invalid = data.iter().any(|b| matches!(b, b'#' | b'|' | b'>'));
    let again = match yaml::parse(&first) {
        Ok(again) => again,
        Err(_) if known_invalid && !common::strict() => return,
        Err(e) => panic!(
            "emitted YAML does not parse: {e}\n{}",
            String::from_utf8_lossy(&first)
        ),
    };
    assert_eq!(
        tree.documents.len(),
        again.documents.len(),
        "document count changed"
    );
    // Known and open (fuzz/findings): Unicode line separators in values do not survive.
    let known_break = tree.documents.iter().any(has_unicode_line_break);
    if common::strict() || !known_break {
        for (a, b) in tree.documents.iter().zip(&again.documents) {
            // Comments may move (sops attaches them to the next entry); data may not change.
            assert!(
                common::same_map(a, b, false),
                "data changed in a YAML round trip"
            );
        }
    }
    // Known and open (fuzz/findings): where comments and blank lines land can move on a
    // second round, so the fixed point is asserted for inputs without comments.
    if common::strict() || !(known_break || data.contains(&b'#')) {
        let second = yaml::emit(&again, &opts);
        assert_eq!(first, second, "emitting is not a fixed point");
    }
});
