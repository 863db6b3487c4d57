//! YAML emission byte for byte as sops writes it.
//!
//! Three steps, each mirroring the Go code it replaces:
//! 1. the SOPS tree becomes go-yaml nodes with head/line/foot comments exactly as sops'
//!    `appendTreeBranch`/`appendSequence` build them (stores/yaml/store.go), scalars styled as
//!    `yaml.Node.Encode` leaves them (encode.go `stringv` + the emitter's style selection);
//! 2. the nodes become events as go-yaml's `encoder.node` produces them (foot comments of keys
//!    move to the next key as "tail" comments);
//! 3. a port of the part of go-yaml v3's emitter (emitterc.go) that those events reach writes
//!    the text: block style, `{}`/`[]` for empty collections, no line wrapping (`best_width` is
//!    unlimited by default), comments and go-yaml's column/indent bookkeeping.

use std::borrow::Cow;

use crate::tree::{Map, MapItem, Node, Seq, SeqItem, Tree};
use crate::yaml::resolve::{Resolved, format_float, is_base60_float, is_old_bool, resolve_plain};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Style {
    Plain,
    Single,
    Double,
    Literal,
}

/// Scalars borrow their text from the tree: a copy of every value would double the memory
/// that emitting a large file takes.
enum GoYamlKind<'a> {
    Scalar(Cow<'a, str>, Style),
    /// Keys and values alternating, as in `yaml.Node.Content`.
    Map(Vec<GoYamlNode<'a>>),
    Seq(Vec<GoYamlNode<'a>>),
}

/// A go-yaml `Node` as sops builds it.
struct GoYamlNode<'a> {
    kind: GoYamlKind<'a>,
    head: String,
    line: String,
    foot: String,
}

impl<'a> GoYamlNode<'a> {
    fn new(kind: GoYamlKind<'a>) -> GoYamlNode<'a> {
        GoYamlNode {
            kind,
            head: String::new(),
            line: String::new(),
            foot: String::new(),
        }
    }
}

/// sops: `"#" + strings.Join(comments, "\n#")`.
fn joined(comments: &[&str]) -> String {
    format!("#{}", comments.join("\n#"))
}

fn add_head(target: &mut String, comments: &mut Vec<&str>) {
    if !comments.is_empty() {
        let c = joined(comments);
        *target = if target.is_empty() {
            c
        } else {
            format!("{c}\n{target}")
        };
    }
    comments.clear();
}

fn add_after(target: &mut String, comments: &mut Vec<&str>) {
    if !comments.is_empty() {
        let c = joined(comments);
        if target.is_empty() {
            *target = c;
        } else {
            target.push('\n');
            target.push_str(&c);
        }
    }
    comments.clear();
}

/// sops `appendTreeBranch`.
fn map_node(map: &Map) -> GoYamlNode<'_> {
    map_items_node(map.items.iter())
}

fn map_items_node<'a>(items: impl Iterator<Item = &'a MapItem>) -> GoYamlNode<'a> {
    let mut node = GoYamlNode::new(GoYamlKind::Map(Vec::new()));
    let mut content = Vec::new();
    let mut heads: Vec<&str> = Vec::new();
    let mut inlines: Vec<&str> = Vec::new();
    let mut beginning = true;
    for item in items {
        match item {
            MapItem::Comment(c) if c.inline => inlines.push(c.text.expose()),
            MapItem::Comment(c) => heads.push(c.text.expose()),
            MapItem::Pair(k, v) => {
                if beginning {
                    add_head(&mut node.head, &mut heads);
                    beginning = false;
                }
                let mut key = string_node(k);
                add_head(&mut key.head, &mut heads);
                let mut value = value_node(v);
                add_after(&mut value.line, &mut inlines);
                content.push(key);
                content.push(value);
            }
        }
    }
    heads.append(&mut inlines);
    if !heads.is_empty() {
        if beginning {
            add_head(&mut node.head, &mut heads);
        } else {
            let n = content.len();
            add_after(&mut content[n - 2].foot, &mut heads);
        }
    }
    node.kind = GoYamlKind::Map(content);
    node
}

/// sops `appendSequence`.
fn seq_node(seq: &Seq) -> GoYamlNode<'_> {
    let mut node = GoYamlNode::new(GoYamlKind::Seq(Vec::new()));
    let mut content: Vec<GoYamlNode<'_>> = Vec::new();
    let mut heads: Vec<&str> = Vec::new();
    let mut inlines: Vec<&str> = Vec::new();
    let mut beginning = true;
    for item in &seq.items {
        match item {
            SeqItem::Comment(c) if c.inline => inlines.push(c.text.expose()),
            SeqItem::Comment(c) => heads.push(c.text.expose()),
            SeqItem::Node(n) => {
                if beginning {
                    add_head(&mut node.head, &mut heads);
                    beginning = false;
                }
                let mut item = value_node(n);
                add_head(&mut item.head, &mut heads);
                add_after(&mut item.line, &mut inlines);
                content.push(item);
            }
        }
    }
    heads.append(&mut inlines);
    if !heads.is_empty() {
        if beginning {
            add_head(&mut node.head, &mut heads);
        } else {
            let last = content.last_mut().expect("not at the beginning");
            add_after(&mut last.foot, &mut heads);
        }
    }
    node.kind = GoYamlKind::Seq(content);
    node
}

/// sops `treeValueToNode`.
fn value_node(node: &Node) -> GoYamlNode<'_> {
    let scalar = |s: String| GoYamlNode::new(GoYamlKind::Scalar(Cow::Owned(s), Style::Plain));
    match node {
        Node::Map(m) => map_node(m),
        Node::Seq(s) => seq_node(s),
        Node::Str(s) => string_node(s.expose()),
        Node::Null => scalar("null".into()),
        Node::Bool(b) => scalar(if *b { "true" } else { "false" }.into()),
        Node::Int(i) => scalar(i.to_string()),
        Node::Float(f) => scalar(format_float(*f)),
        Node::Time(t) => scalar(t.to_rfc3339_nano()),
    }
}

fn string_node(s: &str) -> GoYamlNode<'_> {
    GoYamlNode::new(GoYamlKind::Scalar(Cow::Borrowed(s), string_style(s)))
}

/// The style a string gets from `yaml.Node.Encode`: the encoder's choice (`stringv`) refined by
/// the emitter's `select_scalar_style` for a document root, which the re-parse then records.
pub(crate) fn string_style(s: &str) -> Style {
    let can_use_plain =
        resolve_plain(s) == Resolved::Str && !(is_base60_float(s) || is_old_bool(s));
    let style = if s.contains('\n') {
        Style::Literal
    } else if can_use_plain {
        Style::Plain
    } else {
        Style::Double
    };
    let a = analyze_scalar(s);
    match style {
        Style::Plain if !a.block_plain_allowed => {
            if a.single_quoted_allowed {
                Style::Single
            } else {
                Style::Double
            }
        }
        Style::Literal if !a.block_allowed => Style::Double,
        other => other,
    }
}

// ---------------------------------------------------------------------------------------------
// Events (go-yaml encode.go `node`).

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum EvKind {
    StreamStart,
    StreamEnd,
    DocStart,
    DocEnd,
    Scalar,
    SeqStart,
    SeqEnd,
    MapStart,
    MapEnd,
}

struct Event<'a> {
    kind: EvKind,
    /// Only `!!merge`: a plain `<<` is re-read by go-yaml as a merge key, and its encoder keeps
    /// that tag because `resolve` calls `<<` a string.
    merge_tag: bool,
    value: Cow<'a, str>,
    style: Style,
    implicit: bool,
    head: String,
    line: String,
    foot: String,
    tail: String,
}

impl<'a> Event<'a> {
    fn new(kind: EvKind) -> Event<'a> {
        Event {
            kind,
            merge_tag: false,
            value: Cow::Borrowed(""),
            style: Style::Plain,
            implicit: true,
            head: String::new(),
            line: String::new(),
            foot: String::new(),
            tail: String::new(),
        }
    }
}

fn node_events<'a>(node: GoYamlNode<'a>, tail: String, out: &mut Vec<Event<'a>>) {
    match node.kind {
        GoYamlKind::Seq(items) => {
            let mut start = Event::new(EvKind::SeqStart);
            start.head = node.head;
            out.push(start);
            for item in items {
                node_events(item, String::new(), out);
            }
            let mut end = Event::new(EvKind::SeqEnd);
            end.line = node.line;
            end.foot = node.foot;
            out.push(end);
        }
        GoYamlKind::Map(content) => {
            let mut start = Event::new(EvKind::MapStart);
            start.tail = tail;
            start.head = node.head;
            out.push(start);
            let mut tail = String::new();
            let mut it = content.into_iter();
            while let (Some(mut k), Some(v)) = (it.next(), it.next()) {
                let foot = std::mem::take(&mut k.foot);
                node_events(k, tail, out);
                tail = foot;
                node_events(v, String::new(), out);
            }
            let mut end = Event::new(EvKind::MapEnd);
            end.tail = tail;
            end.line = node.line;
            end.foot = node.foot;
            out.push(end);
        }
        GoYamlKind::Scalar(value, style) => {
            let mut ev = Event::new(EvKind::Scalar);
            ev.value = value;
            // encoder.node: a plain-styled node whose text contains a newline is written literal.
            ev.style = if style == Style::Plain && ev.value.contains('\n') {
                Style::Literal
            } else {
                style
            };
            ev.merge_tag = ev.style == Style::Plain && ev.value == "<<";
            ev.head = node.head;
            ev.line = node.line;
            ev.foot = node.foot;
            ev.tail = tail;
            out.push(ev);
        }
    }
}

fn document_events<'a>(root: GoYamlNode<'a>, out: &mut Vec<Event<'a>>) {
    out.push(Event::new(EvKind::DocStart));
    node_events(root, String::new(), out);
    out.push(Event::new(EvKind::DocEnd));
}

/// The whole tree, as sops' `EmitPlainFile` writes it (one `Encode` per document), with
/// `last` (the metadata) as the last entry of every document when given.
pub(crate) fn emit_tree(tree: &Tree, last: Option<&MapItem>, indent: usize) -> Vec<u8> {
    let mut events = vec![Event::new(EvKind::StreamStart)];
    for doc in &tree.documents {
        document_events(map_items_node(doc.items.iter().chain(last)), &mut events);
    }
    events.push(Event::new(EvKind::StreamEnd));
    Emitter::new(indent).run(&events)
}

/// One value as its own document, as sops' `EmitValue` (`yaml.Marshal`) writes it.
pub(crate) fn emit_value(node: &Node, indent: usize) -> Vec<u8> {
    let mut events = vec![Event::new(EvKind::StreamStart)];
    document_events(value_node(node), &mut events);
    events.push(Event::new(EvKind::StreamEnd));
    Emitter::new(indent).run(&events)
}

// ---------------------------------------------------------------------------------------------
// The emitter (go-yaml emitterc.go), restricted to what the events above can contain: no
// anchors, no tags, no directives, flow style only for empty collections, no line width.

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    StreamStart,
    FirstDocumentStart,
    DocumentStart,
    DocumentContent,
    DocumentEnd,
    FlowSequenceFirstItem,
    FlowMappingFirstKey,
    BlockSequenceFirstItem,
    BlockSequenceItem,
    BlockMappingFirstKey,
    BlockMappingKey,
    BlockMappingSimpleValue,
    BlockMappingValue,
    End,
}

#[derive(Default, Clone, Copy)]
struct ScalarAnalysis {
    multiline: bool,
    flow_plain_allowed: bool,
    block_plain_allowed: bool,
    single_quoted_allowed: bool,
    block_allowed: bool,
}

fn is_break(c: char) -> bool {
    matches!(c, '\r' | '\n' | '\u{85}' | '\u{2028}' | '\u{2029}')
}

fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

fn is_blankz(c: char) -> bool {
    is_blank(c) || is_break(c) || c == '\0'
}

/// go-yaml `is_printable` (UTF-8 ranges it accepts, decoded).
fn is_printable(c: char) -> bool {
    c == '\n'
        || (' '..='~').contains(&c)
        || ('\u{A0}'..='\u{D7FF}').contains(&c)
        || (('\u{E000}'..='\u{FFFD}').contains(&c) && c != '\u{FEFF}')
}

/// go-yaml `yaml_emitter_analyze_scalar`.
fn analyze_scalar(value: &str) -> ScalarAnalysis {
    if value.is_empty() {
        return ScalarAnalysis {
            multiline: false,
            flow_plain_allowed: false,
            block_plain_allowed: true,
            single_quoted_allowed: true,
            block_allowed: false,
        };
    }
    let mut block_indicators = false;
    let mut flow_indicators = false;
    let mut line_breaks = false;
    let mut special_characters = false;
    let mut tab_characters = false;
    let mut leading_space = false;
    let mut leading_break = false;
    let mut trailing_space = false;
    let mut trailing_break = false;
    let mut break_space = false;
    let mut space_break = false;
    let mut previous_space = false;
    let mut previous_break = false;

    if value.starts_with("---") || value.starts_with("...") {
        block_indicators = true;
        flow_indicators = true;
    }
    // One pass with a character of lookahead: collecting the characters first took four bytes
    // per byte of the value.
    let mut chars = value.chars().peekable();
    let mut preceded_by_whitespace = true;
    let mut first = true;
    while let Some(c) = chars.next() {
        let next = chars.peek().copied();
        let followed_by_whitespace = next.is_none_or(is_blank);
        let last = next.is_none();
        if first {
            match c {
                '#' | ',' | '[' | ']' | '{' | '}' | '&' | '*' | '!' | '|' | '>' | '\'' | '"'
                | '%' | '@' | '`' => {
                    flow_indicators = true;
                    block_indicators = true;
                }
                '?' | ':' => {
                    flow_indicators = true;
                    if followed_by_whitespace {
                        block_indicators = true;
                    }
                }
                '-' if followed_by_whitespace => {
                    flow_indicators = true;
                    block_indicators = true;
                }
                _ => {}
            }
        } else {
            match c {
                ',' | '?' | '[' | ']' | '{' | '}' => flow_indicators = true,
                ':' => {
                    flow_indicators = true;
                    if followed_by_whitespace {
                        block_indicators = true;
                    }
                }
                '#' if preceded_by_whitespace => {
                    flow_indicators = true;
                    block_indicators = true;
                }
                _ => {}
            }
        }
        if c == '\t' {
            tab_characters = true;
        } else if !is_printable(c) {
            special_characters = true;
        }
        if c == ' ' {
            if first {
                leading_space = true;
            }
            if last {
                trailing_space = true;
            }
            if previous_break {
                break_space = true;
            }
            previous_space = true;
            previous_break = false;
        } else if is_break(c) {
            line_breaks = true;
            if first {
                leading_break = true;
            }
            if last {
                trailing_break = true;
            }
            if previous_space {
                space_break = true;
            }
            previous_space = false;
            previous_break = true;
        } else {
            previous_space = false;
            previous_break = false;
        }
        preceded_by_whitespace = is_blankz(c);
        first = false;
    }
    let mut a = ScalarAnalysis {
        multiline: line_breaks,
        flow_plain_allowed: true,
        block_plain_allowed: true,
        single_quoted_allowed: true,
        block_allowed: true,
    };
    if leading_space || leading_break || trailing_space || trailing_break {
        a.flow_plain_allowed = false;
        a.block_plain_allowed = false;
    }
    if trailing_space {
        a.block_allowed = false;
    }
    if break_space {
        a.flow_plain_allowed = false;
        a.block_plain_allowed = false;
        a.single_quoted_allowed = false;
    }
    if space_break || tab_characters || special_characters {
        a.flow_plain_allowed = false;
        a.block_plain_allowed = false;
        a.single_quoted_allowed = false;
    }
    if space_break || special_characters {
        a.block_allowed = false;
    }
    if line_breaks {
        a.flow_plain_allowed = false;
        a.block_plain_allowed = false;
    }
    if flow_indicators {
        a.flow_plain_allowed = false;
    }
    if block_indicators {
        a.block_plain_allowed = false;
    }
    a
}

struct Emitter {
    out: Vec<u8>,
    best_indent: i64,
    state: State,
    states: Vec<State>,
    indent: i64,
    indents: Vec<i64>,
    flow_level: usize,
    root_context: bool,
    simple_key_context: bool,
    column: i64,
    whitespace: bool,
    indention: bool,
    open_ended: bool,
    foot_indent: i64,
    head_comment: String,
    line_comment: String,
    foot_comment: String,
    tail_comment: String,
    key_line_comment: String,
    scalar: ScalarAnalysis,
    scalar_style: Style,
}

impl Emitter {
    fn new(indent: usize) -> Emitter {
        // go-yaml's encoder uses 4 for 0 and the emitter falls back to 2 outside 2..=9.
        let mut best_indent = if indent == 0 { 4 } else { indent as i64 };
        if !(2..=9).contains(&best_indent) {
            best_indent = 2;
        }
        Emitter {
            out: Vec::new(),
            best_indent,
            state: State::StreamStart,
            states: Vec::new(),
            indent: -1,
            indents: Vec::new(),
            flow_level: 0,
            root_context: false,
            simple_key_context: false,
            column: 0,
            whitespace: true,
            indention: true,
            open_ended: false,
            foot_indent: -1,
            head_comment: String::new(),
            line_comment: String::new(),
            foot_comment: String::new(),
            tail_comment: String::new(),
            key_line_comment: String::new(),
            scalar: ScalarAnalysis::default(),
            scalar_style: Style::Plain,
        }
    }

    fn run(mut self, events: &[Event<'_>]) -> Vec<u8> {
        for i in 0..events.len() {
            if events[i].kind == EvKind::StreamEnd {
                // encoder.finish: no "..." after an open-ended last document.
                self.open_ended = false;
            }
            self.analyze_event(&events[i]);
            self.state_machine(events, i);
        }
        self.out
    }

    // --- low-level writers ---

    fn put(&mut self, b: u8) {
        self.out.push(b);
        self.column += 1;
    }

    fn put_break(&mut self) {
        self.out.push(b'\n');
        self.column = 0;
        self.indention = true;
    }

    fn write(&mut self, c: char) {
        let mut buf = [0u8; 4];
        self.out
            .extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        self.column += 1;
    }

    fn write_all(&mut self, s: &str) {
        for c in s.chars() {
            self.write(c);
        }
    }

    fn write_break(&mut self, c: char) {
        if c == '\n' {
            self.put_break();
        } else {
            self.write(c);
            self.column = 0;
            self.indention = true;
        }
    }

    fn write_indent(&mut self) {
        let indent = self.indent.max(0);
        if !self.indention || self.column > indent || (self.column == indent && !self.whitespace) {
            self.put_break();
        }
        if self.foot_indent == indent {
            self.put_break();
        }
        while self.column < indent {
            self.put(b' ');
        }
        self.whitespace = true;
        self.foot_indent = -1;
    }

    fn write_indicator(&mut self, ind: &str, need_ws: bool, is_ws: bool, is_indention: bool) {
        if need_ws && !self.whitespace {
            self.put(b' ');
        }
        self.write_all(ind);
        self.whitespace = is_ws;
        self.indention = self.indention && is_indention;
        self.open_ended = false;
    }

    fn write_comment(&mut self, comment: &str) {
        let mut breaks = false;
        let mut pound = false;
        for c in comment.chars() {
            if is_break(c) {
                self.write_break(c);
                breaks = true;
                pound = false;
            } else {
                if breaks {
                    self.write_indent();
                }
                if !pound {
                    if c != '#' {
                        self.put(b'#');
                        self.put(b' ');
                    }
                    pound = true;
                }
                self.write(c);
                self.indention = false;
                breaks = false;
            }
        }
        if !breaks {
            self.put_break();
        }
        self.whitespace = true;
    }

    fn process_head_comment(&mut self) {
        if !self.tail_comment.is_empty() {
            self.write_indent();
            let c = std::mem::take(&mut self.tail_comment);
            self.write_comment(&c);
            self.foot_indent = self.indent.max(0);
        }
        if self.head_comment.is_empty() {
            return;
        }
        self.write_indent();
        let c = std::mem::take(&mut self.head_comment);
        self.write_comment(&c);
    }

    fn process_line_comment(&mut self) {
        if self.line_comment.is_empty() {
            return;
        }
        if !self.whitespace {
            self.put(b' ');
        }
        let c = std::mem::take(&mut self.line_comment);
        self.write_comment(&c);
    }

    fn process_foot_comment(&mut self) {
        if self.foot_comment.is_empty() {
            return;
        }
        self.write_indent();
        let c = std::mem::take(&mut self.foot_comment);
        self.write_comment(&c);
        self.foot_indent = self.indent.max(0);
    }

    // --- events and states ---

    fn analyze_event(&mut self, ev: &Event<'_>) {
        if !ev.head.is_empty() {
            self.head_comment = ev.head.clone();
        }
        if !ev.line.is_empty() {
            self.line_comment = ev.line.clone();
        }
        if !ev.foot.is_empty() {
            self.foot_comment = ev.foot.clone();
        }
        if !ev.tail.is_empty() {
            self.tail_comment = ev.tail.clone();
        }
        if ev.kind == EvKind::Scalar {
            self.scalar = analyze_scalar(&ev.value);
        }
    }

    fn increase_indent(&mut self, flow: bool, indentless: bool) {
        self.indents.push(self.indent);
        if self.indent < 0 {
            self.indent = if flow { self.best_indent } else { 0 };
        } else if !indentless {
            if self.states.last() == Some(&State::BlockSequenceItem) {
                self.indent += 2;
            } else {
                self.indent =
                    self.best_indent * ((self.indent + self.best_indent) / self.best_indent);
            }
        }
    }

    fn pop_indent(&mut self) {
        self.indent = self.indents.pop().unwrap_or(-1);
    }

    fn pop_state(&mut self) {
        self.state = self.states.pop().unwrap_or(State::End);
    }

    fn state_machine(&mut self, events: &[Event<'_>], i: usize) {
        let ev = &events[i];
        match self.state {
            State::StreamStart => {
                self.indent = -1;
                self.column = 0;
                self.whitespace = true;
                self.indention = true;
                self.foot_indent = -1;
                self.state = State::FirstDocumentStart;
            }
            State::FirstDocumentStart => self.document_start(ev, true),
            State::DocumentStart => self.document_start(ev, false),
            State::DocumentContent => {
                self.states.push(State::DocumentEnd);
                self.process_head_comment();
                self.emit_node(events, i, true, false);
                self.process_line_comment();
                self.process_foot_comment();
            }
            State::DocumentEnd => {
                self.foot_indent = 0;
                self.process_foot_comment();
                self.foot_indent = -1;
                self.write_indent();
                self.state = State::DocumentStart;
            }
            State::FlowSequenceFirstItem => {
                // Only empty sequences are written in flow style.
                debug_assert_eq!(ev.kind, EvKind::SeqEnd);
                self.write_indicator("[", true, true, false);
                self.increase_indent(true, false);
                self.pop_indent();
                self.write_indicator("]", false, false, false);
                self.process_line_comment();
                self.process_foot_comment();
                self.pop_state();
            }
            State::FlowMappingFirstKey => {
                debug_assert_eq!(ev.kind, EvKind::MapEnd);
                self.write_indicator("{", true, true, false);
                self.increase_indent(true, false);
                self.process_head_comment();
                self.pop_indent();
                self.write_indicator("}", false, false, false);
                self.process_line_comment();
                self.process_foot_comment();
                self.pop_state();
            }
            State::BlockSequenceFirstItem | State::BlockSequenceItem => {
                if self.state == State::BlockSequenceFirstItem {
                    self.increase_indent(false, false);
                }
                if ev.kind == EvKind::SeqEnd {
                    self.pop_indent();
                    self.pop_state();
                    return;
                }
                self.process_head_comment();
                self.write_indent();
                self.write_indicator("-", true, false, true);
                self.states.push(State::BlockSequenceItem);
                self.emit_node(events, i, false, false);
                self.process_line_comment();
                self.process_foot_comment();
            }
            State::BlockMappingFirstKey | State::BlockMappingKey => {
                if self.state == State::BlockMappingFirstKey {
                    self.increase_indent(false, false);
                }
                self.process_head_comment();
                if ev.kind == EvKind::MapEnd {
                    self.pop_indent();
                    self.pop_state();
                    return;
                }
                self.write_indent();
                if !self.line_comment.is_empty() {
                    self.key_line_comment = std::mem::take(&mut self.line_comment);
                }
                if self.check_simple_key(events, i) {
                    self.states.push(State::BlockMappingSimpleValue);
                    self.emit_node(events, i, false, true);
                } else {
                    self.write_indicator("?", true, false, true);
                    self.states.push(State::BlockMappingValue);
                    self.emit_node(events, i, false, false);
                }
            }
            State::BlockMappingSimpleValue | State::BlockMappingValue => {
                if self.state == State::BlockMappingSimpleValue {
                    self.write_indicator(":", false, false, false);
                } else {
                    self.write_indent();
                    self.write_indicator(":", true, false, true);
                }
                if !self.key_line_comment.is_empty() {
                    if ev.kind == EvKind::Scalar {
                        if self.line_comment.is_empty() {
                            self.line_comment = std::mem::take(&mut self.key_line_comment);
                        }
                    } else if matches!(ev.kind, EvKind::MapStart | EvKind::SeqStart) {
                        std::mem::swap(&mut self.line_comment, &mut self.key_line_comment);
                        self.process_line_comment();
                        std::mem::swap(&mut self.line_comment, &mut self.key_line_comment);
                    }
                }
                self.states.push(State::BlockMappingKey);
                self.emit_node(events, i, false, false);
                self.process_line_comment();
                self.process_foot_comment();
            }
            State::End => {}
        }
    }

    fn document_start(&mut self, ev: &Event<'_>, first: bool) {
        match ev.kind {
            EvKind::DocStart => {
                let implicit = ev.implicit && first;
                if !implicit {
                    self.write_indent();
                    self.write_indicator("---", true, false, false);
                    self.write_indent();
                }
                if !self.head_comment.is_empty() {
                    self.process_head_comment();
                    self.put_break();
                }
                self.state = State::DocumentContent;
            }
            _ => self.state = State::End,
        }
    }

    fn emit_node(&mut self, events: &[Event<'_>], i: usize, root: bool, simple_key: bool) {
        self.root_context = root;
        self.simple_key_context = simple_key;
        let ev = &events[i];
        match ev.kind {
            EvKind::Scalar => {
                self.select_scalar_style(ev);
                if ev.merge_tag {
                    if !self.whitespace {
                        self.put(b' ');
                    }
                    self.write_all("!!merge");
                    self.whitespace = false;
                    self.indention = false;
                }
                self.increase_indent(true, false);
                self.process_scalar(&ev.value);
                self.pop_indent();
                self.pop_state();
            }
            EvKind::SeqStart => {
                let empty = events.get(i + 1).is_some_and(|e| e.kind == EvKind::SeqEnd);
                self.state = if self.flow_level > 0 || empty {
                    State::FlowSequenceFirstItem
                } else {
                    State::BlockSequenceFirstItem
                };
            }
            EvKind::MapStart => {
                let empty = events.get(i + 1).is_some_and(|e| e.kind == EvKind::MapEnd);
                self.state = if self.flow_level > 0 || empty {
                    State::FlowMappingFirstKey
                } else {
                    State::BlockMappingFirstKey
                };
            }
            _ => {}
        }
    }

    fn check_simple_key(&self, events: &[Event<'_>], i: usize) -> bool {
        let ev = &events[i];
        match ev.kind {
            EvKind::Scalar => {
                let tag_len = if ev.merge_tag { "!!merge".len() } else { 0 };
                !self.scalar.multiline && tag_len + ev.value.len() <= 128
            }
            EvKind::SeqStart => events.get(i + 1).is_some_and(|e| e.kind == EvKind::SeqEnd),
            EvKind::MapStart => events.get(i + 1).is_some_and(|e| e.kind == EvKind::MapEnd),
            _ => false,
        }
    }

    fn select_scalar_style(&mut self, ev: &Event<'_>) {
        let mut style = ev.style;
        if self.simple_key_context && self.scalar.multiline {
            style = Style::Double;
        }
        if style == Style::Plain {
            if (self.flow_level > 0 && !self.scalar.flow_plain_allowed)
                || (self.flow_level == 0 && !self.scalar.block_plain_allowed)
            {
                style = Style::Single;
            }
            if ev.value.is_empty() && (self.flow_level > 0 || self.simple_key_context) {
                style = Style::Single;
            }
        }
        if style == Style::Single && !self.scalar.single_quoted_allowed {
            style = Style::Double;
        }
        if style == Style::Literal
            && (!self.scalar.block_allowed || self.flow_level > 0 || self.simple_key_context)
        {
            style = Style::Double;
        }
        self.scalar_style = style;
    }

    fn process_scalar(&mut self, value: &str) {
        let allow_breaks = !self.simple_key_context;
        match self.scalar_style {
            Style::Plain => self.write_plain(value),
            Style::Single => self.write_single_quoted(value, allow_breaks),
            Style::Double => self.write_double_quoted(value),
            Style::Literal => self.write_literal(value),
        }
    }

    fn write_plain(&mut self, value: &str) {
        if !value.is_empty() && !self.whitespace {
            self.put(b' ');
        }
        if !value.chars().any(is_break) {
            // One line: the loop below would copy it a character at a time to the same bytes.
            self.out.extend_from_slice(value.as_bytes());
            self.column += value.chars().count() as i64;
            if !value.is_empty() {
                self.whitespace = false;
            }
            self.indention = false;
            if self.root_context {
                self.open_ended = true;
            }
            return;
        }
        let mut breaks = false;
        for c in value.chars() {
            if c == ' ' {
                self.write(c);
            } else if is_break(c) {
                if !breaks && c == '\n' {
                    self.put_break();
                }
                self.write_break(c);
                breaks = true;
            } else {
                if breaks {
                    self.write_indent();
                }
                self.write(c);
                self.indention = false;
                breaks = false;
            }
        }
        if !value.is_empty() {
            self.whitespace = false;
        }
        self.indention = false;
        if self.root_context {
            self.open_ended = true;
        }
    }

    fn write_single_quoted(&mut self, value: &str, _allow_breaks: bool) {
        self.write_indicator("'", true, false, false);
        let mut breaks = false;
        for c in value.chars() {
            if c == ' ' {
                self.write(c);
            } else if is_break(c) {
                if !breaks && c == '\n' {
                    self.put_break();
                }
                self.write_break(c);
                breaks = true;
            } else {
                if breaks {
                    self.write_indent();
                }
                if c == '\'' {
                    self.put(b'\'');
                }
                self.write(c);
                self.indention = false;
                breaks = false;
            }
        }
        self.write_indicator("'", false, false, false);
        self.whitespace = false;
        self.indention = false;
    }

    fn write_double_quoted(&mut self, value: &str) {
        self.write_indicator("\"", true, false, false);
        // go-yaml's is_bom looks at the start of the value, whatever the position.
        let starts_with_bom = value.starts_with('\u{FEFF}');
        for c in value.chars() {
            if !is_printable(c) || starts_with_bom || is_break(c) || c == '"' || c == '\\' {
                self.put(b'\\');
                let esc = match c {
                    '\0' => Some('0'),
                    '\u{07}' => Some('a'),
                    '\u{08}' => Some('b'),
                    '\t' => Some('t'),
                    '\n' => Some('n'),
                    '\u{0b}' => Some('v'),
                    '\u{0c}' => Some('f'),
                    '\r' => Some('r'),
                    '\u{1b}' => Some('e'),
                    '"' => Some('"'),
                    '\\' => Some('\\'),
                    '\u{85}' => Some('N'),
                    '\u{A0}' => Some('_'),
                    '\u{2028}' => Some('L'),
                    '\u{2029}' => Some('P'),
                    _ => None,
                };
                match esc {
                    Some(e) => self.put(e as u8),
                    None => {
                        let v = c as u32;
                        let (ind, width) = if v <= 0xFF {
                            (b'x', 2)
                        } else if v <= 0xFFFF {
                            (b'u', 4)
                        } else {
                            (b'U', 8)
                        };
                        self.put(ind);
                        for k in (0..width).rev() {
                            let digit = ((v >> (4 * k)) & 0xF) as u8;
                            self.put(if digit < 10 {
                                b'0' + digit
                            } else {
                                b'A' + digit - 10
                            });
                        }
                    }
                }
            } else {
                self.write(c);
            }
        }
        self.write_indicator("\"", false, false, false);
        self.whitespace = false;
        self.indention = false;
    }

    fn write_block_scalar_hints(&mut self, value: &str) {
        if value.starts_with(' ') || value.chars().next().is_some_and(is_break) {
            let hint = char::from_digit(self.best_indent as u32, 10).expect("indent 2..=9");
            self.write_indicator(&hint.to_string(), false, false, false);
        }
        self.open_ended = false;
        let mut rev = value.chars().rev();
        let chomp = match (rev.next(), rev.next()) {
            (None, _) => Some('-'),
            (Some(last), _) if !is_break(last) => Some('-'),
            (Some(_), None) => Some('+'),
            (Some(_), Some(prev)) if is_break(prev) => Some('+'),
            _ => None,
        };
        if let Some(c) = chomp {
            if c == '+' {
                self.open_ended = true;
            }
            self.write_indicator(&c.to_string(), false, false, false);
        }
    }

    fn write_literal(&mut self, value: &str) {
        self.write_indicator("|", true, false, false);
        self.write_block_scalar_hints(value);
        // go.yaml.in/yaml/v3 (go-yaml issue #755): the header line always ends here, with the
        // line comment if there is one.
        if self.line_comment.is_empty() {
            self.put_break();
        } else {
            self.process_line_comment();
        }
        self.whitespace = true;
        let mut breaks = true;
        for c in value.chars() {
            if is_break(c) {
                self.write_break(c);
                breaks = true;
            } else {
                if breaks {
                    self.write_indent();
                }
                self.write(c);
                self.indention = false;
                breaks = false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_styles() {
        for (s, want) in [
            ("hello", Style::Plain),
            ("", Style::Double),
            ("5432", Style::Double),
            ("yes", Style::Double),
            ("1:20", Style::Double),
            (" lead", Style::Single),
            ("a: b", Style::Single),
            ("- x", Style::Single),
            ("a\tb", Style::Double),
            ("a\nb", Style::Literal),
            ("a \nb", Style::Double),
            ("😀", Style::Double),
            ("<<", Style::Plain),
        ] {
            assert_eq!(string_style(s), want, "{s:?}");
        }
    }
}
