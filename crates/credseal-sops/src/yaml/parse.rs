//! YAML text to the SOPS tree.
//!
//! saphyr-parser supplies the events and their spans; it skips comments, so they are recovered
//! from the source text in the gaps between spans (a gap holds only whitespace, indicators,
//! anchors/tags of block collections and comments) and placed where sops puts go-yaml's head,
//! line and foot comments (docs/sops-format.md §10.3):
//! * a comment after a scalar value (or alias) on its line is that entry's inline comment,
//!   stored just before the entry and marked `inline`; so is one after a block scalar header;
//! * a comment after `key:` whose value starts on a later line is the key's line comment: a
//!   normal comment before the entry in the outer mapping;
//! * a comment after the `]`/`}` of a flow collection that is a mapping value becomes the first
//!   entry of that collection (sops reads it as the collection's line comment);
//! * comments on their own lines before an entry are head comments of that entry; before the
//!   first entry of a nested collection they belong to the nested collection;
//! * comments between the end of a nested collection and a less indented next entry are
//!   divided by column: a comment belongs to the innermost collection whose indentation it
//!   reaches; the first line right after the content also stays inside when it is indented more
//!   than the next entry (go-yaml takes it as a foot comment of the content above).
//!
//! Spans count characters; they are converted to byte offsets, and byte offsets to lines,
//! through tables built once ([`Positions`]), so every event costs the same however far into
//! the file it is.

use std::collections::{HashMap, HashSet};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use saphyr_parser::{Event, Parser, ScalarStyle, Span, Tag};

use crate::secret::SecretString;
use crate::tree::{Comment, MAX_DEPTH, Map, MapItem, Node, Seq, SeqItem, Tree};
use crate::yaml::YamlError;
use crate::yaml::resolve::{Resolved, resolve_plain};

const CORE: &str = "tag:yaml.org,2002:";

/// go-yaml v3's alias budget (`decode.go`, `allowedAliasRatio`): the share of a document's
/// nodes that may come from expanding aliases, 99% up to 400,000 nodes, falling linearly to
/// 10% at 4,000,000 and beyond. It refuses billion-laughs documents after a few thousand nodes
/// while every document with ordinary anchors passes, as it does in sops.
fn allowed_alias_ratio(decoded: usize) -> f64 {
    const LOW: usize = 400_000;
    const HIGH: usize = 4_000_000;
    match decoded {
        ..=LOW => 0.99,
        HIGH.. => 0.10,
        _ => 0.99 - 0.89 * ((decoded - LOW) as f64 / (HIGH - LOW) as f64),
    }
}

/// Anchored collections are kept as copies for later aliases; nested anchors copy the same
/// nodes again at every level. Copies beyond this many per node read (plus a fixed allowance)
/// are refused like excessive aliasing, so nesting cannot multiply memory either.
const ANCHOR_COPIES_PER_NODE: usize = 4;
const ANCHOR_COPIES_ALLOWANCE: usize = 100_000;

/// How much tree a value stands for: its nodes (keys included, as go-yaml counts them) and
/// its levels of collections.
#[derive(Clone, Copy)]
struct Size {
    nodes: usize,
    height: usize,
}

impl Size {
    const SCALAR: Size = Size {
        nodes: 1,
        height: 0,
    };
    const EMPTY_COLLECTION: Size = Size {
        nodes: 1,
        height: 1,
    };
}

/// An anchored value, kept for the aliases that repeat it.
struct Anchored {
    node: Node,
    size: Size,
}

struct Pending {
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
        /// The key whose value comes next, with its position.
        key: Option<(String, usize, usize)>,
        seen: HashSet<String>,
        size: Size,
    },
    Seq {
        seq: Seq,
        indent: usize,
        flow: bool,
        anchor: usize,
        /// A block sequence at the column of its parent mapping's keys (`key:\n- item`).
        indentless: bool,
        size: Size,
    },
}

impl Frame {
    fn indent(&self) -> usize {
        match self {
            Frame::Map { indent, .. } | Frame::Seq { indent, .. } => *indent,
        }
    }

    fn flow(&self) -> bool {
        match self {
            Frame::Map { flow, .. } | Frame::Seq { flow, .. } => *flow,
        }
    }

    /// Counts a finished child into this collection's size.
    fn grow(&mut self, child: Size) {
        let (Frame::Map { size, .. } | Frame::Seq { size, .. }) = self;
        size.nodes += child.nodes;
        size.height = size.height.max(child.height + 1);
    }

    /// The smallest column a comment needs to belong inside this collection.
    fn own_col(&self) -> usize {
        match self {
            Frame::Seq {
                indent,
                indentless: true,
                ..
            } => indent + 1,
            f => f.indent(),
        }
    }

    fn push_comment(&mut self, c: Comment) {
        match self {
            Frame::Map { map, .. } => map.items.push(MapItem::Comment(c)),
            Frame::Seq { seq, .. } => seq.items.push(SeqItem::Comment(c)),
        }
    }

    /// Puts a comment just before the last entry (the one that just ended).
    fn insert_before_last(&mut self, c: Comment) {
        match self {
            Frame::Map { map, .. } => {
                let at = map.items.len().saturating_sub(1);
                map.items.insert(at, MapItem::Comment(c));
            }
            Frame::Seq { seq, .. } => {
                let at = seq.items.len().saturating_sub(1);
                seq.items.insert(at, SeqItem::Comment(c));
            }
        }
    }

    /// The collection just completed as the last entry, if it is a mapping or a sequence.
    fn last_value_mut(&mut self) -> Option<&mut Node> {
        match self {
            Frame::Map { map, .. } => match map.items.last_mut() {
                Some(MapItem::Pair(_, v)) => Some(v),
                _ => None,
            },
            Frame::Seq { seq, .. } => match seq.items.last_mut() {
                Some(SeqItem::Node(n)) => Some(n),
                _ => None,
            },
        }
    }
}

/// What the event before the current gap was, for attributing a comment on its line.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Prev {
    Other,
    /// A scalar used as a mapping key.
    Key,
    /// A scalar or alias that completed an entry (mapping value or sequence item).
    Value,
    /// An empty (null) scalar that completed an entry: a comment after `key:` or `-` is not
    /// the value's line comment in go-yaml, but the key's (or the next item's head).
    EmptyValue,
    /// The end of a flow collection that completed an entry; `true` when it is a mapping value.
    FlowEnd(bool),
    DocStart,
}

/// Characters to lines and bytes: a byte offset per [`CHAR_STRIDE`] characters (none for ASCII
/// text, where they are equal) and the byte offset of every line start.
struct Positions {
    ascii: bool,
    marks: Vec<usize>,
    /// Characters in the text.
    chars: usize,
    line_starts: Vec<usize>,
}

/// One byte offset kept per this many characters: a table entry per character would take
/// eight times the size of the text.
const CHAR_STRIDE: usize = 64;

impl Positions {
    fn new(src: &str) -> Positions {
        let line_starts = std::iter::once(0)
            .chain(
                src.bytes()
                    .enumerate()
                    .filter_map(|(i, c)| (c == b'\n').then_some(i + 1)),
            )
            .collect();
        if src.is_ascii() {
            return Positions {
                ascii: true,
                marks: Vec::new(),
                chars: src.len(),
                line_starts,
            };
        }
        let mut marks = Vec::new();
        let mut chars = 0;
        for (i, (at, _)) in src.char_indices().enumerate() {
            if i % CHAR_STRIDE == 0 {
                marks.push(at);
            }
            chars = i + 1;
        }
        Positions {
            ascii: false,
            marks,
            chars,
            line_starts,
        }
    }

    /// The byte offset of a character index (the end of the text past its last character).
    fn byte(&self, src: &str, char_index: usize) -> usize {
        if char_index >= self.chars {
            return src.len();
        }
        if self.ascii {
            return char_index;
        }
        let mark = self.marks[char_index / CHAR_STRIDE];
        src[mark..]
            .char_indices()
            .nth(char_index % CHAR_STRIDE)
            .map_or(src.len(), |(i, _)| mark + i)
    }

    /// The line (1-based) holding a byte offset.
    fn line_of(&self, byte: usize) -> usize {
        self.line_starts.partition_point(|&start| start <= byte)
    }

    /// The byte offset where the line holding `byte` starts.
    fn line_start(&self, byte: usize) -> usize {
        self.line_starts[self.line_of(byte) - 1]
    }
}

struct Builder<'a> {
    src: &'a str,
    pos: Positions,
    stack: Vec<Frame>,
    anchors: HashMap<usize, Anchored>,
    /// Nodes read so far, those that came from expanding aliases, and those copied to keep
    /// anchored values (the alias budget).
    decoded: usize,
    aliased: usize,
    anchor_copies: usize,
    pending: Vec<Pending>,
    cursor: usize,
    prev: Prev,
    /// Line (1-based) on which the previous event ended, for trailing comments.
    prev_line: usize,
    /// Last line holding content, for go-yaml's foot-comment rule.
    last_content_line: usize,
    root: Option<Node>,
    documents: Vec<Map>,
    doc_index: usize,
}

pub(crate) fn parse(input: &[u8]) -> Result<Tree, YamlError> {
    let src = std::str::from_utf8(input).map_err(|e| {
        let before = &input[..e.valid_up_to()];
        YamlError::NotUtf8 {
            line: before.iter().filter(|&&c| c == b'\n').count() + 1,
        }
    })?;
    let mut b = Builder {
        src,
        pos: Positions::new(src),
        stack: Vec::new(),
        anchors: HashMap::new(),
        decoded: 0,
        aliased: 0,
        anchor_copies: 0,
        pending: Vec::new(),
        cursor: 0,
        prev: Prev::Other,
        prev_line: 0,
        last_content_line: 0,
        root: None,
        documents: Vec::new(),
        doc_index: 0,
    };
    let mut parser = Parser::new_from_str(src);
    loop {
        let (ev, span) = match parser.next_event() {
            None => break,
            Some(Ok(x)) => x,
            Some(Err(e)) => {
                let m = e.marker();
                return Err(YamlError::Syntax {
                    line: m.line(),
                    column: m.col() + 1,
                    message: e.info().to_owned(),
                });
            }
        };
        if matches!(ev, Event::StreamEnd) {
            break;
        }
        b.event(ev, span)?;
    }
    Ok(Tree {
        documents: b.documents,
    })
}

fn core_tag(tag: &Option<std::borrow::Cow<'_, Tag>>) -> Option<String> {
    let t = tag.as_ref()?;
    let full = format!("{}{}", t.handle, t.suffix);
    let name = full
        .strip_prefix(CORE)
        .or_else(|| full.strip_prefix("!!"))
        .map(str::to_owned);
    Some(name.unwrap_or_else(|| format!("!{full}")))
}

impl Builder<'_> {
    fn byte(&self, char_index: usize) -> usize {
        self.pos.byte(self.src, char_index)
    }

    fn line_of(&self, byte: usize) -> usize {
        self.pos.line_of(byte)
    }

    /// The line of the last non-blank character in `[start, end)`, or of `start`.
    fn last_content_line_in(&self, start: usize, end: usize) -> usize {
        let text = &self.src[start..end];
        match text.trim_end().len() {
            0 => self.line_of(start),
            n => self.line_of(start + n - 1),
        }
    }

    /// Where the token of an event really ends: saphyr's spans of quoted scalars and of flow
    /// collection ends run over a comment that follows on the same line.
    fn token_end(&self, ev: &Event<'_>, start: usize, end: usize) -> usize {
        let text = &self.src[start..end];
        match ev {
            Event::Scalar(_, ScalarStyle::DoubleQuoted | ScalarStyle::SingleQuoted, ..) => {
                let b = text.as_bytes();
                let Some(open) = b.iter().position(|&c| c == b'"' || c == b'\'') else {
                    return end;
                };
                let q = b[open];
                let mut i = open + 1;
                while i < b.len() {
                    if q == b'"' && b[i] == b'\\' {
                        i += 2;
                        continue;
                    }
                    if b[i] == q {
                        if q == b'\'' && b.get(i + 1) == Some(&b'\'') {
                            i += 2;
                            continue;
                        }
                        return start + i + 1;
                    }
                    i += 1;
                }
                end
            }
            Event::SequenceEnd | Event::MappingEnd if text.starts_with([']', '}']) => start + 1,
            Event::Scalar(_, ScalarStyle::Plain, ..) | Event::Alias(_) => {
                let cut = [" #", "\t#"]
                    .iter()
                    .filter_map(|p| text.find(p))
                    .min()
                    .unwrap_or(text.len());
                start + text[..cut].trim_end().len()
            }
            _ => end,
        }
    }

    /// Column (characters) of the next content after `from`, which is at column `from_col`,
    /// skipping blanks and comments.
    fn next_token_col(&self, from: usize, from_col: usize) -> usize {
        let rest = &self.src[from..];
        let mut col_at_line_start = from_col;
        for line in rest.split('\n') {
            let trimmed = line.trim_start_matches([' ', '\t', '\r']);
            if !trimmed.is_empty() && !trimmed.starts_with('#') {
                return col_at_line_start + line[..line.len() - trimmed.len()].chars().count();
            }
            col_at_line_start = 0;
        }
        0
    }

    /// Comments in `[from, to)`: (line, column, text after `#`, trailing = content before it
    /// on its line).
    fn scan_gap(&self, from: usize, to: usize) -> Vec<(usize, usize, String, bool)> {
        let mut out = Vec::new();
        if from >= to {
            return out;
        }
        let gap = &self.src[from..to];
        let mut i = 0;
        while let Some(rel) = gap[i..].find('#') {
            let at = from + i + rel;
            let before = self.src[..at].chars().next_back();
            let is_comment = before.is_none_or(|c| c == ' ' || c == '\t' || c == '\n' || c == '\r');
            let line_end = self.src[at..].find('\n').map_or(self.src.len(), |n| at + n);
            let end = line_end.min(to);
            if is_comment {
                let line_start = self.pos.line_start(at);
                let prefix = &self.src[line_start..at];
                let trailing = !prefix.trim().is_empty();
                let text = self.src[at + 1..end].trim_end_matches('\r').to_owned();
                out.push((self.line_of(at), prefix.chars().count(), text, trailing));
            }
            i = end - from;
            if end == to || i >= gap.len() {
                break;
            }
        }
        out
    }

    fn comment(text: String, inline: bool) -> Comment {
        Comment {
            text: SecretString::new(text),
            inline,
        }
    }

    /// Reads the comments in the gap before the event starting at byte `to`.
    fn take_gap(&mut self, to: usize, next_is_block_scalar: bool) {
        let from = self.cursor;
        for (line, col, text, trailing) in self.scan_gap(from, to) {
            if trailing && line == self.prev_line {
                match self.prev {
                    Prev::Value => {
                        if let Some(top) = self.stack.last_mut() {
                            top.insert_before_last(Self::comment(text, true));
                            continue;
                        }
                    }
                    Prev::EmptyValue => match self.stack.last_mut() {
                        Some(top @ Frame::Map { .. }) => {
                            top.insert_before_last(Self::comment(text, false));
                            continue;
                        }
                        Some(top) => {
                            top.push_comment(Self::comment(text, false));
                            continue;
                        }
                        None => {}
                    },
                    Prev::Key => {
                        if let Some(top) = self.stack.last_mut() {
                            top.push_comment(Self::comment(text, next_is_block_scalar));
                            continue;
                        }
                    }
                    Prev::FlowEnd(is_value) => {
                        if let Some(top) = self.stack.last_mut() {
                            if is_value {
                                match top.last_value_mut() {
                                    // `key: {} # note`: sops loses the note (go-yaml does not
                                    // attach it to the empty mapping); credseal keeps it as a
                                    // head comment of the next entry instead.
                                    Some(Node::Map(m)) if m.items.is_empty() => {}
                                    Some(Node::Seq(s)) => {
                                        s.items.insert(
                                            0,
                                            SeqItem::Comment(Self::comment(text, false)),
                                        );
                                        continue;
                                    }
                                    Some(Node::Map(m)) => {
                                        m.items.insert(
                                            0,
                                            MapItem::Comment(Self::comment(text, false)),
                                        );
                                        continue;
                                    }
                                    _ => {}
                                }
                            } else {
                                top.insert_before_last(Self::comment(text, true));
                                continue;
                            }
                        }
                    }
                    Prev::DocStart | Prev::Other => {}
                }
            }
            if trailing && next_is_block_scalar && line == self.line_of(to).saturating_sub(1) {
                // `key: | # note`: the block scalar's line comment.
                if let Some(top) = self.stack.last_mut() {
                    top.push_comment(Self::comment(text, true));
                    continue;
                }
            }
            self.pending.push(Pending { line, col, text });
        }
    }

    /// Pending comments become head comments in the current collection.
    fn flush_pending_into_top(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        if let Some(top) = self.stack.last_mut() {
            for p in pending {
                top.push_comment(Self::comment(p.text, false));
            }
        } else {
            self.pending = pending;
        }
    }

    fn event(&mut self, ev: Event<'_>, span: Span) -> Result<(), YamlError> {
        let start = self.byte(span.start.index());
        let end = self.token_end(&ev, start, self.byte(span.end.index()).max(start));
        let (line, column) = (span.start.line(), span.start.col());
        let is_block_scalar = matches!(
            ev,
            Event::Scalar(_, ScalarStyle::Literal | ScalarStyle::Folded, _, _)
        );
        if start >= self.cursor {
            self.take_gap(start, is_block_scalar);
        }
        match ev {
            Event::StreamStart | Event::StreamEnd | Event::Nothing => {}
            Event::DocumentStart(_) => {
                self.stack.clear();
                self.root = None;
                self.prev = Prev::DocStart;
            }
            Event::DocumentEnd => {
                let mut map = match self.root.take() {
                    None | Some(Node::Null) => Map::new(),
                    Some(Node::Map(m)) => m,
                    Some(_) => {
                        return Err(YamlError::TopLevelNotMapping {
                            document: self.doc_index + 1,
                        });
                    }
                };
                for p in std::mem::take(&mut self.pending) {
                    map.items
                        .push(MapItem::Comment(Self::comment(p.text, false)));
                }
                self.documents.push(map);
                self.doc_index += 1;
                self.prev = Prev::Other;
            }
            Event::MappingStart(anchor, _) | Event::SequenceStart(anchor, _) => {
                if self.stack.len() >= MAX_DEPTH {
                    return Err(YamlError::TooDeep {
                        line,
                        column: column + 1,
                        limit: MAX_DEPTH,
                    });
                }
                self.decoded += 1;
                let is_map = matches!(ev, Event::MappingStart(..));
                let flow = end > start && matches!(&self.src[start..end], "{" | "[");
                // Own-line comments before the first entry of a nested collection belong to it,
                // except for a sequence item (they come before its `-`).
                let into_new = !matches!(self.stack.last(), Some(Frame::Seq { .. }));
                if !into_new {
                    self.flush_pending_into_top();
                }
                let parent_indent = match self.stack.last() {
                    Some(Frame::Map {
                        indent,
                        flow: false,
                        ..
                    }) => Some(*indent),
                    _ => None,
                };
                let frame = if is_map {
                    Frame::Map {
                        map: Map::new(),
                        indent: column,
                        flow,
                        anchor,
                        key: None,
                        seen: HashSet::new(),
                        size: Size::EMPTY_COLLECTION,
                    }
                } else {
                    Frame::Seq {
                        seq: Seq::default(),
                        indent: column,
                        flow,
                        anchor,
                        indentless: !flow && parent_indent == Some(column),
                        size: Size::EMPTY_COLLECTION,
                    }
                };
                self.stack.push(frame);
                if into_new {
                    self.flush_pending_into_top();
                }
                self.prev = Prev::Other;
                if flow {
                    self.last_content_line = line;
                }
            }
            Event::MappingEnd | Event::SequenceEnd => {
                let top = self.stack.last().expect("end event inside a collection");
                if top.flow() {
                    self.flush_pending_into_top();
                } else {
                    let next_col = self.next_token_col(start, column);
                    let own = top.own_col();
                    let mut take = 0;
                    for (i, p) in self.pending.iter().enumerate() {
                        let first = i == 0 && p.line == self.last_content_line + 1;
                        if (first && p.col > next_col) || p.col >= own {
                            take = i + 1;
                        } else {
                            break;
                        }
                    }
                    let taken: Vec<Pending> = self.pending.drain(..take).collect();
                    let top = self.stack.last_mut().expect("checked above");
                    for p in taken {
                        top.push_comment(Self::comment(p.text, false));
                    }
                }
                let frame = self.stack.pop().expect("checked above");
                let flow = frame.flow();
                let (node, anchor, size) = match frame {
                    Frame::Map {
                        map, anchor, size, ..
                    } => (Node::Map(map), anchor, size),
                    Frame::Seq {
                        seq, anchor, size, ..
                    } => (Node::Seq(seq), anchor, size),
                };
                if anchor != 0 {
                    self.anchor_copies += size.nodes;
                    if self.anchor_copies
                        > ANCHOR_COPIES_PER_NODE * self.decoded + ANCHOR_COPIES_ALLOWANCE
                    {
                        return Err(YamlError::ExcessiveAliasing {
                            line,
                            column: column + 1,
                        });
                    }
                    let node = node.clone();
                    self.anchors.insert(anchor, Anchored { node, size });
                }
                let was_value = matches!(self.stack.last(), Some(Frame::Map { key: Some(_), .. }));
                self.complete(node, None, size, line, column)?;
                self.prev = if flow {
                    Prev::FlowEnd(was_value)
                } else {
                    Prev::Other
                };
                if flow {
                    self.last_content_line = self.line_of(end.max(1) - 1);
                }
            }
            Event::Alias(id) => {
                let anchored = self.anchors.get(&id).ok_or(YamlError::UnknownAlias {
                    line,
                    column: column + 1,
                })?;
                let size = anchored.size;
                if self.stack.len() + size.height > MAX_DEPTH {
                    return Err(YamlError::TooDeep {
                        line,
                        column: column + 1,
                        limit: MAX_DEPTH,
                    });
                }
                // Checked before the copy is made: the copy is what would exhaust memory.
                self.decoded += 1 + size.nodes;
                self.aliased += size.nodes;
                if self.aliased > 100
                    && self.decoded > 1000
                    && self.aliased as f64 / self.decoded as f64 > allowed_alias_ratio(self.decoded)
                {
                    return Err(YamlError::ExcessiveAliasing {
                        line,
                        column: column + 1,
                    });
                }
                let node = anchored.node.clone();
                let key_text = match &node {
                    Node::Str(s) => Some(s.expose().to_owned()),
                    _ => None,
                };
                let was_key = self.expecting_key();
                if !was_key {
                    self.flush_pending_into_top();
                }
                self.complete(node, Some(key_text), size, line, column)?;
                self.prev = if was_key { Prev::Key } else { Prev::Value };
                self.last_content_line = self.last_content_line_in(start, end);
            }
            Event::Scalar(value, style, anchor, tag) => {
                let was_key = self.expecting_key();
                let (node, key_text) = self.scalar(value, style, &tag, was_key, line, column)?;
                self.decoded += 1;
                if anchor != 0 {
                    let node = node.clone();
                    self.anchors.insert(
                        anchor,
                        Anchored {
                            node,
                            size: Size::SCALAR,
                        },
                    );
                }
                // `- # note` on an empty item: go-yaml makes the note a head comment of what
                // follows the (null) item.
                let empty_item =
                    end == start && matches!(self.stack.last(), Some(Frame::Seq { .. }));
                if !empty_item {
                    self.flush_pending_into_top();
                }
                self.complete(node, Some(key_text), Size::SCALAR, line, column)?;
                self.prev = if was_key {
                    Prev::Key
                } else if end == start {
                    Prev::EmptyValue
                } else {
                    Prev::Value
                };
                self.last_content_line = if end > start {
                    self.last_content_line_in(start, end)
                } else {
                    line
                };
            }
        }
        self.cursor = self.cursor.max(end);
        self.prev_line = if end > start {
            self.line_of(end.max(1) - 1).max(line)
        } else {
            line
        };
        if matches!(self.prev, Prev::Value | Prev::Key) && end > start {
            // A block scalar's span runs to the next token: its "line" is its last content line.
            self.prev_line = self.last_content_line;
        }
        Ok(())
    }

    fn expecting_key(&self) -> bool {
        matches!(self.stack.last(), Some(Frame::Map { key: None, .. }))
    }

    /// The tree value of a scalar and, when it can be a key, its string.
    fn scalar(
        &self,
        value: std::borrow::Cow<'_, str>,
        style: ScalarStyle,
        tag: &Option<std::borrow::Cow<'_, Tag>>,
        is_key: bool,
        line: usize,
        column: usize,
    ) -> Result<(Node, Option<String>), YamlError> {
        let column = column + 1;
        let tag = core_tag(tag);
        // Only a key needs its text beside the node: a copy of every value would double the
        // memory a large value takes.
        let str_node = |s: String| {
            if is_key {
                (Node::str(s.clone()), Some(s))
            } else {
                (Node::str(s), None)
            }
        };
        match tag.as_deref() {
            Some("str") => return Ok(str_node(value.into_owned())),
            Some("binary") => {
                let compact: String = value.chars().filter(|c| !c.is_whitespace()).collect();
                let bytes = B64
                    .decode(compact.as_bytes())
                    .map_err(|_| YamlError::BadBinary { line, column })?;
                let s =
                    String::from_utf8(bytes).map_err(|_| YamlError::BadBinary { line, column })?;
                return Ok(str_node(s));
            }
            Some(t @ ("int" | "float" | "bool" | "null" | "timestamp")) => {
                let r = resolve_plain(&value);
                let node = match (t, r) {
                    ("int", Resolved::Int(i)) => Node::Int(i),
                    ("int", Resolved::Uint(_)) => {
                        return Err(YamlError::IntegerOutOfRange { line, column });
                    }
                    ("float", Resolved::Float(f)) => Node::Float(f),
                    ("float", Resolved::Int(i)) => Node::Float(i as f64),
                    ("float", Resolved::Uint(u)) => Node::Float(u as f64),
                    ("bool", Resolved::Bool(b)) => Node::Bool(b),
                    ("null", Resolved::Null) => Node::Null,
                    ("timestamp", Resolved::Time(t)) => Node::Time(t),
                    _ => {
                        return Err(YamlError::TagMismatch {
                            tag: t.to_owned(),
                            line,
                            column,
                        });
                    }
                };
                if is_key {
                    return Err(YamlError::NonStringKey { line, column });
                }
                return Ok((node, None));
            }
            // Unknown tags (and the non-specific `!`) keep the text as a string.
            Some(_) => return Ok(str_node(value.into_owned())),
            None => {}
        }
        if style != ScalarStyle::Plain {
            return Ok(str_node(value.into_owned()));
        }
        let node = match resolve_plain(&value) {
            Resolved::Str => return Ok(str_node(value.into_owned())),
            Resolved::Null => Node::Null,
            Resolved::Bool(b) => Node::Bool(b),
            Resolved::Int(i) => Node::Int(i),
            Resolved::Uint(_) => return Err(YamlError::IntegerOutOfRange { line, column }),
            Resolved::Float(f) => Node::Float(f),
            Resolved::Time(t) => Node::Time(t),
        };
        if is_key {
            return Err(YamlError::NonStringKey { line, column });
        }
        Ok((node, None))
    }

    /// Attaches a finished node to its parent (or makes it the document root).
    fn complete(
        &mut self,
        node: Node,
        key_text: Option<Option<String>>,
        size: Size,
        line: usize,
        column: usize,
    ) -> Result<(), YamlError> {
        let first_doc = self.doc_index == 0;
        if let Some(top) = self.stack.last_mut() {
            top.grow(size);
        }
        match self.stack.last_mut() {
            None => {
                self.root = Some(node);
            }
            Some(Frame::Map { key, map, seen, .. }) => match key.take() {
                None => {
                    let Some(Some(k)) = key_text else {
                        return Err(YamlError::NonStringKey {
                            line,
                            column: column + 1,
                        });
                    };
                    *key = Some((k, line, column + 1));
                }
                Some((k, kline, kcol)) => {
                    if first_doc && !seen.insert(k.clone()) {
                        return Err(YamlError::DuplicateKey {
                            key: k,
                            line: kline,
                            column: kcol,
                        });
                    }
                    map.items.push(MapItem::Pair(k, node));
                }
            },
            Some(Frame::Seq { seq, .. }) => seq.items.push(SeqItem::Node(node)),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tables answer what counting from the start of the text answers, for every offset.
    #[test]
    fn position_tables_match_counting_from_the_start() {
        for text in [
            String::new(),
            "a: 1\nb: 2\n".to_owned(),
            "é€𝄞\n\nx".repeat(50),
            format!("{}\n{}", "a".repeat(200), "ü".repeat(130)),
        ] {
            let pos = Positions::new(&text);
            let starts: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
            for (ci, &byte) in starts.iter().enumerate() {
                assert_eq!(pos.byte(&text, ci), byte, "{text:?} char {ci}");
            }
            assert_eq!(pos.byte(&text, starts.len()), text.len());
            assert_eq!(pos.byte(&text, starts.len() + 7), text.len());
            for byte in 0..=text.len() {
                let line = text.as_bytes()[..byte]
                    .iter()
                    .filter(|&&c| c == b'\n')
                    .count()
                    + 1;
                assert_eq!(pos.line_of(byte), line, "{text:?} byte {byte}");
                let start = text.as_bytes()[..byte]
                    .iter()
                    .rposition(|&c| c == b'\n')
                    .map_or(0, |n| n + 1);
                assert_eq!(pos.line_start(byte), start, "{text:?} byte {byte}");
            }
        }
    }
}
