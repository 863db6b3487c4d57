//! The dotenv store (spec §11): `KEY=value` lines, `#` comments, metadata flattened into
//! `sops_`-prefixed keys with `__map_` / `__list_<n>` separators.

use crate::sops::tree::{Comment, Map, MapItem, Node, Seq, SeqItem};
use crate::sops::value::format_float_f;

const MAP_SEP: &str = "__map_";
const LIST_SEP: &str = "__list_";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DotenvError {
    #[error("line {0}: not KEY=value or a # comment")]
    BadLine(usize),
    #[error("key {0:?}: dotenv files hold only flat string values, not mappings or lists")]
    ComplexValue(String),
    #[error("malformed flattened metadata key {0:?}")]
    BadMetadataKey(String),
}

pub fn parse(input: &[u8]) -> Result<Map, DotenvError> {
    let mut map = Map::new();
    for (i, line) in input.split(|&c| c == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        let line = String::from_utf8_lossy(line);
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

/// sops' `ValToString` for non-string scalars.
fn scalar_text(n: &Node) -> String {
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
    let mut root = Map::new();
    for (key, value) in flat {
        let mut tokens = Vec::new();
        let mut rest = key.as_str();
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
            let (is_list, body) = if let Some(b) = rest.strip_prefix(LIST_SEP) {
                (true, b)
            } else if let Some(b) = rest.strip_prefix(MAP_SEP) {
                (false, b)
            } else {
                return Err(DotenvError::BadMetadataKey(key.clone()));
            };
            let end = [body.find(MAP_SEP), body.find(LIST_SEP)]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(body.len());
            let tok = &body[..end];
            if is_list {
                tokens.push(Tok::Index(
                    tok.parse()
                        .map_err(|_| DotenvError::BadMetadataKey(key.clone()))?,
                ));
            } else {
                tokens.push(Tok::Key(tok.to_owned()));
            }
            rest = &body[end..];
        }
        place_in_map(&mut root, head, &tokens, value)
            .map_err(|_| DotenvError::BadMetadataKey(key.clone()))?;
    }
    Ok(root)
}

enum Tok {
    Key(String),
    Index(usize),
}

fn place_in_map(map: &mut Map, key: &str, rest: &[Tok], value: Node) -> Result<(), ()> {
    if rest.is_empty() {
        map.insert(key, value);
        return Ok(());
    }
    if map.get(key).is_none() {
        let empty = match rest[0] {
            Tok::Key(_) => Node::Map(Map::new()),
            Tok::Index(_) => Node::Seq(Seq::default()),
        };
        map.insert(key, empty);
    }
    place(map.get_mut(key).expect("inserted"), rest, value)
}

fn place(node: &mut Node, path: &[Tok], value: Node) -> Result<(), ()> {
    match (&path[0], node) {
        (Tok::Key(k), Node::Map(m)) => place_in_map(m, k, &path[1..], value),
        (Tok::Index(i), Node::Seq(s)) => {
            while s.items.len() <= *i {
                s.items.push(SeqItem::Node(Node::Null));
            }
            let SeqItem::Node(slot) = &mut s.items[*i] else {
                unreachable!()
            };
            if path.len() == 1 {
                *slot = value;
                return Ok(());
            }
            if matches!(slot, Node::Null) {
                *slot = match path[1] {
                    Tok::Key(_) => Node::Map(Map::new()),
                    Tok::Index(_) => Node::Seq(Seq::default()),
                };
            }
            place(slot, &path[1..], value)
        }
        _ => Err(()),
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

    #[test]
    fn parse_and_emit() {
        let m = parse(b"#c\nfoo =x=y\nmulti=a\\nb\n\n").unwrap();
        assert_eq!(m.get("foo "), Some(&Node::str("x=y")));
        assert_eq!(m.get("multi"), Some(&Node::str("a\nb")));
        assert_eq!(emit(&m).unwrap(), b"#c\nfoo =x=y\nmulti=a\\nb\n");
        assert_eq!(parse(b"ok=1\nnope\n").unwrap_err(), DotenvError::BadLine(2));
    }
}
