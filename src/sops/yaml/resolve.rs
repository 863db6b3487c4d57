//! Scalar resolution as go-yaml v3 does it (what sops sees), spec §10.1: not YAML 1.1 (`yes`
//! is a string), not plain YAML 1.2 core either (`0755` is octal, `1_000` is 1000, unquoted
//! dates are timestamps).

use crate::sops::tree::{Node, Timestamp};

/// What a plain scalar (or one with a core-schema tag) resolves to.
#[derive(Debug, PartialEq)]
pub enum Resolved {
    Node(Node),
    /// An integer in (i64::MAX, u64::MAX]: go-yaml yields uint64, which sops cannot walk.
    Unsigned,
}

fn special(s: &str) -> Option<Node> {
    Some(match s {
        "true" | "True" | "TRUE" => Node::Bool(true),
        "false" | "False" | "FALSE" => Node::Bool(false),
        "" | "~" | "null" | "Null" | "NULL" => Node::Null,
        ".nan" | ".NaN" | ".NAN" => Node::Float(f64::NAN),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => Node::Float(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => Node::Float(f64::NEG_INFINITY),
        _ => return None,
    })
}

/// Resolves a plain scalar with no tag.
pub fn plain(s: &str) -> Resolved {
    let first = s.as_bytes().first().copied();
    let hint = match first {
        None => 'N',
        Some(b'+' | b'-') => 'S',
        Some(b'0'..=b'9') => 'D',
        Some(b'y' | b'Y' | b'n' | b'N' | b't' | b'T' | b'f' | b'F' | b'o' | b'O' | b'~') => 'M',
        Some(b'.') => '.',
        _ => return Resolved::Node(Node::str(s)),
    };
    if let Some(n) = special(s) {
        return Resolved::Node(n);
    }
    match hint {
        '.' => {
            if let Some(f) = go_parse_float(s) {
                return Resolved::Node(Node::Float(f));
            }
        }
        'D' | 'S' => {
            if let Some(t) = timestamp(s) {
                return Resolved::Node(Node::Time(t));
            }
            let cleaned = s.replace('_', "");
            match go_parse_int(&cleaned) {
                IntParse::Int(i) => return Resolved::Node(Node::Int(i)),
                IntParse::Unsigned => return Resolved::Unsigned,
                IntParse::No => {}
            }
            if is_yaml_float(&cleaned) {
                if let Ok(f) = cleaned.parse::<f64>() {
                    return Resolved::Node(Node::Float(f));
                }
            }
        }
        _ => {}
    }
    Resolved::Node(Node::str(s))
}

enum IntParse {
    Int(i64),
    Unsigned,
    No,
}

/// Go `strconv.ParseInt(s, 0, 64)`, then `ParseUint` for the range above i64.
fn go_parse_int(s: &str) -> IntParse {
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let (radix, digits) =
        if let Some(d) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
            (16, d)
        } else if let Some(d) = body.strip_prefix("0o").or_else(|| body.strip_prefix("0O")) {
            (8, d)
        } else if let Some(d) = body.strip_prefix("0b").or_else(|| body.strip_prefix("0B")) {
            (2, d)
        } else if body.len() > 1 && body.starts_with('0') {
            (8, &body[1..])
        } else {
            (10, body)
        };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return IntParse::No;
    }
    match u128::from_str_radix(digits, radix) {
        Ok(v) if !neg && v <= i64::MAX as u128 => IntParse::Int(v as i64),
        Ok(v) if neg && v <= (i64::MAX as u128) + 1 => {
            IntParse::Int((v as i128).wrapping_neg() as i64)
        }
        // ParseUint accepts no sign.
        Ok(v) if !neg && s.as_bytes()[0] != b'+' && v <= u64::MAX as u128 => IntParse::Unsigned,
        _ => IntParse::No,
    }
}

/// go-yaml's `yamlStyleFloat`: `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`.
fn is_yaml_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if matches!(b.first(), Some(b'+' | b'-')) {
        i += 1;
    }
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - start
    };
    if b.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    } else {
        if digits(&mut i) == 0 {
            return false;
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            digits(&mut i);
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

/// Go `strconv.ParseFloat` for the inputs that reach it (a leading `.`).
fn go_parse_float(s: &str) -> Option<f64> {
    if is_yaml_float(s) {
        s.parse().ok()
    } else {
        None
    }
}

/// go-yaml's timestamp forms: `2006-1-2`, `2006-1-2T15:4:5.999999999Z07:00` (also `t`), and
/// `2006-1-2 15:4:5.999999999` (UTC).
pub fn timestamp(s: &str) -> Option<Timestamp> {
    let b = s.as_bytes();
    if b.len() < 5 || !b[..4].iter().all(u8::is_ascii_digit) || b[4] != b'-' {
        return None;
    }
    let mut p = Cursor { b, i: 5 };
    let year: i32 = s[..4].parse().ok()?;
    let month = p.num(1, 2)? as u8;
    p.lit(b'-')?;
    let day = p.num(1, 2)? as u8;
    let mut ts = Timestamp {
        year,
        month,
        day,
        hour: 0,
        minute: 0,
        second: 0,
        nanos: 0,
        offset_secs: 0,
    };
    if p.done() {
        return ts.is_valid().then_some(ts);
    }
    let zoned = match p.next()? {
        b'T' | b't' => true,
        b' ' => false,
        _ => return None,
    };
    ts.hour = p.num(1, 2)? as u8;
    p.lit(b':')?;
    ts.minute = p.num(1, 2)? as u8;
    p.lit(b':')?;
    ts.second = p.num(1, 2)? as u8;
    if p.peek() == Some(b'.') {
        p.i += 1;
        let start = p.i;
        while p.peek().is_some_and(|c| c.is_ascii_digit()) {
            p.i += 1;
        }
        let frac = &s[start..p.i];
        if frac.is_empty() {
            return None;
        }
        let nine: String = frac.chars().chain(std::iter::repeat('0')).take(9).collect();
        ts.nanos = nine.parse().ok()?;
    }
    if zoned {
        match p.next()? {
            b'Z' => {}
            sign @ (b'+' | b'-') => {
                let h = p.num(2, 2)? as i32;
                p.lit(b':')?;
                let m = p.num(2, 2)? as i32;
                ts.offset_secs = (h * 3600 + m * 60) * if sign == b'-' { -1 } else { 1 };
            }
            _ => return None,
        }
    }
    (p.done() && ts.is_valid()).then_some(ts)
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn done(&self) -> bool {
        self.i == self.b.len()
    }
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }
    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }
    fn lit(&mut self, c: u8) -> Option<()> {
        (self.next()? == c).then_some(())
    }
    fn num(&mut self, min: usize, max: usize) -> Option<u32> {
        let start = self.i;
        while self.i - start < max && self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        if self.i - start < min {
            return None;
        }
        std::str::from_utf8(&self.b[start..self.i])
            .ok()?
            .parse()
            .ok()
    }
}

/// Whether a string would be read back as something other than a string if written plain
/// (go-yaml then quotes it), including YAML 1.1 booleans and base-60 numbers.
pub fn needs_quotes(s: &str) -> bool {
    !matches!(plain(s), Resolved::Node(Node::Str(_))) || is_old_bool(s) || is_base60_float(s)
}

fn is_old_bool(s: &str) -> bool {
    matches!(
        s,
        "y" | "Y"
            | "yes"
            | "Yes"
            | "YES"
            | "on"
            | "On"
            | "ON"
            | "n"
            | "N"
            | "no"
            | "No"
            | "NO"
            | "off"
            | "Off"
            | "OFF"
    )
}

/// `^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$`
fn is_base60_float(s: &str) -> bool {
    let b = s.as_bytes();
    if b.is_empty() || !(b[0] == b'+' || b[0] == b'-' || b[0].is_ascii_digit()) || !s.contains(':')
    {
        return false;
    }
    let mut i = usize::from(matches!(b[0], b'+' | b'-'));
    if !b.get(i).is_some_and(u8::is_ascii_digit) {
        return false;
    }
    i += 1;
    while b.get(i).is_some_and(|c| c.is_ascii_digit() || *c == b'_') {
        i += 1;
    }
    let mut groups = 0;
    while b.get(i) == Some(&b':') {
        i += 1;
        let start = i;
        while i - start < 2 && b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        let g = &s[start..i];
        let ok = match g.len() {
            1 => true,
            2 => g.as_bytes()[0] <= b'5',
            _ => false,
        };
        if !ok {
            return false;
        }
        groups += 1;
    }
    if groups == 0 {
        return false;
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        while b.get(i).is_some_and(|c| c.is_ascii_digit() || *c == b'_') {
            i += 1;
        }
    }
    i == b.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> Node {
        match plain(s) {
            Resolved::Node(n) => n,
            Resolved::Unsigned => panic!("unsigned"),
        }
    }

    #[test]
    fn go_yaml_v3_rules() {
        assert_eq!(r("yes"), Node::str("yes"));
        assert_eq!(r("on"), Node::str("on"));
        assert_eq!(r("True"), Node::Bool(true));
        assert_eq!(r("0755"), Node::Int(493));
        assert_eq!(r("0x1F"), Node::Int(31));
        assert_eq!(r("0o17"), Node::Int(15));
        assert_eq!(r("0b101"), Node::Int(5));
        assert_eq!(r("1_000"), Node::Int(1000));
        assert_eq!(r("-7"), Node::Int(-7));
        assert_eq!(r("+7"), Node::Int(7));
        assert_eq!(
            r("08"),
            Node::Float(8.0),
            "invalid octal falls through to float, as in go-yaml"
        );
        assert_eq!(r("25.4"), Node::Float(25.4));
        assert_eq!(r("1.5e3"), Node::Float(1500.0));
        assert_eq!(r(".5"), Node::Float(0.5));
        assert_eq!(r("-.inf"), Node::Float(f64::NEG_INFINITY));
        assert_eq!(r("~"), Node::Null);
        assert_eq!(r(""), Node::Null);
        assert_eq!(r("-"), Node::str("-"));
        assert_eq!(r("1.2.3"), Node::str("1.2.3"));
        assert_eq!(plain("18446744073709551615"), Resolved::Unsigned);
        assert_eq!(r("-9223372036854775808"), Node::Int(i64::MIN));
        assert!(matches!(r("99999999999999999999999"), Node::Float(_)));
    }

    #[test]
    fn timestamps() {
        let t = |s| match r(s) {
            Node::Time(t) => t.to_rfc3339_nano(),
            other => panic!("{s}: {other:?}"),
        };
        assert_eq!(t("2024-01-01"), "2024-01-01T00:00:00Z");
        assert_eq!(
            t("2001-12-14T21:59:43.10-05:00"),
            "2001-12-14T21:59:43.1-05:00"
        );
        assert_eq!(t("2001-12-14 21:59:43.10"), "2001-12-14T21:59:43.1Z");
        assert_eq!(t("2024-1-2t3:4:5Z"), "2024-01-02T03:04:05Z");
        assert_eq!(r("2024-13-01"), Node::str("2024-13-01"));
        assert_eq!(r("2024-01-01x"), Node::str("2024-01-01x"));
    }

    #[test]
    fn quoting_decisions() {
        for q in [
            "5432",
            "true",
            "",
            "null",
            "2024-01-01",
            "yes",
            "off",
            "1:20",
            "0x1F",
            ".inf",
        ] {
            assert!(needs_quotes(q), "{q}");
        }
        for p in ["hello", "app_user", "v1", "1.2.3", "ENC[AES256_GCM,data:x]"] {
            assert!(!needs_quotes(p), "{p}");
        }
    }
}
