//! `--extract` / `set` tree paths (src/sops/path.rs): parsing never panics, a path that
//! parses can be displayed, and `set` then `get` on a document finds the value set.
#![no_main]

use credseal::sops::path::{self, Step};
use credseal::sops::tree::{Map, Node, Seq, SeqItem};
use libfuzzer_sys::fuzz_target;

fn doc() -> Map {
    let mut inner = Map::new();
    inner.insert("password", Node::str("x"));
    let mut m = Map::new();
    m.insert("stringData", Node::Map(inner));
    m.insert(
        "list",
        Node::Seq(Seq {
            items: vec![SeqItem::Node(Node::Int(1)), SeqItem::Node(Node::str("two"))],
        }),
    );
    m
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(steps) = path::parse(text) else {
        return;
    };
    assert!(!steps.is_empty());
    let _ = path::display(&steps);
    let mut d = doc();
    let _ = path::get(&d, &steps);
    let marker = Node::str("fuzz-marker");
    if path::set(&mut d, &steps, marker.clone()).is_ok() {
        let got = path::get(&d, &steps).expect("a value just set is found");
        assert!(*got == marker, "get does not return what set wrote");
        // Setting it again changes nothing.
        assert_eq!(path::set(&mut d, &steps, marker.clone()), Ok(false));
        if matches!(steps.last(), Some(Step::Key(_))) {
            path::unset(&mut d, &steps).expect("a key just set can be unset");
        }
    }
    let mut d = doc();
    let _ = path::unset(&mut d, &steps);
});
