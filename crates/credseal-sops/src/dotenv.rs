//! The dotenv store (docs/sops-format.md §11): `KEY=value` lines, `#` comments, metadata flattened into
//! `sops_`-prefixed keys with `__map_` / `__list_<n>` separators.

use std::collections::HashMap;

use crate::tree::{Comment, MAX_DEPTH, Map, MapItem, Node, Seq, SeqItem};
use crate::value::format_float_f;

const MAP_SEP: &str = "__map_";
const LIST_SEP: &str = "__list_";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DotenvError {
    #[error("line {0}: not KEY=value or a # comment")]
    BadLine(usize),
    #[error("key {0:?}: dotenv files hold only flat string values, not mappings or lists")]
    ComplexValue(String),
    /// sops keeps such bytes as they are; credseal's values are text, and replacing the bytes
    /// would change the value without a word.
    #[error(
        "line {line}, byte {byte}: not UTF-8 text; convert the file to UTF-8 (e.g. iconv -f latin1 -t utf-8)"
    )]
    NotUtf8 { line: usize, byte: usize },
    #[error("malformed flattened metadata key {0:?}")]
    BadMetadataKey(String),
    /// A `__list_<n>` index past the entries given: padding to it would allocate without bound.
    #[error(
        "flattened metadata key {key:?}: list index {index} is out of range (more than the metadata's list entries)"
    )]
    MetadataIndex { key: String, index: usize },
    #[error("flattened metadata key {key:?}: nested more than {limit} levels deep (the limit)")]
    MetadataTooDeep { key: String, limit: usize },
}

pub fn parse(input: &[u8]) -> Result<Map, DotenvError> {
    let mut map = Map::new();
    for (i, line) in input.split(|&c| c == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        let line = std::str::from_utf8(line).map_err(|e| DotenvError::NotUtf8 {
            line: i + 1,
            byte: e.valid_up_to() + 1,
        })?;
        if let Some(text) = line.strip_prefix('#') {
            map.items.push(MapItem::Comment(Comment {
                text: text.to_owned().into(),
                inline: false,
            }));
        } else {
            let (k, v) = line.split_once('=').ok_or(DotenvError::BadLine(i + 1))?;
            map.insert(k, Node::str(v.replace("\\n", "\n")));
        }
    }
    Ok(map)
}

pub fn emit(map: &Map) -> Result<Vec<u8>, DotenvError> {
    let mut out = String::new();
    for item in &map.items {
        match item {
            MapItem::Comment(c) => {
                out.push('#');
                out.push_str(c.text.expose());
            }
            MapItem::Pair(k, v) => {
                out.push_str(k);
                out.push('=');
                match v {
                    Node::Str(s) => out.push_str(&s.expose().replace('\n', "\\n")),
                    Node::Map(_) | Node::Seq(_) => {
                        return Err(DotenvError::ComplexValue(k.clone()));
                    }
                    other => out.push_str(&scalar_text(other)),
                }
            }
        }
        out.push('\n');
    }
    Ok(out.into_bytes())
}

/// sops' `ValToString` for non-string scalars (also what `exec-env` puts in the environment).
pub fn scalar_text(n: &Node) -> String {
    match n {
        Node::Int(i) => i.to_string(),
        Node::Bool(b) => b.to_string(),
        Node::Float(f) => {
            let s = format_float_f(*f);
            if s.contains('.') || !s.bytes().all(|c| c.is_ascii_digit() || c == b'-') {
                s
            } else {
                format!("{s}.0")
            }
        }
        Node::Time(t) => t.to_rfc3339(),
        Node::Null => "<nil>".into(),
        Node::Str(s) => s.expose().to_owned(),
        Node::Map(_) | Node::Seq(_) => unreachable!("checked by the caller"),
    }
}

/// Flattens a (sorted) metadata mapping into `prefix`-ed flat keys, depth first.
pub fn flatten(meta: &Map, prefix: &str, out: &mut Map) {
    for (k, v) in meta.pairs() {
        flatten_value(v, &format!("{prefix}{k}"), out);
    }
}

fn flatten_value(v: &Node, key: &str, out: &mut Map) {
    match v {
        Node::Map(m) => {
            for (k, v) in m.pairs() {
                flatten_value(v, &format!("{key}{MAP_SEP}{k}"), out);
            }
        }
        Node::Seq(s) => {
            for (i, v) in s.nodes().enumerate() {
                flatten_value(v, &format!("{key}{LIST_SEP}{i}"), out);
            }
        }
        leaf => out.insert(key, leaf.clone()),
    }
}

/// Rebuilds the nested metadata from flattened keys (prefix already removed).
pub fn unflatten(flat: Vec<(String, Node)>) -> Result<Map, DotenvError> {
    let mut parsed = Vec::with_capacity(flat.len());
    for (key, value) in flat {
        let (head, tokens) = split_key(&key)?;
        let head = head.to_owned();
        parsed.push((key, head, tokens, value));
    }
    // sops writes list entries in order, so every index names an existing entry or the next
    // one. Lines reordered by hand may skip ahead; the gaps are padded, but never with more
    // entries in all than the keys hold indices, or one key could demand a huge allocation.
    let mut slots = parsed
        .iter()
        .flat_map(|(_, _, tokens, _)| tokens)
        .filter(|t| matches!(t, FlatKeyStep::Index(_)))
        .count();
    let mut root = Built::map();
    for (key, head, tokens, value) in parsed {
        let mut path = Vec::with_capacity(tokens.len() + 1);
        path.push(FlatKeyStep::Key(head));
        path.extend(tokens);
        root.place(&path, value, &mut slots).map_err(|e| match e {
            Misplaced::Shape => DotenvError::BadMetadataKey(key),
            Misplaced::Index(index) => DotenvError::MetadataIndex { key, index },
        })?;
    }
    match root.into_node() {
        Node::Map(m) => Ok(m),
        _ => unreachable!("the root is a mapping"),
    }
}

/// The first key of a flattened key and the steps below it.
fn split_key(key: &str) -> Result<(&str, Vec<FlatKeyStep>), DotenvError> {
    let mut tokens = Vec::new();
    let mut rest = key;
    let first_end = [rest.find(MAP_SEP), rest.find(LIST_SEP)]
        .into_iter()
        .flatten()
        .min();
    let head = match first_end {
        Some(e) => {
            let h = &rest[..e];
            rest = &rest[e..];
            h
        }
        None => {
            let h = rest;
            rest = "";
            h
        }
    };
    while !rest.is_empty() {
        // The metadata sits below a document's top level; placing recurses once per step.
        if tokens.len() + 2 >= MAX_DEPTH {
            return Err(DotenvError::MetadataTooDeep {
                key: key.to_owned(),
                limit: MAX_DEPTH,
            });
        }
        let (is_list, body) = if let Some(b) = rest.strip_prefix(LIST_SEP) {
            (true, b)
        } else if let Some(b) = rest.strip_prefix(MAP_SEP) {
            (false, b)
        } else {
            return Err(DotenvError::BadMetadataKey(key.to_owned()));
        };
        let end = [body.find(MAP_SEP), body.find(LIST_SEP)]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(body.len());
        let tok = &body[..end];
        if is_list {
            tokens.push(FlatKeyStep::Index(
                tok.parse()
                    .map_err(|_| DotenvError::BadMetadataKey(key.to_owned()))?,
            ));
        } else {
            tokens.push(FlatKeyStep::Key(tok.to_owned()));
        }
        rest = &body[end..];
    }
    Ok((head, tokens))
}

enum FlatKeyStep {
    Key(String),
    Index(usize),
}

enum Misplaced {
    /// A step does not fit what earlier keys built (a key into a list, an index into a map).
    Shape,
    /// An index past the list entries left to pad with.
    Index(usize),
}

/// The metadata as it is rebuilt: mappings indexed by key, so each flat key is placed in time
/// proportional to its length, however many keys there are.
enum Built {
    Leaf(Node),
    Map(Vec<(String, Built)>, HashMap<String, usize>),
    Seq(Vec<Built>),
}

impl Built {
    fn map() -> Built {
        Built::Map(Vec::new(), HashMap::new())
    }

    fn for_step(step: &FlatKeyStep) -> Built {
        match step {
            FlatKeyStep::Key(_) => Built::map(),
            FlatKeyStep::Index(_) => Built::Seq(Vec::new()),
        }
    }

    fn place(
        &mut self,
        path: &[FlatKeyStep],
        value: Node,
        slots: &mut usize,
    ) -> Result<(), Misplaced> {
        let (step, rest) = path.split_first().expect("a path has a step");
        let child = match (step, self) {
            (FlatKeyStep::Key(k), Built::Map(pairs, index)) => {
                // A repeated leaf key stays a duplicate pair, as the text has it.
                if rest.is_empty() {
                    index.entry(k.clone()).or_insert(pairs.len());
                    pairs.push((k.clone(), Built::Leaf(value)));
                    return Ok(());
                }
                let at = *index.entry(k.clone()).or_insert_with(|| {
                    pairs.push((k.clone(), Built::for_step(&rest[0])));
                    pairs.len() - 1
                });
                &mut pairs[at].1
            }
            (FlatKeyStep::Index(i), Built::Seq(items)) => {
                let missing = i.saturating_add(1).saturating_sub(items.len());
                if missing > *slots {
                    return Err(Misplaced::Index(*i));
                }
                *slots -= missing;
                items.resize_with(items.len() + missing, || Built::Leaf(Node::Null));
                let slot = &mut items[*i];
                if rest.is_empty() {
                    *slot = Built::Leaf(value);
                    return Ok(());
                }
                if matches!(slot, Built::Leaf(Node::Null)) {
                    *slot = Built::for_step(&rest[0]);
                }
                slot
            }
            _ => return Err(Misplaced::Shape),
        };
        child.place(rest, value, slots)
    }

    fn into_node(self) -> Node {
        match self {
            Built::Leaf(n) => n,
            Built::Map(pairs, _) => Node::Map(Map {
                items: pairs
                    .into_iter()
                    .map(|(k, v)| MapItem::Pair(k, v.into_node()))
                    .collect(),
            }),
            Built::Seq(items) => Node::Seq(Seq {
                items: items
                    .into_iter()
                    .map(|v| SeqItem::Node(v.into_node()))
                    .collect(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flatten_round_trips() {
        let mut entry = Map::new();
        entry.insert("enc", Node::str("-----BEGIN\nx\n"));
        entry.insert("recipient", Node::str("age1x"));
        let mut meta = Map::new();
        meta.insert(
            "age",
            Node::Seq(Seq {
                items: vec![SeqItem::Node(Node::Map(entry))],
            }),
        );
        meta.insert("version", Node::str("3.13.2"));
        let mut flat = Map::new();
        flatten(&meta, "", &mut flat);
        let keys: Vec<&str> = flat.pairs().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            [
                "age__list_0__map_enc",
                "age__list_0__map_recipient",
                "version"
            ]
        );
        let back = unflatten(
            flat.pairs()
                .map(|(k, v)| (k.to_owned(), v.clone()))
                .collect(),
        )
        .unwrap();
        assert_eq!(back, meta);
    }

    fn flat(keys: &[&str]) -> Vec<(String, Node)> {
        keys.iter()
            .map(|k| (k.to_string(), Node::str("x")))
            .collect()
    }

    #[test]
    fn unflatten_bounds_list_indices() {
        // The attack: one key asking for a list of 10^11 entries.
        let e = unflatten(flat(&["age__list_99999999999__map_recipient"])).unwrap_err();
        assert_eq!(
            e,
            DotenvError::MetadataIndex {
                key: "age__list_99999999999__map_recipient".into(),
                index: 99_999_999_999
            }
        );
        assert!(e.to_string().contains("out of range"), "{e}");
        // An index too large for usize is malformed, not a panic.
        assert!(matches!(
            unflatten(flat(&["age__list_999999999999999999999999"])),
            Err(DotenvError::BadMetadataKey(_))
        ));
        // Lines sorted by hand (10 before 2) still rebuild the list: gaps are padded as long
        // as the keys hold that many indices.
        let keys: Vec<String> = (0..12).map(|i| format!("age__list_{i}")).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        let m = unflatten(flat(&sorted.iter().map(String::as_str).collect::<Vec<_>>())).unwrap();
        let Some(Node::Seq(s)) = m.get("age") else {
            panic!("age is a list")
        };
        assert_eq!(s.nodes().count(), 12);
        assert!(s.nodes().all(|n| n == &Node::str("x")));
        // Many keys each skipping ahead cannot pad more than there are indices.
        let skipping: Vec<String> = (0..1000).map(|i| format!("k{i}__list_999")).collect();
        assert!(matches!(
            unflatten(flat(
                &skipping.iter().map(String::as_str).collect::<Vec<_>>()
            )),
            Err(DotenvError::MetadataIndex { index: 999, .. })
        ));
    }

    #[test]
    fn unflatten_bounds_depth_and_stays_linear() {
        let deep = format!("a{}", "__map_b".repeat(100_000));
        assert!(matches!(
            unflatten(flat(&[&deep])),
            Err(DotenvError::MetadataTooDeep {
                limit: MAX_DEPTH,
                ..
            })
        ));
        // Distinct keys are placed through an index, not by scanning the keys placed so far:
        // 200,000 of them rebuild in one pass (a scan per key is quadratic).
        let wide: Vec<String> = (0..200_000).map(|i| format!("k{i}__map_v")).collect();
        let m = unflatten(flat(&wide.iter().map(String::as_str).collect::<Vec<_>>())).unwrap();
        assert_eq!(m.pairs().count(), 200_000);
        // A repeated leaf stays a duplicate pair; a key below a leaf is malformed.
        let m = unflatten(flat(&["a", "a"])).unwrap();
        assert_eq!(m.pairs().count(), 2);
        assert!(matches!(
            unflatten(flat(&["a", "a__map_b"])),
            Err(DotenvError::BadMetadataKey(_))
        ));
    }

    #[test]
    fn non_utf8_is_refused_with_its_position() {
        let e = parse(b"A=ok\nB=caf\xe9\n").unwrap_err();
        assert_eq!(e, DotenvError::NotUtf8 { line: 2, byte: 6 });
        assert!(e.to_string().contains("line 2, byte 6: not UTF-8"), "{e}");
        assert!(matches!(
            parse(b"#c\xff\n"),
            Err(DotenvError::NotUtf8 { line: 1, byte: 3 })
        ));
    }

    #[test]
    fn parse_and_emit() {
        let m = parse(b"#c\nfoo =x=y\nmulti=a\\nb\n\n").unwrap();
        assert_eq!(m.get("foo "), Some(&Node::str("x=y")));
        assert_eq!(m.get("multi"), Some(&Node::str("a\nb")));
        assert_eq!(emit(&m).unwrap(), b"#c\nfoo =x=y\nmulti=a\\nb\n");
        assert_eq!(parse(b"ok=1\nnope\n").unwrap_err(), DotenvError::BadLine(2));
    }
}
