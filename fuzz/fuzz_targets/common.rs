//! Shared by the fuzz targets: tree comparison that treats NaN as equal to itself (a parsed
//! `.nan` must compare equal after a round trip), an integral float as equal to the int it is
//! written as, and can ignore comments.
#![allow(dead_code)]

use credseal::sops::tree::{Map, MapItem, Node, Seq, SeqItem};

/// Whether two trees hold the same data (keys, order, scalar types and values); comments are
/// compared too unless `comments` is false.
pub fn same_map(a: &Map, b: &Map, comments: bool) -> bool {
    let keep = |i: &&MapItem| comments || matches!(i, MapItem::Pair(..));
    let (mut ia, mut ib) = (a.items.iter().filter(keep), b.items.iter().filter(keep));
    loop {
        match (ia.next(), ib.next()) {
            (None, None) => return true,
            (Some(MapItem::Pair(ka, va)), Some(MapItem::Pair(kb, vb))) => {
                if ka != kb || !same_node(va, vb, comments) {
                    return false;
                }
            }
            (Some(MapItem::Comment(ca)), Some(MapItem::Comment(cb))) if ca == cb => {}
            _ => return false,
        }
    }
}

fn same_seq(a: &Seq, b: &Seq, comments: bool) -> bool {
    let keep = |i: &&SeqItem| comments || matches!(i, SeqItem::Node(..));
    let (mut ia, mut ib) = (a.items.iter().filter(keep), b.items.iter().filter(keep));
    loop {
        match (ia.next(), ib.next()) {
            (None, None) => return true,
            (Some(SeqItem::Node(na)), Some(SeqItem::Node(nb))) => {
                if !same_node(na, nb, comments) {
                    return false;
                }
            }
            (Some(SeqItem::Comment(ca)), Some(SeqItem::Comment(cb))) if ca == cb => {}
            _ => return false,
        }
    }
}

pub fn same_node(a: &Node, b: &Node, comments: bool) -> bool {
    match (a, b) {
        (Node::Float(x), Node::Float(y)) => x == y || (x.is_nan() && y.is_nan()),
        // Like sops (Go's FormatFloat / encoding/json), a float with an integral value is
        // written without a fraction, so it reads back as an int of the same value.
        (Node::Float(x), Node::Int(i)) | (Node::Int(i), Node::Float(x)) => *x == *i as f64,
        (Node::Map(x), Node::Map(y)) => same_map(x, y, comments),
        (Node::Seq(x), Node::Seq(y)) => same_seq(x, y, comments),
        _ => a == b,
    }
}

/// `CREDSEAL_FUZZ_STRICT=1`: also assert the properties that known, still open defects break
/// (fuzz/findings/README.md). Off in CI, so that CI fails on new findings, not on those.
pub fn strict() -> bool {
    static STRICT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *STRICT.get_or_init(|| std::env::var_os("CREDSEAL_FUZZ_STRICT").is_some_and(|v| v == "1"))
}
