//! The INI store (docs/sops-format.md §11): go-ini v1.67 (`gopkg.in/ini.v1`) as sops 3.11 configures it
//! (`AllowNonUniqueSections`, every other option at its default), quirks included, so that both
//! tools read the same tree from a file and write the same bytes for a tree.
//!
//! A document is a mapping of sections, each a mapping of string values. go-ini's implicit
//! `DEFAULT` section (the keys before the first header) always comes first, empty or not. A
//! section's comment is the section's first entry; a key's comment follows the key, as sops puts
//! them (it writes both back before the line they belong to). The metadata is a `[sops]` section
//! of flattened keys (`age__list_0__map_recipient`), the dotenv store's flattening without the
//! prefix.

use std::collections::HashMap;

use crate::dotenv::{self, DotenvError};
use crate::secret::SecretString;
use crate::tree::{Comment, Map, MapItem, Node};

/// go-ini's implicit first section.
pub const DEFAULT_SECTION: &str = "DEFAULT";
/// The section sops keeps its metadata in.
pub const METADATA_SECTION: &str = "sops";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IniError {
    /// `[name` with no `]` on the line.
    #[error("line {0}: section header has no closing `]`")]
    UnclosedSection(usize),
    /// `[]`: go-ini refuses a section without a name.
    #[error("line {0}: section header `[]` has no name")]
    EmptySectionName(usize),
    /// A line that is neither a comment, a header nor `key = value` (`key: value`).
    #[error("line {0}: not `key = value`, a `[section]` header or a `;`/`#` comment")]
    NoDelimiter(usize),
    /// `= value` or `"" = value`.
    #[error("line {0}: the key before `=` is empty")]
    EmptyKey(usize),
    /// A key opened with `"`, `"""` or a backtick and never closed on its line.
    #[error("line {0}: the quoted key has no closing quote")]
    UnclosedKeyQuote(usize),
    /// A value opened with `"""` or a backtick and never closed before the end of the file.
    #[error("line {line}: the value opened with {quote} is never closed")]
    UnclosedValueQuote { line: usize, quote: &'static str },
    /// sops keeps such bytes as they are; credseal's values are text, and replacing the bytes
    /// would change the value without a word.
    #[error(
        "line {line}, byte {byte}: not UTF-8 text; convert the file to UTF-8 (e.g. iconv -f latin1 -t utf-8)"
    )]
    NotUtf8 { line: usize, byte: usize },
    /// The `[sops]` section's flattened keys do not rebuild the metadata.
    #[error("in the [sops] section")]
    Metadata(#[from] DotenvError),
    /// Writing: a top-level entry that is not a mapping (from a YAML or JSON input).
    #[error(
        "top-level key {0:?} is not a section: an INI file holds only [sections] of key = value; use another --output-type for this data"
    )]
    NotASection(String),
    /// Writing: a value nested below a section's key.
    #[error("[{section}] key {key:?}: INI values are flat strings, not mappings or lists")]
    ComplexValue { section: String, key: String },
    /// Writing: go-ini refuses an empty section or key name.
    #[error("an empty {0} name cannot be written to an INI file")]
    EmptyName(&'static str),
    /// Writing: the text sops' INI writer produces for this entry reads back as something else
    /// (a key like `#1` reads as a comment, a first section named `default` as the implicit
    /// `DEFAULT`), so the file could not be decrypted again. sops writes such files; credseal
    /// refuses.
    #[error(
        "section [{section}]: the INI text written for it would not read back the same ({what}), so the file could not be opened again; nothing was written"
    )]
    WouldNotReadBack { section: String, what: String },
    /// Writing: the data has a `[sops]` section of its own, which a reader would take for the
    /// metadata (the first one wins), so the file could not be opened again.
    #[error(
        "the data has a [sops] section of its own, which would be read as the file's metadata; rename the section"
    )]
    MetadataSectionInData,
}

impl IniError {
    /// Whether this is a failure to write a tree (sops: "Error dumping file", exit 4) rather
    /// than to read a file.
    pub fn is_write_error(&self) -> bool {
        matches!(
            self,
            IniError::NotASection(_)
                | IniError::ComplexValue { .. }
                | IniError::EmptyName(_)
                | IniError::WouldNotReadBack { .. }
                | IniError::MetadataSectionInData
        )
    }
}

/// go-ini's file model, between text and tree. Values are plaintext only while a file is read
/// or written; they are not printed (no `Debug`).
struct Section {
    name: String,
    comment: String,
    keys: Vec<Key>,
    /// Key name → position: go-ini overwrites a repeated key's value in place.
    index: HashMap<String, usize>,
}

struct Key {
    name: String,
    value: String,
    comment: String,
}

impl Section {
    fn new(name: &str) -> Section {
        Section {
            name: name.to_owned(),
            comment: String::new(),
            keys: Vec::new(),
            index: HashMap::new(),
        }
    }

    /// go-ini's `NewKey`: a key already in the section keeps its place and takes the new value.
    fn set(&mut self, name: String, value: String) -> usize {
        match self.index.get(&name) {
            Some(&at) => {
                self.keys[at].value = value;
                at
            }
            None => {
                self.index.insert(name.clone(), self.keys.len());
                self.keys.push(Key {
                    name,
                    value,
                    comment: String::new(),
                });
                self.keys.len() - 1
            }
        }
    }
}

/// Lines with their `\n`, numbered from 1.
struct Lines<'a> {
    rest: &'a str,
    number: usize,
}

impl<'a> Lines<'a> {
    fn next_line(&mut self) -> Option<&'a str> {
        if self.rest.is_empty() {
            return None;
        }
        let end = self.rest.find('\n').map_or(self.rest.len(), |i| i + 1);
        let (line, rest) = self.rest.split_at(end);
        self.rest = rest;
        self.number += 1;
        Some(line)
    }
}

/// Parses INI text into a mapping of sections (the implicit `DEFAULT` first).
pub fn parse(input: &[u8]) -> Result<Map, IniError> {
    Ok(to_map(read(input)?))
}

fn read(input: &[u8]) -> Result<Vec<Section>, IniError> {
    // go-ini drops a UTF-8 byte order mark, and the two bytes of a UTF-16 one (without
    // decoding the rest).
    let input = input
        .strip_prefix(b"\xef\xbb\xbf")
        .or_else(|| input.strip_prefix(b"\xfe\xff"))
        .or_else(|| input.strip_prefix(b"\xff\xfe"))
        .unwrap_or(input);
    let text = std::str::from_utf8(input).map_err(|e| {
        let valid = &input[..e.valid_up_to()];
        let line_start = valid.iter().rposition(|&c| c == b'\n').map_or(0, |i| i + 1);
        IniError::NotUtf8 {
            line: valid.iter().filter(|&&c| c == b'\n').count() + 1,
            byte: valid.len() - line_start + 1,
        }
    })?;
    let mut lines = Lines {
        rest: text,
        number: 0,
    };
    let mut sections = vec![Section::new(DEFAULT_SECTION)];
    // Comment lines collect until the next key or header, which takes them.
    let mut comment = String::new();
    // go-ini numbers keys named `-` per section: `#1`, `#2`, …
    let mut auto = 1usize;
    while let Some(raw) = lines.next_line() {
        let no = lines.number;
        let line = raw.trim_start();
        let Some(&first) = line.as_bytes().first() else {
            continue;
        };
        if first == b'#' || first == b';' {
            comment.push_str(line);
            continue;
        }
        if first == b'[' {
            let close = line.rfind(']').ok_or(IniError::UnclosedSection(no))?;
            let name = &line[1..close];
            if name.is_empty() {
                return Err(IniError::EmptySectionName(no));
            }
            let mut section = Section::new(name);
            if let Some(i) = line[close + 1..].find(['#', ';']) {
                comment.push_str(&line[close + 1 + i..]);
            }
            section.comment = comment.trim().to_owned();
            comment.clear();
            auto = 1;
            sections.push(section);
            continue;
        }
        let (mut name, offset) = read_key_name(line, no)?;
        if name == "-" {
            name = format!("#{auto}");
            auto += 1;
        }
        let value = read_value(&line[offset..], &mut lines, &mut comment, no)?;
        if name.is_empty() {
            return Err(IniError::EmptyKey(no));
        }
        let section = sections.last_mut().expect("DEFAULT is always there");
        let at = section.set(name, value);
        section.keys[at].comment = comment.trim().to_owned();
        comment.clear();
    }
    Ok(sections)
}

/// go-ini's `readKeyName`: a key quoted with `"`, `"""` or a backtick, or everything before the
/// first `=` or `:`. Returns the name and where the value starts.
fn read_key_name(line: &str, no: usize) -> Result<(String, usize), IniError> {
    let quote = if line.starts_with('"') {
        if line.len() > 6 && line.starts_with("\"\"\"") {
            "\"\"\""
        } else {
            "\""
        }
    } else if line.starts_with('`') {
        "`"
    } else {
        ""
    };
    if !quote.is_empty() {
        let start = quote.len();
        let close = line[start..]
            .find(quote)
            .ok_or(IniError::UnclosedKeyQuote(no))?
            + start;
        // As go-ini: the delimiter is looked for after the closing quote, whatever follows.
        let delim = line[close + start..]
            .find(['=', ':'])
            .ok_or(IniError::NoDelimiter(no))?;
        return Ok((
            line[start..close].trim().to_owned(),
            close + delim + start + 1,
        ));
    }
    match line.find(['=', ':']) {
        None => Err(IniError::NoDelimiter(no)),
        Some(0) => Err(IniError::EmptyKey(no)),
        Some(end) => Ok((line[..end].trim().to_owned(), end + 1)),
    }
}

/// go-ini's `readValue` with sops' options: `"""` and backtick quotes (which may span lines),
/// `\` continuation lines, an inline comment from the first `#` or `;`, and one pair of
/// surrounding `"` or `'` removed.
fn read_value(
    input: &str,
    lines: &mut Lines<'_>,
    comment: &mut String,
    no: usize,
) -> Result<String, IniError> {
    let line = input.trim_start();
    if line.is_empty() {
        return Ok(String::new());
    }
    let quote = if line.len() > 3 && line.starts_with("\"\"\"") {
        Some("\"\"\"")
    } else if line.starts_with('`') {
        Some("`")
    } else {
        None
    };
    if let Some(quote) = quote {
        let body = &line[quote.len()..];
        return match body.rfind(quote) {
            Some(end) => Ok(body[..end].to_owned()),
            None => read_multiline(body, quote, lines, comment, no),
        };
    }
    let mut line = line.trim();
    if let Some(start) = line.strip_suffix('\\') {
        return Ok(read_continuation(start, lines));
    }
    if let Some(i) = line.find(['#', ';']) {
        comment.push_str(&line[i..]);
        line = line[..i].trim();
    }
    if surrounded_by(line, b'\'') || surrounded_by(line, b'"') {
        line = &line[1..line.len() - 1];
    }
    Ok(line.to_owned())
}

/// go-ini's `hasSurroundedQuote`: the quote first, last, and nowhere else.
fn surrounded_by(s: &str, quote: u8) -> bool {
    let b = s.as_bytes();
    b.len() >= 2 && b[0] == quote && b[b.len() - 1] == quote && !b[1..b.len() - 1].contains(&quote)
}

/// The rest of a quoted value: whole lines (with their `\n`) up to the last quote on the first
/// line that has one; a comment after that quote goes to the key.
fn read_multiline(
    first: &str,
    quote: &'static str,
    lines: &mut Lines<'_>,
    comment: &mut String,
    no: usize,
) -> Result<String, IniError> {
    let mut value = first.to_owned();
    let unclosed = IniError::UnclosedValueQuote { line: no, quote };
    loop {
        let Some(next) = lines.next_line() else {
            return Err(unclosed);
        };
        if let Some(end) = next.rfind(quote) {
            value.push_str(&next[..end]);
            if let Some(i) = next[end..].find(['#', ';']) {
                comment.push_str(next[end + i..].trim());
            }
            return Ok(value);
        }
        value.push_str(next);
        if !next.ends_with('\n') {
            return Err(unclosed);
        }
    }
}

/// go-ini's `readContinuationLines`: trimmed lines appended while the value ends in `\`; a blank
/// line ends it. No comment or quote handling on these lines.
fn read_continuation(start: &str, lines: &mut Lines<'_>) -> String {
    let mut value = start.to_owned();
    while let Some(next) = lines.next_line() {
        let next = next.trim();
        if next.is_empty() {
            break;
        }
        value.push_str(next);
        if !value.ends_with('\\') {
            break;
        }
        value.pop();
    }
    value
}

/// sops' `stripCommentChar`: the leading run of `;` and spaces (or `#` and spaces) goes; later
/// lines of a multi-line comment keep theirs.
fn strip_comment_char(c: &str) -> &str {
    if c.starts_with(';') {
        c.trim_start_matches([';', ' '])
    } else if c.starts_with('#') {
        c.trim_start_matches(['#', ' '])
    } else {
        c
    }
}

fn comment_item(text: &str) -> MapItem {
    MapItem::Comment(Comment {
        text: SecretString::new(strip_comment_char(text).to_owned()),
        inline: false,
    })
}

/// sops' `treeBranchesFromIni`.
fn to_map(sections: Vec<Section>) -> Map {
    let mut doc = Map::new();
    for s in sections {
        let mut m = Map::new();
        if !s.comment.is_empty() {
            m.items.push(comment_item(&s.comment));
        }
        for k in s.keys {
            m.items.push(MapItem::Pair(k.name, Node::str(k.value)));
            if !k.comment.is_empty() {
                m.items.push(comment_item(&k.comment));
            }
        }
        doc.items.push(MapItem::Pair(s.name, Node::Map(m)));
    }
    doc
}

/// sops' `encodeTree`: the tree's top-level entries become sections; a section's first comment
/// is the section's, any other the comment of the key before it (the last one wins).
fn from_map(doc: &Map, out: &mut Vec<Section>) -> Result<(), IniError> {
    for (name, node) in doc.pairs() {
        if name.is_empty() {
            return Err(IniError::EmptyName("section"));
        }
        let Node::Map(m) = node else {
            return Err(IniError::NotASection(name.to_owned()));
        };
        let mut section = Section::new(name);
        let mut items = m.items.iter().peekable();
        if let Some(MapItem::Comment(c)) = items.peek() {
            section.comment = c.text.expose().to_owned();
            items.next();
        }
        let mut last: Option<usize> = None;
        for item in items {
            match item {
                MapItem::Comment(c) => {
                    if let Some(at) = last {
                        section.keys[at].comment = c.text.expose().to_owned();
                    }
                }
                MapItem::Pair(k, v) => {
                    if k.is_empty() {
                        return Err(IniError::EmptyName("key"));
                    }
                    let value = match v {
                        Node::Str(s) => s.expose().to_owned(),
                        Node::Map(_) | Node::Seq(_) => {
                            return Err(IniError::ComplexValue {
                                section: name.to_owned(),
                                key: k.clone(),
                            });
                        }
                        other => dotenv::scalar_text(other),
                    };
                    last = Some(section.set(k.clone(), value));
                }
            }
        }
        out.push(section);
    }
    Ok(())
}

/// go-ini's `WriteTo` with its package defaults (`PrettyFormat`, `PrettySection`): `=` aligned
/// per section, a blank line between sections, comments on their own lines before what they
/// belong to, and a first `DEFAULT` section written without its header (or not at all when empty).
fn write(sections: &[Section]) -> Vec<u8> {
    let mut out = String::new();
    let last = sections.len().saturating_sub(1);
    for (i, s) in sections.iter().enumerate() {
        write_comment(&mut out, &s.comment, false);
        if i > 0 || s.name.to_uppercase() != DEFAULT_SECTION {
            out.push('[');
            out.push_str(&s.name);
            out.push_str("]\n");
        } else if s.keys.is_empty() {
            continue;
        }
        let width = s
            .keys
            .iter()
            .map(|k| k.name.len() + quoted_key_extra(&k.name))
            .max()
            .unwrap_or(0);
        for k in &s.keys {
            write_comment(&mut out, &k.comment, true);
            let name = quote_key(&k.name);
            out.push_str(&name);
            out.extend(std::iter::repeat_n(' ', width.saturating_sub(name.len())));
            out.push_str(" = ");
            let v = &k.value;
            if v.contains(['\n', '`']) {
                out.push_str("\"\"\"");
                out.push_str(v);
                out.push_str("\"\"\"");
            } else if v.contains(['#', ';']) {
                out.push('`');
                out.push_str(v);
                out.push('`');
            } else if v.trim().len() != v.len() {
                out.push('"');
                out.push_str(v);
                out.push('"');
            } else {
                out.push_str(v);
            }
            out.push('\n');
        }
        if i != last {
            out.push('\n');
        }
    }
    out.into_bytes()
}

/// A comment's lines, each given a `; ` unless it starts with `;` or `#` (go-ini trims a key
/// comment's lines, not a section comment's).
fn write_comment(out: &mut String, comment: &str, trim: bool) {
    if comment.is_empty() {
        return;
    }
    for line in comment.split('\n') {
        match line.as_bytes().first() {
            Some(b'#' | b';') => {
                out.push_str(&line[..1]);
                out.push(' ');
                out.push_str(line[1..].trim());
            }
            _ => {
                out.push_str("; ");
                out.push_str(if trim { line.trim() } else { line });
            }
        }
        out.push('\n');
    }
}

fn quoted_key_extra(name: &str) -> usize {
    if name.contains(['"', '=', ':']) {
        2
    } else if name.contains('`') {
        6
    } else {
        0
    }
}

fn quote_key(name: &str) -> String {
    if name.contains(['"', '=', ':']) {
        format!("`{name}`")
    } else if name.contains('`') {
        format!("\"\"\"{name}\"\"\"")
    } else {
        name.to_owned()
    }
}

/// Emits a plaintext document (decrypt output) exactly as sops does.
pub fn emit(doc: &Map) -> Result<Vec<u8>, IniError> {
    let mut sections = Vec::new();
    from_map(doc, &mut sections)?;
    Ok(write(&sections))
}

/// Emits an encrypted document with its metadata flattened into a last `[sops]` section.
///
/// sops 3.11 writes that section's keys in Go map order (a different order each run); credseal
/// writes them sorted, as sops 3.13 does. Readers take any order.
pub fn emit_encrypted(doc: &Map, meta: &Map) -> Result<Vec<u8>, IniError> {
    if doc.get(METADATA_SECTION).is_some() {
        return Err(IniError::MetadataSectionInData);
    }
    let mut sections = Vec::new();
    from_map(doc, &mut sections)?;
    let mut flat = Map::new();
    dotenv::flatten(meta, "", &mut flat);
    let mut section = Section::new(METADATA_SECTION);
    for (k, v) in flat.pairs() {
        let text = match v {
            Node::Str(s) => s.expose().replace('\n', "\\n"),
            other => dotenv::scalar_text(other),
        };
        section.set(k.to_owned(), text);
    }
    sections.push(section);
    let out = write(&sections);
    check_reads_back(&sections, &out)?;
    Ok(out)
}

/// A file that would not parse back to the same sections, keys and values would fail its MAC
/// (or lose data) when opened again: refuse it before anything is written.
fn check_reads_back(written: &[Section], out: &[u8]) -> Result<(), IniError> {
    // A first section named DEFAULT in any case is written without a header, and an empty one
    // not at all (its comment, if any, goes to the next header); the reader's implicit DEFAULT
    // stands for both.
    let skip_default = |s: &[Section]| {
        usize::from(
            s.first()
                .is_some_and(|f| f.keys.is_empty() && f.name.to_uppercase() == DEFAULT_SECTION),
        )
    };
    let read = read(out).map_err(|e| IniError::WouldNotReadBack {
        section: written.first().map(|s| s.name.clone()).unwrap_or_default(),
        what: e.to_string(),
    })?;
    let a = &written[skip_default(written)..];
    let b = &read[skip_default(&read)..];
    for (i, w) in a.iter().enumerate() {
        let mismatch = |what: String| IniError::WouldNotReadBack {
            section: w.name.clone(),
            what,
        };
        let Some(r) = b.get(i) else {
            return Err(mismatch("the section is missing".into()));
        };
        if r.name != w.name {
            return Err(mismatch(format!(
                "it reads back as [{}]; rename the section",
                r.name
            )));
        }
        if r.keys.len() != w.keys.len() {
            return Err(mismatch(format!(
                "{} keys read back where {} were written: go-ini reads a key `-` as a comment and an unencrypted value ending in `\\` as continuing onto the next line",
                r.keys.len(),
                w.keys.len()
            )));
        }
        for (rk, wk) in r.keys.iter().zip(&w.keys) {
            if rk.name != wk.name {
                return Err(mismatch(format!(
                    "key {:?} reads back as {:?}; rename the key",
                    wk.name, rk.name
                )));
            }
            if rk.value != wk.value {
                return Err(mismatch(format!(
                    "the unencrypted value of key {:?} reads back changed (go-ini's quoting cannot hold it); encrypt it",
                    wk.name
                )));
            }
        }
    }
    if b.len() != a.len() {
        return Err(IniError::WouldNotReadBack {
            section: b.get(a.len()).map(|s| s.name.clone()).unwrap_or_default(),
            what: "a section that was not written reads back".into(),
        });
    }
    Ok(())
}

/// Takes the metadata out of a parsed document: the first `[sops]` section's keys, unflattened
/// (go-ini's `GetSection` and `KeysHash`); every `[sops]` section is removed from the data, as
/// sops does. `None` if there is none.
pub fn take_metadata(doc: &mut Map) -> Result<Option<Map>, IniError> {
    let mut flat: Option<Vec<(String, Node)>> = None;
    doc.items.retain(|item| match item {
        MapItem::Pair(k, v) if k == METADATA_SECTION => {
            if flat.is_none() {
                flat = Some(match v {
                    Node::Map(m) => m
                        .pairs()
                        .map(|(k, v)| {
                            let v = match v {
                                Node::Str(s) => Node::str(s.expose().replace("\\n", "\n")),
                                other => other.clone(),
                            };
                            (k.to_owned(), v)
                        })
                        .collect(),
                    _ => Vec::new(),
                });
            }
            false
        }
        _ => true,
    });
    match flat {
        None => Ok(None),
        Some(flat) => Ok(Some(dotenv::unflatten(flat)?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value<'a>(m: &'a Map, section: &str, key: &str) -> Option<&'a str> {
        m.get(section)?.as_map()?.get(key)?.as_str()
    }

    fn comments(m: &Map, section: &str) -> Vec<String> {
        m.get(section)
            .and_then(Node::as_map)
            .map(|s| {
                s.items
                    .iter()
                    .filter_map(|i| match i {
                        MapItem::Comment(c) => Some(c.text.expose().to_owned()),
                        MapItem::Pair(..) => None,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn values_quotes_and_inline_comments_as_go_ini() {
        let m = parse(
            b"a = 1\n[s]\nhost = db ; note\nurl=postgres://h/d?x=1#frag\nq = \"  sp  \"\n\
              sq='x'\nhalf = \"a=b;c\"\nbt = `a#b` ; gone\ntq = \"\"\"x\"y\"\"\"\n\
              multi = `l1\nl2` # after\ncont = a\\\n  b\\\n c\nempty =\ncolon: v\n",
        )
        .unwrap();
        let names: Vec<&str> = m.pairs().map(|(k, _)| k).collect();
        assert_eq!(names, ["DEFAULT", "s"]);
        assert_eq!(value(&m, "DEFAULT", "a"), Some("1"));
        assert_eq!(value(&m, "s", "host"), Some("db"));
        assert_eq!(value(&m, "s", "url"), Some("postgres://h/d?x=1"));
        assert_eq!(value(&m, "s", "q"), Some("  sp  "));
        assert_eq!(value(&m, "s", "sq"), Some("x"));
        // The `;` starts a comment even inside double quotes, which then stay.
        assert_eq!(value(&m, "s", "half"), Some("\"a=b"));
        assert_eq!(value(&m, "s", "bt"), Some("a#b"));
        assert_eq!(value(&m, "s", "tq"), Some("x\"y"));
        assert_eq!(value(&m, "s", "multi"), Some("l1\nl2"));
        assert_eq!(value(&m, "s", "cont"), Some("abc"));
        assert_eq!(value(&m, "s", "empty"), Some(""));
        assert_eq!(value(&m, "s", "colon"), Some("v"));
        assert_eq!(comments(&m, "s"), ["note", "frag", "c\"", "after"]);
    }

    #[test]
    fn duplicates_sections_and_comments() {
        let m =
            parse(b"# top\nk = 1\n; sec\n[a] # h\nd = 1\nd = 2\n[DEFAULT]\nx = y\n[a]\ne = 3\n")
                .unwrap();
        let names: Vec<&str> = m.pairs().map(|(k, _)| k).collect();
        assert_eq!(names, ["DEFAULT", "a", "DEFAULT", "a"]);
        assert_eq!(comments(&m, "DEFAULT"), ["top"]);
        // The comment lines before a header and the one after it are the section's.
        assert_eq!(comments(&m, "a"), ["sec\n# h"]);
        // A repeated key keeps its place and takes the last value, as go-ini.
        let a = m.get("a").unwrap().as_map().unwrap();
        assert_eq!(a.pairs().count(), 1);
        assert_eq!(a.get("d").and_then(Node::as_str), Some("2"));
        assert_eq!(
            emit(&m).unwrap(),
            b"; top\nk = 1\n\n; sec\n# h\n[a]\nd = 2\n\n[DEFAULT]\nx = y\n\n[a]\ne = 3\n".to_vec()
        );
    }

    #[test]
    fn writes_as_go_ini() {
        let m = parse(
            b"[s]\nshort = a\n`k=ey` = v\nsp = \" x\"\nhash = `a#b`\nnl = \"\"\"a\nb\"\"\"\nempty =\n",
        )
        .unwrap();
        let out = String::from_utf8(emit(&m).unwrap()).unwrap();
        assert_eq!(
            out,
            "[s]\nshort  = a\n`k=ey` = v\nsp     = \" x\"\nhash   = `a#b`\nnl     = \"\"\"a\nb\"\"\"\nempty  = \n"
        );
        assert_eq!(to_map(read(out.as_bytes()).unwrap()), m);
    }

    #[test]
    fn errors_name_the_line() {
        assert_eq!(
            parse(b"a=1\n[s\n").unwrap_err(),
            IniError::UnclosedSection(2)
        );
        assert_eq!(parse(b"[]\n").unwrap_err(), IniError::EmptySectionName(1));
        assert_eq!(parse(b"a=1\nnope\n").unwrap_err(), IniError::NoDelimiter(2));
        assert_eq!(parse(b" = x\n").unwrap_err(), IniError::EmptyKey(1));
        assert_eq!(
            parse(b"\"a = x\n").unwrap_err(),
            IniError::UnclosedKeyQuote(1)
        );
        assert_eq!(
            parse(b"a = `x\ny\n").unwrap_err(),
            IniError::UnclosedValueQuote {
                line: 1,
                quote: "`"
            }
        );
        assert_eq!(
            parse(b"a=1\nb=caf\xe9\n").unwrap_err(),
            IniError::NotUtf8 { line: 2, byte: 6 }
        );
        // go-ini skips a byte order mark.
        assert_eq!(
            value(&parse(b"\xef\xbb\xbfa=1\n").unwrap(), "DEFAULT", "a"),
            Some("1")
        );
    }

    #[test]
    fn refuses_what_would_not_read_back() {
        let mut meta = Map::new();
        meta.insert("version", Node::str("3.11.0"));
        // go-ini numbers `-` keys `#1`, which sops writes as a comment line.
        let doc = parse(b"[s]\n- = a\n").unwrap();
        let e = emit_encrypted(&doc, &meta).unwrap_err();
        assert!(
            matches!(e, IniError::WouldNotReadBack { ref section, .. } if section == "s"),
            "{e}"
        );
        assert!(e.is_write_error());
        // A value ending in `\` would continue onto the next line.
        let doc = parse(b"[s]\na = `C:\\`\nb = x\n").unwrap();
        assert!(matches!(
            emit_encrypted(&doc, &meta),
            Err(IniError::WouldNotReadBack { .. })
        ));
        let doc = parse(b"[s]\na = ok\n").unwrap();
        let out = emit_encrypted(&doc, &meta).unwrap();
        assert_eq!(out, b"[s]\na = ok\n\n[sops]\nversion = 3.11.0\n".to_vec());
        let mut back = parse(&out).unwrap();
        let m = take_metadata(&mut back).unwrap().unwrap();
        assert_eq!(m, meta);
        assert_eq!(back, doc);
    }

    /// Found by the ini_store fuzz target: data with a `[sops]` section of its own was written
    /// beside the metadata's, and the file then read the data's as its metadata.
    #[test]
    fn data_with_a_sops_section_is_refused_not_written() {
        let doc = parse(b"[sops]\nage__list_0_DPY = x\n[app]\nk = v\n").unwrap();
        let e = emit_encrypted(&doc, &Map::new()).unwrap_err();
        assert!(matches!(e, IniError::MetadataSectionInData), "{e}");
        assert!(e.is_write_error());
    }

    #[test]
    fn hostile_input_stays_linear() {
        // Many repeats of one key: placed through the index, not a scan per key.
        let mut big = String::from("[s]\n");
        for i in 0..200_000 {
            big.push_str(&format!("k{} = v\nk0 = w\n", i));
        }
        let m = parse(big.as_bytes()).unwrap();
        assert_eq!(
            m.get("s").unwrap().as_map().unwrap().pairs().count(),
            200_000
        );
        // An unclosed quote over a long file fails once, at the end.
        let mut open = String::from("a = \"\"\"x\n");
        open.push_str(&"y\n".repeat(500_000));
        assert!(matches!(
            parse(open.as_bytes()),
            Err(IniError::UnclosedValueQuote { line: 1, .. })
        ));
        // Many sections.
        let many = "[s]\n".repeat(200_000);
        assert_eq!(parse(many.as_bytes()).unwrap().pairs().count(), 200_001);
    }
}
