//! Scalar resolution as go-yaml v3 does it (docs/sops-format.md §10.1), and the helpers the emitter needs to
//! decide whether a string must be quoted (it would resolve to something else, or a YAML 1.1
//! parser would read it as a bool or a base-60 number).

use crate::tree::Timestamp;

/// What a plain (untagged, unquoted) scalar means to go-yaml v3.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Resolved {
    Null,
    Bool(bool),
    Int(i64),
    /// Fits in `u64` but not `i64`: go-yaml decodes it, sops refuses it.
    Uint(u64),
    Float(f64),
    Time(Timestamp),
    Str,
}

/// go-yaml `resolve("", s)` for a plain scalar.
pub(crate) fn resolve_plain(s: &str) -> Resolved {
    let Some(&first) = s.as_bytes().first() else {
        return Resolved::Null;
    };
    match first {
        b'y' | b'Y' | b'n' | b'N' | b't' | b'T' | b'f' | b'F' | b'o' | b'O' | b'~' => {
            map_lookup(s).unwrap_or(Resolved::Str)
        }
        b'.' => {
            if let Some(r) = map_lookup(s) {
                return r;
            }
            match parse_go_float_dot(s) {
                Some(f) => Resolved::Float(f),
                None => Resolved::Str,
            }
        }
        b'+' | b'-' | b'0'..=b'9' => {
            if let Some(r) = map_lookup(s) {
                return r;
            }
            resolve_number(s)
        }
        _ => Resolved::Str,
    }
}

fn map_lookup(s: &str) -> Option<Resolved> {
    Some(match s {
        "true" | "True" | "TRUE" => Resolved::Bool(true),
        "false" | "False" | "FALSE" => Resolved::Bool(false),
        "~" | "null" | "Null" | "NULL" => Resolved::Null,
        ".nan" | ".NaN" | ".NAN" => Resolved::Float(f64::NAN),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => Resolved::Float(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => Resolved::Float(f64::NEG_INFINITY),
        _ => return None,
    })
}

/// The 'D'/'S' branch of go-yaml's resolver: timestamp, int (Go base prefixes, leading 0 =
/// octal, `_` ignored), uint, YAML-style float, in that order.
fn resolve_number(s: &str) -> Resolved {
    if let Some(t) = parse_timestamp(s) {
        return Resolved::Time(t);
    }
    let plain: String = s.chars().filter(|&c| c != '_').collect();
    match parse_go_int(&plain) {
        IntParse::Int(i) => return Resolved::Int(i),
        IntParse::Uint(u) => return Resolved::Uint(u),
        IntParse::Invalid => {}
    }
    // Go's ParseFloat reports overflow to ±Inf as an error: the text stays a string.
    let float = is_yaml_style_float(&plain)
        .then(|| plain.parse::<f64>().ok())
        .flatten()
        .filter(|f| f.is_finite());
    if let Some(f) = float {
        return Resolved::Float(f);
    }
    Resolved::Str
}

enum IntParse {
    Int(i64),
    Uint(u64),
    Invalid,
}

/// `strconv.ParseInt(s, 0, 64)`, then `strconv.ParseUint(s, 0, 64)` (underscores already gone).
fn parse_go_int(s: &str) -> IntParse {
    let (neg, signed, body) = match s.as_bytes().first() {
        Some(b'-') => (true, true, &s[1..]),
        Some(b'+') => (false, true, &s[1..]),
        _ => (false, false, s),
    };
    let (radix, digits) = if body.len() >= 2 && body.starts_with('0') {
        match body.as_bytes()[1] {
            b'x' | b'X' => (16, &body[2..]),
            b'o' | b'O' => (8, &body[2..]),
            b'b' | b'B' => (2, &body[2..]),
            _ => (8, &body[1..]),
        }
    } else {
        (10, body)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return IntParse::Invalid;
    }
    let Ok(mag) = u128::from_str_radix(digits, radix) else {
        return IntParse::Invalid;
    };
    if neg {
        if mag <= (i64::MAX as u128) + 1 {
            return IntParse::Int((-(mag as i128)) as i64);
        }
        return IntParse::Invalid;
    }
    if mag <= i64::MAX as u128 {
        return IntParse::Int(mag as i64);
    }
    // ParseUint takes no sign.
    if !signed && mag <= u64::MAX as u128 {
        return IntParse::Uint(mag as u64);
    }
    IntParse::Invalid
}

/// `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`
fn is_yaml_style_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if matches!(b.first(), Some(b'-' | b'+')) {
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
        if matches!(b.get(i), Some(b'-' | b'+')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

/// Go `strconv.ParseFloat` for text starting with `.` (only decimal forms can): `.5`, `.5e3`,
/// `.5_5` (underscores between digits).
fn parse_go_float_dot(s: &str) -> Option<f64> {
    let b = s.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        if c == b'_' {
            let ok = i > 0
                && b[i - 1].is_ascii_digit()
                && b.get(i + 1).is_some_and(|n| n.is_ascii_digit());
            if !ok {
                return None;
            }
        }
    }
    let plain: String = s.chars().filter(|&c| c != '_').collect();
    if !is_yaml_style_float(&plain) {
        return None;
    }
    plain.parse::<f64>().ok().filter(|f| f.is_finite())
}

/// go-yaml's timestamp formats (`2006-1-2T15:4:5.999999999Z07:00`, the same with `t`,
/// `2006-1-2 15:4:5.999999999`, `2006-1-2`), with Go `time.Parse` range checks.
pub(crate) fn parse_timestamp(s: &str) -> Option<Timestamp> {
    let b = s.as_bytes();
    if b.len() < 5 || !b[..4].iter().all(u8::is_ascii_digit) || b[4] != b'-' {
        return None;
    }
    let mut p = Cursor { b, i: 5 };
    let year = s[..4].parse::<i32>().ok()?;
    let month = p.num12()?;
    p.expect(b'-')?;
    let day = p.num12()?;
    let mut ts = Timestamp {
        year,
        month: month as u8,
        day: day as u8,
        hour: 0,
        minute: 0,
        second: 0,
        nanos: 0,
        offset_secs: 0,
    };
    if !(1..=12).contains(&month) || !ts.is_valid() {
        return None;
    }
    if p.i == b.len() {
        return Some(ts);
    }
    let zoned = match b[p.i] {
        b'T' | b't' => true,
        b' ' => false,
        _ => return None,
    };
    p.i += 1;
    let hour = p.num12()?;
    p.expect(b':')?;
    let minute = p.num12()?;
    p.expect(b':')?;
    let second = p.num12()?;
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    ts.hour = hour as u8;
    ts.minute = minute as u8;
    ts.second = second as u8;
    if p.i < b.len()
        && (b[p.i] == b'.' || b[p.i] == b',')
        && b.get(p.i + 1).is_some_and(u8::is_ascii_digit)
    {
        p.i += 1;
        let start = p.i;
        while p.i < b.len() && b[p.i].is_ascii_digit() {
            p.i += 1;
        }
        let digits = &s[start..p.i.min(start + 9)];
        let scale = 10u32.pow(9 - digits.len() as u32);
        ts.nanos = digits.parse::<u32>().ok()? * scale;
    }
    if !zoned {
        return (p.i == b.len()).then_some(ts);
    }
    match b.get(p.i)? {
        b'Z' => {
            p.i += 1;
        }
        c @ (b'+' | b'-') => {
            let sign = if *c == b'-' { -1 } else { 1 };
            p.i += 1;
            let hh = p.fixed2()?;
            p.expect(b':')?;
            let mm = p.fixed2()?;
            if hh > 24 || mm > 60 {
                return None;
            }
            ts.offset_secs = sign * (hh as i32 * 3600 + mm as i32 * 60);
        }
        _ => return None,
    }
    (p.i == b.len()).then_some(ts)
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    /// One or two digits (Go's non-zero-padded layout fields).
    fn num12(&mut self) -> Option<u32> {
        let d1 = *self.b.get(self.i).filter(|c| c.is_ascii_digit())?;
        self.i += 1;
        let mut v = u32::from(d1 - b'0');
        if let Some(&d2) = self.b.get(self.i).filter(|c| c.is_ascii_digit()) {
            self.i += 1;
            v = v * 10 + u32::from(d2 - b'0');
        }
        Some(v)
    }

    fn fixed2(&mut self) -> Option<u32> {
        let d = self.b.get(self.i..self.i + 2)?;
        if !d.iter().all(u8::is_ascii_digit) {
            return None;
        }
        self.i += 2;
        Some(u32::from(d[0] - b'0') * 10 + u32::from(d[1] - b'0'))
    }

    fn expect(&mut self, c: u8) -> Option<()> {
        (self.b.get(self.i) == Some(&c)).then(|| self.i += 1)
    }
}

/// YAML 1.1 booleans that go-yaml quotes on output (`isOldBool`).
pub(crate) fn is_old_bool(s: &str) -> bool {
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

/// YAML 1.1 base-60 floats that go-yaml quotes on output (`isBase60Float`):
/// `^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$`.
pub(crate) fn is_base60_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if matches!(b.first(), Some(b'-' | b'+')) {
        i += 1;
    }
    if !b.get(i).is_some_and(u8::is_ascii_digit) {
        return false;
    }
    i += 1;
    while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'_') {
        i += 1;
    }
    let mut groups = 0;
    while b.get(i) == Some(&b':') {
        i += 1;
        // [0-5]?[0-9]: one or two digits, the first of two at most 5.
        let d1 = b.get(i).filter(|c| c.is_ascii_digit());
        let d2 = b.get(i + 1).filter(|c| c.is_ascii_digit());
        match (d1, d2) {
            (Some(&a), Some(_)) if a <= b'5' => i += 2,
            (Some(_), _) => i += 1,
            _ => return false,
        }
        groups += 1;
    }
    if groups == 0 {
        return false;
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'_') {
            i += 1;
        }
    }
    i == b.len()
}

/// Go `strconv.FormatFloat(f, 'g', -1, 64)` with go-yaml's `.inf`/`-.inf`/`.nan`.
pub(crate) fn format_float(f: f64) -> String {
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
    let sign = if f.is_sign_negative() { "-" } else { "" };
    if f == 0.0 {
        return format!("{sign}0");
    }
    // Rust's `{:e}` prints the shortest round-trip digits: "d.ddde<exp>".
    let e = format!("{:e}", f.abs());
    let (mant, exp) = e.split_once('e').expect("{:e} has an exponent");
    let exp: i32 = exp.parse().expect("integer exponent");
    let digits: String = mant.chars().filter(|&c| c != '.').collect();
    if !(-4..6).contains(&exp) {
        // %e form: d[.ddd]e±XX
        let mut s = String::from(sign);
        s.push_str(&digits[..1]);
        if digits.len() > 1 {
            s.push('.');
            s.push_str(&digits[1..]);
        }
        s.push('e');
        s.push(if exp < 0 { '-' } else { '+' });
        s.push_str(&format!("{:02}", exp.abs()));
        return s;
    }
    // %f form with exactly the shortest digits.
    let mut s = String::from(sign);
    if exp < 0 {
        s.push_str("0.");
        for _ in 0..(-exp - 1) {
            s.push('0');
        }
        s.push_str(&digits);
    } else {
        let int_len = exp as usize + 1;
        if digits.len() <= int_len {
            s.push_str(&digits);
            for _ in digits.len()..int_len {
                s.push('0');
            }
        } else {
            s.push_str(&digits[..int_len]);
            s.push('.');
            s.push_str(&digits[int_len..]);
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_scalars_resolve_like_go_yaml_v3() {
        use Resolved::*;
        for (s, want) in [
            ("", Null),
            ("~", Null),
            ("null", Null),
            ("NULL", Null),
            ("nULL", Str),
            ("true", Bool(true)),
            ("False", Bool(false)),
            ("yes", Str),
            ("on", Str),
            ("0755", Int(493)),
            ("0o17", Int(15)),
            ("0x1F", Int(31)),
            ("-0x1F", Int(-31)),
            ("0b101", Int(5)),
            ("1_000", Int(1000)),
            ("+42", Int(42)),
            ("08", Float(8.0)),
            ("-9223372036854775808", Int(i64::MIN)),
            ("9223372036854775808", Uint(9_223_372_036_854_775_808)),
            ("1.5", Float(1.5)),
            ("5.", Float(5.0)),
            (".5", Float(0.5)),
            ("1e3", Float(1000.0)),
            ("1e400", Str),
            ("1.2.3", Str),
            ("<<", Str),
            ("-", Str),
            ("1:20", Str),
        ] {
            assert_eq!(resolve_plain(s), want, "{s}");
        }
        assert!(matches!(resolve_plain("-99999999999999999999"), Float(_)));
        assert!(matches!(resolve_plain(".inf"), Float(f) if f == f64::INFINITY));
        assert!(matches!(resolve_plain("-.Inf"), Float(f) if f == f64::NEG_INFINITY));
        assert!(matches!(resolve_plain(".NaN"), Float(f) if f.is_nan()));
    }

    #[test]
    fn timestamps() {
        let t = |s| parse_timestamp(s).map(|t| t.to_rfc3339_nano());
        assert_eq!(t("2024-01-01").as_deref(), Some("2024-01-01T00:00:00Z"));
        assert_eq!(t("2024-1-2").as_deref(), Some("2024-01-02T00:00:00Z"));
        assert_eq!(
            t("2001-12-14t21:59:43.10-05:00").as_deref(),
            Some("2001-12-14T21:59:43.1-05:00")
        );
        assert_eq!(
            t("2001-12-15 2:59:43.10").as_deref(),
            Some("2001-12-15T02:59:43.1Z")
        );
        assert_eq!(t("2024-13-01"), None);
        assert_eq!(t("2024-02-30"), None);
        assert_eq!(t("2024-01-01x"), None);
        assert_eq!(t("2024-01-01T10:00:00"), None);
    }

    #[test]
    fn go_g_format() {
        for (f, want) in [
            (1234.56789, "1234.56789"),
            (2.0, "2"),
            (1e6, "1e+06"),
            (100000.0, "100000"),
            (1234568000.0, "1.234568e+09"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (-0.5, "-0.5"),
            (-0.0, "-0"),
            (1.5e-7, "1.5e-07"),
            (6.02e23, "6.02e+23"),
            (1e21, "1e+21"),
            (1e100, "1e+100"),
        ] {
            assert_eq!(format_float(f), want);
        }
    }

    #[test]
    fn yaml11_quoting_helpers() {
        assert!(is_base60_float("1:20"));
        assert!(is_base60_float("190:20:30.15"));
        assert!(!is_base60_float("1:60x"));
        assert!(!is_base60_float("a:1"));
        assert!(is_old_bool("Yes") && !is_old_bool("yES"));
    }
}
