//! A tolerant reading of YAML (and so of JSON) for `check` alone: every document whatever its
//! top level, keys of any type (taken as their text), duplicate keys kept. The SOPS store
//! rightly refuses such files, but a plaintext Secret in one is still a leak once committed;
//! what is read here only decides whether values are in clear and never feeds a write.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle};

use crate::sops::tree::{Map, MapItem, Node, Seq, SeqItem};

/// Why the text is not YAML even to a tolerant reader. Never holds a scalar's content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct Unreadable {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Alias expansion copies nodes; a file of nested aliases (a "billion laughs") must not make
/// `check` exhaust memory, so the copies are counted.
const MAX_COPIED_NODES: usize = 100_000;

/// Every document's top-level node, in order.
pub fn documents(text: &str) -> Result<Vec<Node>, Unreadable> {
    let mut r = Reader::default();
    let mut parser = Parser::new_from_str(text);
    loop {
        let (event, span) = match parser.next_event() {
            None => break,
            Some(Ok(x)) => x,
            Some(Err(e)) => {
                let m = e.marker();
                return Err(Unreadable {
                    line: m.line(),
                    column: m.col() + 1,
                    message: e.info().to_owned(),
                });
            }
        };
        let at = |message: &str| Unreadable {
            line: span.start.line(),
            column: span.start.col() + 1,
            message: message.to_owned(),
        };
        match event {
            Event::StreamEnd => break,
            Event::Scalar(text, style, anchor, _) => {
                let node = if style == ScalarStyle::Plain
                    && matches!(&*text, "" | "~" | "null" | "Null" | "NULL")
                {
                    Node::Null
                } else {
                    Node::str(text.into_owned())
                };
                r.anchor(anchor, &node);
                r.complete(node);
            }
            Event::Alias(id) => {
                let Some((node, size)) = r.anchors.get(&id) else {
                    return Err(at("alias to an unknown anchor"));
                };
                r.copied += size;
                if r.copied > MAX_COPIED_NODES {
                    return Err(at("too many alias expansions"));
                }
                let node = node.clone();
                r.complete(node);
            }
            Event::MappingStart(anchor, _) => r.stack.push(Frame::Map(Map::new(), None, anchor)),
            Event::SequenceStart(anchor, _) => r.stack.push(Frame::Seq(Seq::default(), anchor)),
            Event::MappingEnd | Event::SequenceEnd => {
                let (node, anchor) = match r.stack.pop() {
                    Some(Frame::Map(m, _, a)) => (Node::Map(m), a),
                    Some(Frame::Seq(s, a)) => (Node::Seq(s), a),
                    None => return Err(at("unbalanced collection end")),
                };
                r.anchor(anchor, &node);
                r.complete(node);
            }
            Event::StreamStart | Event::DocumentStart(_) | Event::DocumentEnd | Event::Nothing => {}
        }
    }
    Ok(r.documents)
}

enum Frame {
    /// The mapping so far, the key whose value comes next, the anchor id.
    Map(Map, Option<String>, usize),
    Seq(Seq, usize),
}

#[derive(Default)]
struct Reader {
    stack: Vec<Frame>,
    /// Anchored nodes with their size in nodes.
    anchors: HashMap<usize, (Node, usize)>,
    copied: usize,
    documents: Vec<Node>,
}

impl Reader {
    fn anchor(&mut self, id: usize, node: &Node) {
        if id != 0 {
            self.anchors.insert(id, (node.clone(), size(node)));
        }
    }

    fn complete(&mut self, node: Node) {
        match self.stack.last_mut() {
            None => self.documents.push(node),
            Some(Frame::Seq(seq, _)) => seq.items.push(SeqItem::Node(node)),
            Some(Frame::Map(map, key, _)) => match key.take() {
                Some(k) => map.items.push(MapItem::Pair(k, node)),
                None => *key = Some(key_text(&node)),
            },
        }
    }
}

/// A key as the text it was written as: `2024`, `true`; a collection used as a key has no text
/// worth judging.
fn key_text(node: &Node) -> String {
    match node {
        Node::Str(s) => s.expose().to_owned(),
        Node::Null => String::new(),
        _ => "?".to_owned(),
    }
}

fn size(node: &Node) -> usize {
    match node {
        Node::Map(m) => 1 + m.pairs().map(|(_, v)| size(v)).sum::<usize>(),
        Node::Seq(s) => 1 + s.nodes().map(size).sum::<usize>(),
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn top(text: &str) -> Vec<Node> {
        documents(text).unwrap()
    }

    #[test]
    fn reads_what_the_store_refuses() {
        let docs = top("- a\n---\nscalar\n---\nkind: Secret\nmetadata: {annotations: {2024: x}}\n");
        assert_eq!(docs.len(), 3);
        assert!(matches!(docs[0], Node::Seq(_)));
        let m = docs[2].as_map().unwrap();
        assert_eq!(m.get("kind").and_then(Node::as_str), Some("Secret"));
        let ann = m
            .get("metadata")
            .unwrap()
            .as_map()
            .unwrap()
            .get("annotations");
        assert!(ann.unwrap().as_map().unwrap().get("2024").is_some());
        // Duplicate keys are kept, aliases expanded.
        let m = top("a: &x v\na: *x\n");
        assert_eq!(m[0].as_map().unwrap().pairs().count(), 2);
        assert_eq!(
            m[0].as_map().unwrap().get("a").and_then(Node::as_str),
            Some("v")
        );
    }

    #[test]
    fn refuses_what_is_not_yaml_and_alias_bombs() {
        assert!(documents("a: [\n").is_err());
        assert!(documents("a: *nowhere\n").is_err());
        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let refs = vec![format!("*a{}", i - 1); 10].join(", ");
            bomb.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
        }
        let e = documents(&bomb).unwrap_err();
        assert!(e.message.contains("alias"), "{e}");
    }
}
