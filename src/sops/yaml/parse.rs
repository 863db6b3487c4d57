//! YAML to the SOPS tree. saphyr-parser supplies the events and their spans; the comments it
//! skips are recovered from the source between spans and placed the way sops places go-yaml's
//! head, line and foot comments (spec §10.3): before the entry they belong to, inline ones
//! marked, trailing ones at the end of their collection (decided by indentation).

use std::collections::{HashMap, HashSet};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use saphyr_parser::{Event, Parser, ScalarStyle, Span, Tag};

use crate::secret::SecretString;
use crate::sops::tree::{Comment, Map, MapItem, Node, Seq, SeqItem, Tree};
use crate::sops::yaml::YamlError;
use crate::sops::yaml::resolve::{self, Resolved};

const CORE_TAG_PREFIX: &str = "tag:yaml.org,2002:";

struct PendingComment {
    line: usize,
    col: usize,
    text: String,
}

enum Frame {
    Map {
        map: Map,
        indent: usize,
        flow: bool,
        anchor: usize,
        key: Option<String>,
        key_line: usize,
        seen: HashSet<String>,
    },
    Seq {
        seq: Seq,
        indent: usize,
        flow: bool,
        anchor: usize,
    },
}

struct Builder<'a> {
    src: &'a str,
    /// Byte offset of every character (and one past the end): spans count characters.
    offsets: Vec<usize>,
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    pending: Vec<PendingComment>,
    /// End of the last event: comments live in the gaps after it.
    cursor: (usize, usize, usize),
    /// The line where the last scalar that completed an entry ended (inline comments).
    inline_line: Option<usize>,
    /// The line of a key whose value has not started yet (key line comments).
    key_line: Option<usize>,
    root: Option<Map>,
    documents: Vec<Map>,
}

fn is_flow_start(src: &str) -> bool {
    src.trim_end().ends_with(['[', '{'])
}

pub fn parse(input: &[u8]) -> Result<Tree, YamlError> {
    let src = std::str::from_utf8(input).map_err(|e| {
        let before = &input[..e.valid_up_to()];
        YamlError::NotUtf8 {
            line: before.iter().filter(|&&c| c == b'\n').count() + 1,
        }
    })?;
    let mut b = Builder {
        src,
        offsets: src
            .char_indices()
            .map(|(i, _)| i)
            .chain(std::iter::once(src.len()))
            .collect(),
        stack: Vec::new(),
        anchors: HashMap::new(),
        pending: Vec::new(),
        cursor: (0, 1, 0),
        inline_line: None,
        key_line: None,
        root: None,
        documents: Vec::new(),
    };
    for item in Parser::new_from_str(src) {
        let (event, span) = item.map_err(|e| YamlError::Syntax {
            line: e.marker().line(),
            column: e.marker().col() + 1,
            message: e.info().to_owned(),
        })?;
        b.event(event, span)?;
    }
    Ok(Tree {
        documents: b.documents,
    })
}

impl Builder<'_> {
    fn text(&self, from: usize, to: usize) -> &str {
        let end = to.min(self.offsets.len() - 1);
        let start = from.min(end);
        &self.src[self.offsets[start]..self.offsets[end]]
    }

    /// Comments in the source between the last event and `span`.
    fn scan_gap(&mut self, span: &Span) -> Vec<PendingComment> {
        let (from, mut line, mut col) = self.cursor;
        let to = span.start.index();
        let mut out = Vec::new();
        if to <= from {
            return out;
        }
        let gap = self.text(from, to).to_owned();
        let mut chars = gap.chars().peekable();
        let mut prev_ws = col == 0;
        while let Some(c) = chars.next() {
            match c {
                '\n' => {
                    line += 1;
                    col = 0;
                    prev_ws = true;
                    continue;
                }
                '#' if prev_ws => {
                    let start_col = col;
                    let mut text = String::new();
                    while let Some(&n) = chars.peek() {
                        if n == '\n' {
                            break;
                        }
                        chars.next();
                        col += 1;
                        if n != '\r' {
                            text.push(n);
                        }
                    }
                    out.push(PendingComment {
                        line,
                        col: start_col,
                        text,
                    });
                }
                c => prev_ws = c == ' ' || c == '\t' || c == '\r',
            }
            col += 1;
        }
        out
    }

    fn event(&mut self, event: Event<'_>, span: Span) -> Result<(), YamlError> {
        let mut found = self.scan_gap(&span);
        let is_block_scalar = matches!(
            event,
            Event::Scalar(_, ScalarStyle::Literal | ScalarStyle::Folded, ..)
        );
        let starts_collection = matches!(event, Event::MappingStart(..) | Event::SequenceStart(..));
        // A comment on the line where the last value ended belongs to that entry (inline).
        if let Some(line) = self.inline_line.take() {
            if let Some(pos) = found.iter().position(|c| c.line == line) {
                let c = found.remove(pos);
                self.insert_before_last(c.text, true);
            }
        }
        // A comment on a key's line, before its value: before the pair in the parent.
        if let Some(line) = self.key_line {
            if starts_collection || is_block_scalar {
                while let Some(pos) = found.iter().position(|c| c.line == line) {
                    let c = found.remove(pos);
                    self.push_comment_to_top(c.text, is_block_scalar);
                }
            }
        }
        self.pending.extend(found);
        let end = span.end;
        if end.index() >= self.cursor.0 {
            self.cursor = (end.index(), end.line(), end.col());
        }

        match event {
            Event::StreamStart | Event::StreamEnd | Event::Nothing => Ok(()),
            Event::DocumentStart(_) => {
                self.root = None;
                Ok(())
            }
            Event::DocumentEnd => {
                let mut root = self.root.take().unwrap_or_default();
                for c in self.pending.drain(..) {
                    root.items.push(MapItem::Comment(comment(c.text, false)));
                }
                self.documents.push(root);
                Ok(())
            }
            Event::MappingStart(anchor, _) | Event::SequenceStart(anchor, _) => {
                self.check_not_key(&span)?;
                if matches!(self.stack.last(), Some(Frame::Seq { .. })) {
                    // Comments above a `- ` that opens a collection belong to the outer list.
                    self.flush_pending_to_top();
                }
                let flow = is_flow_start(self.text(span.start.index(), span.end.index()));
                let indent = span.end.col();
                self.key_line = None;
                self.stack
                    .push(if matches!(event, Event::MappingStart(..)) {
                        Frame::Map {
                            map: Map::new(),
                            indent,
                            flow,
                            anchor,
                            key: None,
                            key_line: 0,
                            seen: HashSet::new(),
                        }
                    } else {
                        Frame::Seq {
                            seq: Seq::default(),
                            indent,
                            flow,
                            anchor,
                        }
                    });
                Ok(())
            }
            Event::MappingEnd | Event::SequenceEnd => {
                let frame = self.stack.pop().expect("balanced events");
                let (node, indent, flow, anchor) = match frame {
                    Frame::Map {
                        map,
                        indent,
                        flow,
                        anchor,
                        ..
                    } => (Node::Map(map), indent, flow, anchor),
                    Frame::Seq {
                        seq,
                        indent,
                        flow,
                        anchor,
                        ..
                    } => (Node::Seq(seq), indent, flow, anchor),
                };
                // Trailing comments indented at least as deep as the collection stay in it.
                let keep = self
                    .pending
                    .iter()
                    .take_while(|c| flow || c.col >= indent)
                    .count();
                let trailing: Vec<PendingComment> = self.pending.drain(..keep).collect();
                let mut node = node;
                for c in trailing {
                    let item = comment(c.text, false);
                    match &mut node {
                        Node::Map(m) => m.items.push(MapItem::Comment(item)),
                        Node::Seq(s) => s.items.push(SeqItem::Comment(item)),
                        _ => unreachable!(),
                    }
                }
                if anchor != 0 {
                    self.anchors.insert(anchor, node.clone());
                }
                self.add(node, None, &span)
            }
            Event::Alias(id) => {
                let node = self
                    .anchors
                    .get(&id)
                    .cloned()
                    .ok_or(YamlError::UnknownAlias {
                        line: span.start.line(),
                        column: span.start.col() + 1,
                    })?;
                self.add(node, Some(span.end.line()), &span)
            }
            Event::Scalar(value, style, anchor, tag) => {
                let is_key = matches!(self.stack.last(), Some(Frame::Map { key: None, .. }));
                let node = self.scalar(&value, style, tag.as_deref(), &span, is_key)?;
                if anchor != 0 {
                    self.anchors.insert(anchor, node.clone());
                }
                self.add(node, Some(span.end.line()), &span)
            }
        }
    }

    fn check_not_key(&self, span: &Span) -> Result<(), YamlError> {
        if matches!(self.stack.last(), Some(Frame::Map { key: None, .. })) {
            return Err(YamlError::NonStringKey {
                line: span.start.line(),
                column: span.start.col() + 1,
            });
        }
        Ok(())
    }

    fn scalar(
        &self,
        value: &str,
        style: ScalarStyle,
        tag: Option<&Tag>,
        span: &Span,
        is_key: bool,
    ) -> Result<Node, YamlError> {
        let (line, column) = (span.start.line(), span.start.col() + 1);
        let core = tag.and_then(|t| {
            (t.handle == CORE_TAG_PREFIX || t.handle == "!!").then_some(t.suffix.as_str())
        });
        let out_of_range = || YamlError::IntegerOutOfRange { line, column };
        let node = match (core, tag) {
            (Some("str"), _) => Node::str(value),
            (Some("binary"), _) => {
                let cleaned: String = value.chars().filter(|c| !c.is_whitespace()).collect();
                let bytes = B64
                    .decode(cleaned)
                    .map_err(|_| YamlError::BadBinary { line, column })?;
                Node::Str(SecretString::new(
                    String::from_utf8(bytes).map_err(|_| YamlError::BadBinary { line, column })?,
                ))
            }
            (Some(t @ ("int" | "float" | "bool" | "null" | "timestamp")), _) => {
                let resolved = match resolve::plain(value) {
                    Resolved::Node(n) => n,
                    Resolved::Unsigned => return Err(out_of_range()),
                };
                match (t, resolved) {
                    ("int", n @ Node::Int(_))
                    | ("bool", n @ Node::Bool(_))
                    | ("null", n @ Node::Null) => n,
                    ("timestamp", n @ Node::Time(_)) => n,
                    ("float", n @ Node::Float(_)) => n,
                    ("float", Node::Int(i)) => Node::Float(i as f64),
                    (t, _) => {
                        return Err(YamlError::TagMismatch {
                            tag: t.to_owned(),
                            line,
                            column,
                        });
                    }
                }
            }
            // Unknown tags keep the text and lose the tag, as in go-yaml.
            (_, Some(_)) => Node::str(value),
            (_, None) => match style {
                ScalarStyle::Plain => match resolve::plain(value) {
                    Resolved::Node(n) => n,
                    Resolved::Unsigned => return Err(out_of_range()),
                },
                _ => Node::str(value),
            },
        };
        if is_key && !matches!(node, Node::Str(_)) {
            return Err(YamlError::NonStringKey { line, column });
        }
        Ok(node)
    }

    /// Adds a finished node where the stack says it goes.
    fn add(
        &mut self,
        node: Node,
        scalar_end_line: Option<usize>,
        span: &Span,
    ) -> Result<(), YamlError> {
        let first_doc = self.documents.is_empty();
        let Some(top) = self.stack.last_mut() else {
            // The document root.
            let map = match node {
                Node::Map(m) => m,
                Node::Null => Map::new(),
                _ => {
                    return Err(YamlError::TopLevelNotMapping {
                        document: self.documents.len() + 1,
                    });
                }
            };
            let mut map = map;
            // Comments before the root's first key were pending until its first entry.
            if !self.pending.is_empty() && map.items.is_empty() {
                for c in self.pending.drain(..) {
                    map.items.push(MapItem::Comment(comment(c.text, false)));
                }
            }
            self.root = Some(map);
            return Ok(());
        };
        match top {
            Frame::Map {
                map,
                key,
                key_line,
                seen,
                indent,
                ..
            } => match key.take() {
                None => {
                    let Node::Str(k) = node else {
                        return Err(YamlError::NonStringKey {
                            line: span.start.line(),
                            column: span.start.col() + 1,
                        });
                    };
                    let k = k.expose().to_owned();
                    if map.pairs().next().is_none() {
                        *indent = span.start.col();
                    }
                    if first_doc && !seen.insert(k.clone()) {
                        return Err(YamlError::DuplicateKey {
                            key: k,
                            line: span.start.line(),
                            column: span.start.col() + 1,
                        });
                    }
                    for c in self.pending.drain(..) {
                        map.items.push(MapItem::Comment(comment(c.text, false)));
                    }
                    *key_line = span.end.line();
                    self.key_line = Some(span.end.line());
                    *key = Some(k);
                }
                Some(k) => {
                    // Comments between a key and its scalar value go before the pair; after a
                    // collection value they are the ones it did not claim, for the next entry.
                    if scalar_end_line.is_some() {
                        for c in self.pending.drain(..) {
                            map.items.push(MapItem::Comment(comment(c.text, false)));
                        }
                    }
                    map.items.push(MapItem::Pair(k, node));
                    self.key_line = None;
                    self.inline_line = scalar_end_line;
                }
            },
            Frame::Seq { seq, .. } => {
                if scalar_end_line.is_some() {
                    for c in self.pending.drain(..) {
                        seq.items.push(SeqItem::Comment(comment(c.text, false)));
                    }
                }
                seq.items.push(SeqItem::Node(node));
                self.inline_line = scalar_end_line;
            }
        }
        Ok(())
    }

    /// Puts a comment right before the entry last added to the top collection.
    fn insert_before_last(&mut self, text: String, inline: bool) {
        let c = comment(text, inline);
        match self.stack.last_mut() {
            Some(Frame::Map { map, .. }) => {
                let pos = map
                    .items
                    .iter()
                    .rposition(|i| matches!(i, MapItem::Pair(..)))
                    .unwrap_or(map.items.len());
                map.items.insert(pos, MapItem::Comment(c));
            }
            Some(Frame::Seq { seq, .. }) => {
                let pos = seq
                    .items
                    .iter()
                    .rposition(|i| matches!(i, SeqItem::Node(_)))
                    .unwrap_or(seq.items.len());
                seq.items.insert(pos, SeqItem::Comment(c));
            }
            None => {}
        }
    }

    fn push_comment_to_top(&mut self, text: String, inline: bool) {
        let c = comment(text, inline);
        match self.stack.last_mut() {
            Some(Frame::Map { map, .. }) => map.items.push(MapItem::Comment(c)),
            Some(Frame::Seq { seq, .. }) => seq.items.push(SeqItem::Comment(c)),
            None => {}
        }
    }

    fn flush_pending_to_top(&mut self) {
        let pending: Vec<PendingComment> = self.pending.drain(..).collect();
        for c in pending {
            self.push_comment_to_top(c.text, false);
        }
    }
}

fn comment(text: String, inline: bool) -> Comment {
    Comment {
        text: SecretString::new(text),
        inline,
    }
}
