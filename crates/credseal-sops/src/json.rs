//! The JSON store (docs/sops-format.md §11): order-preserving parse with sops' number rules, and Go
//! `encoding/json` + `json.Indent` emission.

use crate::tree::{MAX_DEPTH, Map, MapItem, Node, Seq, SeqItem};
use crate::value::format_float_f;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JsonError {
    #[error("line {line}, column {column}: {message}")]
    Syntax {
        line: usize,
        column: usize,
        message: &'static str,
    },
    /// Objects and arrays nested deeper than [`MAX_DEPTH`].
    #[error(
        "line {line}, column {column}: objects and arrays nested more than {limit} levels deep (the limit)"
    )]
    TooDeep {
        line: usize,
        column: usize,
        limit: usize,
    },
    #[error("the top level must be a JSON object ({{…}}); wrap other values in an object")]
    NotAnObject,
    #[error("a float value ({0}) cannot be written as JSON")]
    NotFinite(&'static str),
}

/// Parses a JSON object. Numbers that fit i64 become `Int`, others `Float` (sops 3.13.2+).
pub fn parse(input: &[u8]) -> Result<Map, JsonError> {
    let mut p = Parser {
        s: input,
        i: 0,
        depth: 0,
    };
    p.ws();
    if p.peek() != Some(b'{') {
        return if p.peek().is_none() {
            Err(p.err("empty input"))
        } else {
            Err(JsonError::NotAnObject)
        };
    }
    let map = match p.value()? {
        Node::Map(m) => m,
        _ => unreachable!("starts with an object"),
    };
    p.ws();
    if p.i != p.s.len() {
        return Err(p.err("unexpected data after the top-level object"));
    }
    Ok(map)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
    /// Objects and arrays open at `i`: `value` recurses once per level.
    depth: usize,
}

impl Parser<'_> {
    /// Line and column (1-based) of `i`; counted on demand, only for an error.
    fn position(&self) -> (usize, usize) {
        let before = &self.s[..self.i.min(self.s.len())];
        let line = before.iter().filter(|&&c| c == b'\n').count() + 1;
        let column = before.iter().rev().take_while(|&&c| c != b'\n').count() + 1;
        (line, column)
    }

    fn err(&self, message: &'static str) -> JsonError {
        let (line, column) = self.position();
        JsonError::Syntax {
            line,
            column,
            message,
        }
    }

    /// Opens an object or array, refusing one nested past [`MAX_DEPTH`].
    fn enter(&mut self) -> Result<(), JsonError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            let (line, column) = self.position();
            return Err(JsonError::TooDeep {
                line,
                column,
                limit: MAX_DEPTH,
            });
        }
        Ok(())
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn expect(&mut self, c: u8, message: &'static str) -> Result<(), JsonError> {
        self.ws();
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(self.err(message))
        }
    }

    fn value(&mut self) -> Result<Node, JsonError> {
        self.ws();
        match self.peek() {
            Some(b'{') => {
                self.enter()?;
                self.i += 1;
                let mut map = Map::new();
                self.ws();
                if self.peek() == Some(b'}') {
                    self.i += 1;
                    self.depth -= 1;
                    return Ok(Node::Map(map));
                }
                loop {
                    self.ws();
                    if self.peek() != Some(b'"') {
                        return Err(self.err("expected a string key"));
                    }
                    let key = self.string()?;
                    self.expect(b':', "expected ':' after a key")?;
                    let v = self.value()?;
                    map.items.push(MapItem::Pair(key, v));
                    self.ws();
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            self.depth -= 1;
                            return Ok(Node::Map(map));
                        }
                        _ => return Err(self.err("expected ',' or '}'")),
                    }
                }
            }
            Some(b'[') => {
                self.enter()?;
                self.i += 1;
                let mut seq = Seq::default();
                self.ws();
                if self.peek() == Some(b']') {
                    self.i += 1;
                    self.depth -= 1;
                    return Ok(Node::Seq(seq));
                }
                loop {
                    seq.items.push(SeqItem::Node(self.value()?));
                    self.ws();
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            self.depth -= 1;
                            return Ok(Node::Seq(seq));
                        }
                        _ => return Err(self.err("expected ',' or ']'")),
                    }
                }
            }
            Some(b'"') => Ok(Node::str(self.string()?)),
            Some(b't') => self.word("true", Node::Bool(true)),
            Some(b'f') => self.word("false", Node::Bool(false)),
            Some(b'n') => self.word("null", Node::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            None => Err(self.err("unexpected end of input")),
            Some(_) => Err(self.err("unexpected character")),
        }
    }

    fn word(&mut self, w: &str, node: Node) -> Result<Node, JsonError> {
        if self.s[self.i..].starts_with(w.as_bytes()) {
            self.i += w.len();
            Ok(node)
        } else {
            Err(self.err("invalid literal"))
        }
    }

    fn number(&mut self) -> Result<Node, JsonError> {
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        let digits = |p: &mut Self| {
            let s = p.i;
            while matches!(p.peek(), Some(b'0'..=b'9')) {
                p.i += 1;
            }
            p.i - s
        };
        let int_start = self.i;
        if digits(self) == 0 {
            return Err(self.err("invalid number"));
        }
        if self.s[int_start] == b'0' && self.i - int_start > 1 {
            return Err(self.err("invalid number (leading zero)"));
        }
        let mut integral = true;
        if self.peek() == Some(b'.') {
            self.i += 1;
            integral = false;
            if digits(self) == 0 {
                return Err(self.err("invalid number"));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            integral = false;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if digits(self) == 0 {
                return Err(self.err("invalid number"));
            }
        }
        let text = std::str::from_utf8(&self.s[start..self.i]).expect("ASCII");
        if integral {
            if let Ok(i) = text.parse::<i64>() {
                return Ok(Node::Int(i));
            }
        }
        text.parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .map(Node::Float)
            .ok_or_else(|| self.err("number out of range"))
    }

    fn string(&mut self) -> Result<String, JsonError> {
        self.i += 1; // opening quote
        let mut out = Vec::new();
        loop {
            let c = self.peek().ok_or_else(|| self.err("unterminated string"))?;
            self.i += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    let e = self.peek().ok_or_else(|| self.err("unterminated string"))?;
                    self.i += 1;
                    let ch = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hi = self.hex4()?;
                            if (0xD800..0xDC00).contains(&hi)
                                && self.s[self.i..].starts_with(b"\\u")
                            {
                                let save = self.i;
                                self.i += 2;
                                let lo = self.hex4()?;
                                if (0xDC00..0xE000).contains(&lo) {
                                    char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))
                                        .unwrap_or('\u{fffd}')
                                } else {
                                    self.i = save;
                                    '\u{fffd}'
                                }
                            } else {
                                char::from_u32(hi).unwrap_or('\u{fffd}')
                            }
                        }
                        _ => return Err(self.err("invalid escape in string")),
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                }
                0x00..=0x1f => return Err(self.err("control character in string")),
                _ => out.push(c),
            }
        }
        String::from_utf8(out).map_err(|_| self.err("invalid UTF-8 in string"))
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        let h = self
            .s
            .get(self.i..self.i + 4)
            .ok_or_else(|| self.err("bad \\u escape"))?;
        let v = std::str::from_utf8(h)
            .ok()
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .ok_or_else(|| self.err("bad \\u escape"))?;
        self.i += 4;
        Ok(v)
    }
}

/// Emits like sops: compact encoding, then `json.Indent` with `indent` (a tab by default),
/// comments dropped, trailing newline.
pub fn emit(map: &Map, indent: &str) -> Result<Vec<u8>, JsonError> {
    emit_with(map, None, indent)
}

/// As [`emit`], with `last` (an encrypted file's metadata) as the last pair, without copying
/// the map.
pub fn emit_with(
    map: &Map,
    last: Option<(&str, &Node)>,
    indent: &str,
) -> Result<Vec<u8>, JsonError> {
    let mut out = String::new();
    write_pairs(map.pairs().chain(last).collect(), indent, 0, &mut out)?;
    out.push('\n');
    Ok(out.into_bytes())
}

/// One value as JSON (for `--extract` of a non-string value).
pub fn emit_value(node: &Node, indent: &str) -> Result<Vec<u8>, JsonError> {
    let mut out = String::new();
    write_node(node, indent, 0, &mut out)?;
    Ok(out.into_bytes())
}

fn newline(indent: &str, depth: usize, out: &mut String) {
    out.push('\n');
    for _ in 0..depth {
        out.push_str(indent);
    }
}

fn write_map(map: &Map, indent: &str, depth: usize, out: &mut String) -> Result<(), JsonError> {
    write_pairs(map.pairs().collect(), indent, depth, out)
}

fn write_pairs(
    pairs: Vec<(&str, &Node)>,
    indent: &str,
    depth: usize,
    out: &mut String,
) -> Result<(), JsonError> {
    if pairs.is_empty() {
        out.push_str("{}");
        return Ok(());
    }
    out.push('{');
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        newline(indent, depth + 1, out);
        write_string(k, out);
        out.push_str(": ");
        write_node(v, indent, depth + 1, out)?;
    }
    newline(indent, depth, out);
    out.push('}');
    Ok(())
}

fn write_node(node: &Node, indent: &str, depth: usize, out: &mut String) -> Result<(), JsonError> {
    match node {
        Node::Map(m) => write_map(m, indent, depth, out)?,
        Node::Seq(s) => {
            let items: Vec<&Node> = s.nodes().collect();
            if items.is_empty() {
                out.push_str("[]");
            } else {
                out.push('[');
                for (i, n) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    newline(indent, depth + 1, out);
                    write_node(n, indent, depth + 1, out)?;
                }
                newline(indent, depth, out);
                out.push(']');
            }
        }
        Node::Null => out.push_str("null"),
        Node::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Node::Int(i) => out.push_str(&i.to_string()),
        Node::Float(f) => out.push_str(&go_json_float(*f)?),
        Node::Str(s) => write_string(s.expose(), out),
        Node::Time(t) => write_string(&t.to_rfc3339_nano(), out),
    }
    Ok(())
}

/// Go `encoding/json`'s float64 format: `'f'` in [1e-6, 1e21), else `'e'` with a short exponent.
fn go_json_float(f: f64) -> Result<String, JsonError> {
    if f.is_nan() {
        return Err(JsonError::NotFinite("NaN"));
    }
    if f.is_infinite() {
        return Err(JsonError::NotFinite("infinity"));
    }
    let abs = f.abs();
    if abs == 0.0 || (1e-6..1e21).contains(&abs) {
        return Ok(format_float_f(f));
    }
    // Rust's `{:e}` is the shortest round-trip mantissa; Go writes `e+21`, `e-07` → `e-7`.
    let s = format!("{f:e}");
    let (mantissa, exp) = s.split_once('e').expect("exponent form");
    let exp: i32 = exp.parse().expect("exponent");
    Ok(format!(
        "{mantissa}e{}{}",
        if exp < 0 { '-' } else { '+' },
        exp.abs()
    ))
}

/// Go `json.Marshal` string escaping with HTML escaping on (sops' default encoder).
pub fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_keeps_order_duplicates_and_number_kinds() {
        let m = parse(br#"{"b": 1, "a": 25.4, "c": [true, null, "x<y"], "b": {}, "big": 9223372036854775808}"#).unwrap();
        let keys: Vec<&str> = m.pairs().map(|(k, _)| k).collect();
        assert_eq!(keys, ["b", "a", "c", "b", "big"]);
        assert_eq!(m.get("b"), Some(&Node::Int(1)));
        assert_eq!(m.get("a"), Some(&Node::Float(25.4)));
        assert!(matches!(m.get("big"), Some(Node::Float(_))));
    }

    #[test]
    fn emit_matches_go_indent() {
        let m = parse(br#"{"a": {"x": [1, 2.5, "q\"<"]}, "e": {}, "l": [], "n": null}"#).unwrap();
        let out = String::from_utf8(emit(&m, "\t").unwrap()).unwrap();
        assert_eq!(
            out,
            "{\n\t\"a\": {\n\t\t\"x\": [\n\t\t\t1,\n\t\t\t2.5,\n\t\t\t\"q\\\"\\u003c\"\n\t\t]\n\t},\n\t\"e\": {},\n\t\"l\": [],\n\t\"n\": null\n}\n"
        );
    }

    #[test]
    fn nesting_is_limited() {
        let nested = |levels: usize| {
            let inner = levels - 1;
            format!("{{\"a\": {}1{}}}", "[".repeat(inner), "]".repeat(inner))
        };
        assert!(parse(nested(MAX_DEPTH).as_bytes()).is_ok());
        assert_eq!(
            parse(nested(MAX_DEPTH + 1).as_bytes()).unwrap_err(),
            JsonError::TooDeep {
                line: 1,
                column: 6 + MAX_DEPTH,
                limit: MAX_DEPTH
            }
        );
        // Far deeper input is refused the same way instead of overflowing the stack.
        let e = parse(nested(1_000_000).as_bytes()).unwrap_err();
        assert!(matches!(e, JsonError::TooDeep { .. }), "{e:?}");
        assert!(e.to_string().contains("nested more than 512 levels"), "{e}");
        // Depth is nesting, not the number of collections.
        let wide = format!("{{\"a\": [{}]}}", vec!["[[1]]"; 10_000].join(","));
        assert!(parse(wide.as_bytes()).is_ok());
    }

    #[test]
    fn errors_have_positions() {
        assert_eq!(parse(b"[1]").unwrap_err(), JsonError::NotAnObject);
        let e = parse(b"{\n  \"a\": tru\n}").unwrap_err();
        assert!(matches!(e, JsonError::Syntax { line: 2, .. }), "{e:?}");
        assert_eq!(go_json_float(1e21).unwrap(), "1e+21");
        assert_eq!(go_json_float(1e-7).unwrap(), "1e-7");
    }
}
