//! YAML emission byte-for-byte as sops writes it: the sops tree is turned into go-yaml nodes
//! the way `stores/yaml` does (`appendTreeBranch`, `appendSequence`), then written by a port of
//! the part of go-yaml v3's emitter those nodes reach (block style, empty flow collections,
//! head/line/foot/tail comments, and its column/indent bookkeeping, blank lines included).

use crate::sops::tree::{Map, MapItem, Node, Seq, SeqItem, Tree};
use crate::sops::yaml::resolve::needs_quotes;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Style {
    Plain,
    Single,
    Double,
    Literal,
}

enum Kind {
    /// Text, style, and whether go-yaml tags it `!!merge` (the string `<<`).
    Scalar(String, Style, bool),
    Map(Vec<(YNode, YNode)>),
    Seq(Vec<YNode>),
}

/// A go-yaml node as sops builds it.
struct YNode {
    kind: Kind,
    head: String,
    line: String,
    foot: String,
}

impl YNode {
    fn new(kind: Kind) -> YNode {
        YNode {
            kind,
            head: String::new(),
            line: String::new(),
            foot: String::new(),
        }
    }
}

/// `"#" + strings.Join(comments, "\n#")`
fn join_comments(comments: &[&str]) -> String {
    if comments.is_empty() {
        return String::new();
    }
    format!("#{}", comments.join("\n#"))
}

fn add_head(target: &mut String, comments: &mut Vec<&str>) {
    if comments.is_empty() {
        return;
    }
    let c = join_comments(comments);
    *target = if target.is_empty() {
        c
    } else {
        format!("{c}\n{target}")
    };
    comments.clear();
}

fn add_tail(target: &mut String, comments: &mut Vec<&str>) {
    if comments.is_empty() {
        return;
    }
    let c = join_comments(comments);
    if target.is_empty() {
        *target = c;
    } else {
        target.push('\n');
        target.push_str(&c);
    }
    comments.clear();
}

/// Go `strconv.FormatFloat(f, 'g', -1, 64)` with go-yaml's names for the specials.
fn format_float_g(f: f64) -> String {
    if f.is_nan() {
        return ".nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            ".inf".into()
        } else {
            "-.inf".into()
        };
    }
    if f == 0.0 {
        return if f.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    // Shortest round-trip digits and decimal exponent.
    let e = format!("{:e}", f.abs());
    let (mantissa, exp) = e.split_once('e').expect("exponent form");
    let exp: i32 = exp.parse().expect("exponent");
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let sign = if f < 0.0 { "-" } else { "" };
    if !(-4..6).contains(&exp) {
        // %e with the shortest mantissa, exponent at least two digits.
        let m = if digits.len() > 1 {
            format!("{}.{}", &digits[..1], &digits[1..])
        } else {
            digits
        };
        let es = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{m}e{es}{:02}", exp.abs());
    }
    format!("{sign}{}", crate::sops::value::format_float_f(f.abs()))
}

fn scalar_node(n: &Node) -> YNode {
    let (text, style) = match n {
        Node::Str(s) => {
            let s = s.expose();
            let style = if s.contains('\n') {
                Style::Literal
            } else if needs_quotes(s) {
                Style::Double
            } else {
                Style::Plain
            };
            (s.to_owned(), style)
        }
        Node::Int(i) => (i.to_string(), Style::Plain),
        Node::Float(f) => (format_float_g(*f), Style::Plain),
        Node::Bool(b) => (b.to_string(), Style::Plain),
        Node::Null => ("null".to_owned(), Style::Plain),
        Node::Time(t) => (t.to_rfc3339_nano(), Style::Plain),
        Node::Map(_) | Node::Seq(_) => unreachable!("collections are not scalars"),
    };
    // go-yaml reads a plain `<<` back as a merge key and writes it with its tag.
    let merge = style == Style::Plain && text == "<<";
    YNode::new(Kind::Scalar(text, style, merge))
}

fn to_ynode(n: &Node) -> YNode {
    match n {
        Node::Map(m) => map_node(m),
        Node::Seq(s) => seq_node(s),
        leaf => scalar_node(leaf),
    }
}

/// sops `appendTreeBranch`.
fn map_node(m: &Map) -> YNode {
    let mut node = YNode::new(Kind::Map(Vec::new()));
    let mut pairs = Vec::new();
    let mut head: Vec<&str> = Vec::new();
    let mut inline: Vec<&str> = Vec::new();
    let mut beginning = true;
    for item in &m.items {
        match item {
            MapItem::Comment(c) if c.inline => inline.push(c.text.expose()),
            MapItem::Comment(c) => head.push(c.text.expose()),
            MapItem::Pair(k, v) => {
                if beginning {
                    add_head(&mut node.head, &mut head);
                    beginning = false;
                }
                let mut key = scalar_node(&Node::str(k.clone()));
                add_head(&mut key.head, &mut head);
                let mut value = to_ynode(v);
                add_tail(&mut value.line, &mut inline);
                pairs.push((key, value));
            }
        }
    }
    head.append(&mut inline);
    if !head.is_empty() {
        match pairs.last_mut() {
            None => add_head(&mut node.head, &mut head),
            Some((k, _)) => add_tail(&mut k.foot, &mut head),
        }
    }
    node.kind = Kind::Map(pairs);
    node
}

/// sops `appendSequence`.
fn seq_node(s: &Seq) -> YNode {
    let mut node = YNode::new(Kind::Seq(Vec::new()));
    let mut items = Vec::new();
    let mut head: Vec<&str> = Vec::new();
    let mut inline: Vec<&str> = Vec::new();
    let mut beginning = true;
    for item in &s.items {
        match item {
            SeqItem::Comment(c) if c.inline => inline.push(c.text.expose()),
            SeqItem::Comment(c) => head.push(c.text.expose()),
            SeqItem::Node(n) => {
                if beginning {
                    add_head(&mut node.head, &mut head);
                    beginning = false;
                }
                let mut y = to_ynode(n);
                add_head(&mut y.head, &mut head);
                add_tail(&mut y.line, &mut inline);
                items.push(y);
            }
        }
    }
    head.append(&mut inline);
    if !head.is_empty() {
        match items.last_mut() {
            None => add_head(&mut node.head, &mut head),
            Some(last) => add_tail(&mut last.foot, &mut head),
        }
    }
    node.kind = Kind::Seq(items);
    node
}

/// The state the parent pushed before emitting a node: it decides the indentation step.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ctx {
    Root,
    SeqItem,
    Key,
    Value,
}

fn is_break(c: char) -> bool {
    matches!(c, '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}')
}

/// go-yaml `is_printable` (by code point): note that 4-byte UTF-8 characters are not.
fn is_printable(c: char) -> bool {
    matches!(c as u32, 0x0A | 0x20..=0x7E | 0xA0..=0xD7FF | 0xE000..=0xFFFD) && c != '\u{FEFF}'
}

struct Analysis {
    multiline: bool,
    block_plain_allowed: bool,
    single_quoted_allowed: bool,
    block_allowed: bool,
}

/// go-yaml `yaml_emitter_analyze_scalar` (block context; flow fields are not needed).
fn analyze(value: &str) -> Analysis {
    if value.is_empty() {
        return Analysis {
            multiline: false,
            block_plain_allowed: true,
            single_quoted_allowed: true,
            block_allowed: false,
        };
    }
    let chars: Vec<char> = value.chars().collect();
    let mut block_indicators = value.starts_with("---") || value.starts_with("...");
    let (mut line_breaks, mut special, mut tabs) = (false, false, false);
    let (mut leading_space, mut leading_break, mut trailing_space, mut trailing_break) =
        (false, false, false, false);
    let (mut break_space, mut space_break) = (false, false);
    let (mut previous_space, mut previous_break) = (false, false);
    let mut preceded_by_whitespace = true;
    let blankz = |i: usize| {
        i >= chars.len() || matches!(chars[i], ' ' | '\t') || is_break(chars[i]) || chars[i] == '\0'
    };
    for (i, &c) in chars.iter().enumerate() {
        let followed_by_whitespace = i + 1 >= chars.len() || matches!(chars[i + 1], ' ' | '\t');
        if i == 0 {
            match c {
                '#' | ',' | '[' | ']' | '{' | '}' | '&' | '*' | '!' | '|' | '>' | '\'' | '"'
                | '%' | '@' | '`' => block_indicators = true,
                '?' | ':' if followed_by_whitespace => block_indicators = true,
                '-' if followed_by_whitespace => block_indicators = true,
                _ => {}
            }
        } else {
            match c {
                ':' if followed_by_whitespace => block_indicators = true,
                '#' if preceded_by_whitespace => block_indicators = true,
                _ => {}
            }
        }
        if c == '\t' {
            tabs = true;
        } else if !is_printable(c) {
            special = true;
        }
        if c == ' ' {
            if i == 0 {
                leading_space = true;
            }
            if i + 1 == chars.len() {
                trailing_space = true;
            }
            if previous_break {
                break_space = true;
            }
            previous_space = true;
            previous_break = false;
        } else if is_break(c) {
            line_breaks = true;
            if i == 0 {
                leading_break = true;
            }
            if i + 1 == chars.len() {
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
        preceded_by_whitespace = blankz(i);
    }
    let mut a = Analysis {
        multiline: line_breaks,
        block_plain_allowed: true,
        single_quoted_allowed: true,
        block_allowed: true,
    };
    if leading_space || leading_break || trailing_space || trailing_break {
        a.block_plain_allowed = false;
    }
    if trailing_space {
        a.block_allowed = false;
    }
    if break_space {
        a.block_plain_allowed = false;
        a.single_quoted_allowed = false;
    }
    if space_break || tabs || special {
        a.block_plain_allowed = false;
        a.single_quoted_allowed = false;
    }
    if space_break || special {
        a.block_allowed = false;
    }
    if line_breaks || block_indicators {
        a.block_plain_allowed = false;
    }
    a
}

/// A port of the go-yaml emitter state that the output depends on.
struct Emitter {
    out: String,
    best_indent: i32,
    indent: i32,
    indents: Vec<i32>,
    column: i32,
    whitespace: bool,
    indention: bool,
    open_ended: bool,
    foot_indent: i32,
    head: String,
    line: String,
    foot: String,
    tail: String,
}

impl Emitter {
    fn new(best_indent: usize) -> Emitter {
        let best = best_indent as i32;
        Emitter {
            out: String::new(),
            best_indent: if (2..=9).contains(&best) { best } else { 2 },
            indent: -1,
            indents: Vec::new(),
            column: 0,
            whitespace: true,
            indention: true,
            open_ended: false,
            foot_indent: -1,
            head: String::new(),
            line: String::new(),
            foot: String::new(),
            tail: String::new(),
        }
    }

    /// `yaml_emitter_analyze_event`: an event's comments replace the pending ones if set.
    fn load(&mut self, head: &str, line: &str, foot: &str, tail: &str) {
        for (slot, v) in [
            (&mut self.head, head),
            (&mut self.line, line),
            (&mut self.foot, foot),
            (&mut self.tail, tail),
        ] {
            if !v.is_empty() {
                *slot = v.to_owned();
            }
        }
    }

    fn put(&mut self, c: char) {
        self.out.push(c);
        self.column += 1;
    }

    fn put_break(&mut self) {
        self.out.push('\n');
        self.column = 0;
        self.indention = true;
    }

    fn write_break(&mut self, c: char) {
        if c == '\n' {
            self.put_break();
        } else {
            self.out.push(c);
            self.column = 0;
            self.indention = true;
        }
    }

    fn increase_indent(&mut self, flow: bool, parent: Ctx) {
        self.indents.push(self.indent);
        if self.indent < 0 {
            self.indent = if flow { self.best_indent } else { 0 };
        } else if parent == Ctx::SeqItem {
            self.indent += 2;
        } else {
            self.indent = self.best_indent * ((self.indent + self.best_indent) / self.best_indent);
        }
    }

    fn pop_indent(&mut self) {
        self.indent = self.indents.pop().expect("balanced indents");
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
            self.put(' ');
        }
        self.whitespace = true;
        self.foot_indent = -1;
    }

    fn write_indicator(
        &mut self,
        indicator: &str,
        need_whitespace: bool,
        is_whitespace: bool,
        is_indention: bool,
    ) {
        if need_whitespace && !self.whitespace {
            self.put(' ');
        }
        for c in indicator.chars() {
            self.put(c);
        }
        self.whitespace = is_whitespace;
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
                        self.put('#');
                        self.put(' ');
                    }
                    pound = true;
                }
                self.put(c);
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
        if !self.tail.is_empty() {
            self.write_indent();
            let t = std::mem::take(&mut self.tail);
            self.write_comment(&t);
            self.foot_indent = self.indent.max(0);
        }
        if self.head.is_empty() {
            return;
        }
        self.write_indent();
        let h = std::mem::take(&mut self.head);
        self.write_comment(&h);
    }

    fn process_line_comment(&mut self) {
        if self.line.is_empty() {
            return;
        }
        if !self.whitespace {
            self.put(' ');
        }
        let l = std::mem::take(&mut self.line);
        self.write_comment(&l);
    }

    fn process_foot_comment(&mut self) {
        if self.foot.is_empty() {
            return;
        }
        self.write_indent();
        let f = std::mem::take(&mut self.foot);
        self.write_comment(&f);
        self.foot_indent = self.indent.max(0);
    }

    fn document(&mut self, root: &YNode, first: bool) {
        if !first {
            self.write_indent();
            self.write_indicator("---", true, false, false);
            self.write_indent();
        }
        // Document content: the root node's event is analyzed, its head comment written.
        self.load_start(root, "");
        self.process_head_comment();
        self.node(root, Ctx::Root, true);
        self.after_node(root);
        // Document end.
        self.foot_indent = 0;
        self.process_foot_comment();
        self.foot_indent = -1;
        self.write_indent();
    }

    /// The line and foot comments go-yaml writes right after a node's first event: for a
    /// scalar that is the whole node; for a collection, only its start has been written then,
    /// so what is pending waits for a later call.
    fn after_node(&mut self, n: &YNode) {
        if matches!(n.kind, Kind::Scalar(..)) {
            self.process_line_comment();
            self.process_foot_comment();
        }
    }

    /// Loads the comments of a node's first event (scalar, or collection start).
    fn load_start(&mut self, n: &YNode, tail: &str) {
        match n.kind {
            Kind::Scalar(..) => self.load(&n.head, &n.line, &n.foot, tail),
            Kind::Map(_) => self.load(&n.head, "", "", tail),
            Kind::Seq(_) => self.load(&n.head, "", "", ""),
        }
    }

    /// Emits a node whose first event has been loaded already. `root` mirrors go-yaml's
    /// `root_context` (plain root scalars leave the stream open-ended).
    fn node(&mut self, n: &YNode, ctx: Ctx, root: bool) {
        match &n.kind {
            Kind::Scalar(text, style, merge) => self.scalar(text, *style, *merge, ctx, root),
            Kind::Map(pairs) if pairs.is_empty() => {
                self.write_indicator("{", true, true, false);
                self.increase_indent(true, ctx);
                self.process_head_comment();
                self.pop_indent();
                self.write_indicator("}", false, false, false);
                self.load("", &n.line, &n.foot, "");
                self.process_line_comment();
                self.process_foot_comment();
            }
            Kind::Seq(items) if items.is_empty() => {
                self.write_indicator("[", true, true, false);
                self.increase_indent(true, ctx);
                self.pop_indent();
                if self.column == 0 {
                    self.write_indent();
                }
                self.write_indicator("]", false, false, false);
                self.load("", &n.line, &n.foot, "");
                self.process_line_comment();
                self.process_foot_comment();
            }
            Kind::Map(pairs) => self.block_map(pairs, n, ctx),
            Kind::Seq(items) => self.block_seq(items, n, ctx),
        }
    }

    fn block_map(&mut self, pairs: &[(YNode, YNode)], n: &YNode, ctx: Ctx) {
        let mut tail = String::new();
        for (i, (k, v)) in pairs.iter().enumerate() {
            self.load(&k.head, &k.line, "", &tail);
            if i == 0 {
                self.increase_indent(false, ctx);
            }
            self.process_head_comment();
            self.write_indent();
            self.node(k, Ctx::Key, false);
            tail = k.foot.clone();
            // The value: ':' then the node.
            self.load_start(v, "");
            self.write_indicator(":", false, false, false);
            self.node(v, Ctx::Value, false);
            self.after_node(v);
        }
        // MAPPING-END: its tail (the last key's foot), line and foot comments.
        self.load("", &n.line, &n.foot, &tail);
        self.process_head_comment();
        self.pop_indent();
    }

    fn block_seq(&mut self, items: &[YNode], n: &YNode, ctx: Ctx) {
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                self.load_start(item, "");
            }
            if i == 0 {
                self.increase_indent(false, ctx);
                // The first item's event is analyzed after the sequence start's.
                self.load_start(item, "");
            }
            self.process_head_comment();
            self.write_indent();
            self.write_indicator("-", true, false, true);
            self.node(item, Ctx::SeqItem, false);
            self.after_node(item);
        }
        self.load("", &n.line, &n.foot, "");
        self.pop_indent();
    }

    fn scalar(&mut self, value: &str, style: Style, merge: bool, ctx: Ctx, root: bool) {
        let a = analyze(value);
        let simple_key = ctx == Ctx::Key;
        let mut style = style;
        if simple_key && a.multiline {
            style = Style::Double;
        }
        if style == Style::Plain && (!a.block_plain_allowed || (value.is_empty() && simple_key)) {
            style = Style::Single;
        }
        if style == Style::Single && !a.single_quoted_allowed {
            style = Style::Double;
        }
        if style == Style::Literal && (!a.block_allowed || simple_key) {
            style = Style::Double;
        }
        if merge {
            // yaml_emitter_write_tag_handle + write_tag_content
            if !self.whitespace {
                self.put(' ');
            }
            for c in "!!merge".chars() {
                self.put(c);
            }
            self.whitespace = false;
            self.indention = false;
        }
        self.increase_indent(true, ctx);
        match style {
            Style::Plain => self.write_plain(value, root),
            Style::Single => self.write_single(value),
            Style::Double => self.write_double(value),
            Style::Literal => self.write_literal(value),
        }
        self.pop_indent();
    }

    fn write_plain(&mut self, value: &str, root: bool) {
        if !value.is_empty() && !self.whitespace {
            self.put(' ');
        }
        for c in value.chars() {
            self.put(c);
            if c != ' ' {
                self.indention = false;
            }
        }
        if !value.is_empty() {
            self.whitespace = false;
        }
        self.indention = false;
        if root {
            self.open_ended = true;
        }
    }

    fn write_single(&mut self, value: &str) {
        self.write_indicator("'", true, false, false);
        let mut breaks = false;
        for c in value.chars() {
            if is_break(c) {
                if !breaks && c == '\n' {
                    self.put_break();
                }
                self.write_break(c);
                breaks = true;
                continue;
            }
            if breaks {
                self.write_indent();
            }
            if c == '\'' {
                self.put('\'');
            }
            self.put(c);
            if c != ' ' {
                self.indention = false;
            }
            breaks = false;
        }
        self.write_indicator("'", false, false, false);
        self.whitespace = false;
        self.indention = false;
    }

    fn write_double(&mut self, value: &str) {
        self.write_indicator("\"", true, false, false);
        for c in value.chars() {
            if !is_printable(c) || c == '\u{FEFF}' || is_break(c) || c == '"' || c == '\\' {
                self.put('\\');
                let esc = match c {
                    '\0' => Some('0'),
                    '\u{7}' => Some('a'),
                    '\u{8}' => Some('b'),
                    '\t' => Some('t'),
                    '\n' => Some('n'),
                    '\u{b}' => Some('v'),
                    '\u{c}' => Some('f'),
                    '\r' => Some('r'),
                    '\u{1b}' => Some('e'),
                    '"' => Some('"'),
                    '\\' => Some('\\'),
                    '\u{85}' => Some('N'),
                    '\u{a0}' => Some('_'),
                    '\u{2028}' => Some('L'),
                    '\u{2029}' => Some('P'),
                    _ => None,
                };
                match esc {
                    Some(e) => self.put(e),
                    None => {
                        let v = c as u32;
                        let (prefix, width) = if v <= 0xFF {
                            ('x', 2)
                        } else if v <= 0xFFFF {
                            ('u', 4)
                        } else {
                            ('U', 8)
                        };
                        self.put(prefix);
                        for ch in format!("{v:0width$X}").chars() {
                            self.put(ch);
                        }
                    }
                }
            } else {
                self.put(c);
            }
        }
        self.write_indicator("\"", false, false, false);
        self.whitespace = false;
        self.indention = false;
    }

    fn write_literal(&mut self, value: &str) {
        self.write_indicator("|", true, false, false);
        // Block scalar hints: an indentation indicator when the text starts with a space or a
        // break, and the chomping indicator.
        let first = value.chars().next();
        if first.is_some_and(|c| c == ' ' || is_break(c)) {
            let hint = char::from_digit(self.best_indent as u32, 10).expect("indent 2..=9");
            self.write_indicator(&hint.to_string(), false, false, false);
        }
        self.open_ended = false;
        let chars: Vec<char> = value.chars().collect();
        let chomp = match chars.as_slice() {
            [] => Some('-'),
            [.., last] if !is_break(*last) => Some('-'),
            [_] => {
                self.open_ended = true;
                Some('+')
            }
            [.., before, _] if is_break(*before) => {
                self.open_ended = true;
                Some('+')
            }
            _ => None,
        };
        if let Some(c) = chomp {
            self.write_indicator(&c.to_string(), false, false, false);
        }
        // go-yaml #755: without a line comment, the header line is ended here, so a leading
        // line break of the value shows as an empty line.
        if self.line.is_empty() {
            self.put_break();
        } else {
            self.process_line_comment();
        }
        self.whitespace = true;
        let mut breaks = true;
        for c in chars {
            if is_break(c) {
                self.write_break(c);
                breaks = true;
            } else {
                if breaks {
                    self.write_indent();
                }
                self.put(c);
                self.indention = false;
                breaks = false;
            }
        }
    }

    fn finish(mut self) -> String {
        if self.open_ended {
            self.write_indicator("...", true, false, false);
            self.write_indent();
        }
        self.out
    }
}

/// Emits every document of the tree as sops does (`---` between documents).
pub fn emit(tree: &Tree, indent: usize) -> Vec<u8> {
    let mut e = Emitter::new(indent);
    for (i, doc) in tree.documents.iter().enumerate() {
        let root = map_node(doc);
        e.document(&root, i == 0);
    }
    e.finish().into_bytes()
}

/// Emits one value as a YAML document (`yaml.Marshal` of the node).
pub fn emit_value(node: &Node, indent: usize) -> Vec<u8> {
    let mut e = Emitter::new(indent);
    let root = to_ynode(node);
    e.document(&root, true);
    e.finish().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_g_float_format() {
        for (f, s) in [
            (1234.56789, "1234.56789"),
            (2.0, "2"),
            (1e6, "1e+06"),
            (1234568000.0, "1.234568e+09"),
            (123456.0, "123456"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (-2.5, "-2.5"),
            (f64::INFINITY, ".inf"),
        ] {
            assert_eq!(format_float_g(f), s, "{f}");
        }
    }
}
