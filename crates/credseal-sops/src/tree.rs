//! The in-memory SOPS tree: ordered mappings, sequences, typed scalar leaves and comments.
//!
//! Every store (YAML, JSON, dotenv, binary) parses into this and emits from it; the cipher walk
//! and the MAC run over it. It mirrors sops' `TreeBranch`/`TreeItem` model (docs/sops-format.md §1, §7):
//! comments are entries of the collection that holds them, placed before the entry they belong to.

use std::fmt;

use crate::secret::SecretString;

/// The deepest nesting of mappings and sequences that any store reads or builds (a document's
/// top level is depth 1). Go's `encoding/json` and go-yaml stop at 10,000; credseal stops
/// sooner because its walks and emitters recurse once per level, and real files stay below 20
/// levels: at 512 every recursion fits in a 2 MiB thread stack, even in a debug build.
pub const MAX_DEPTH: usize = 512;

/// One file: a YAML stream has one or more documents, every other store exactly one.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tree {
    pub documents: Vec<Map>,
}

/// An ordered mapping (also a document's top level).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Map {
    pub items: Vec<MapItem>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum MapItem {
    Pair(String, Node),
    Comment(Comment),
}

/// An ordered sequence.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Seq {
    pub items: Vec<SeqItem>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum SeqItem {
    Node(Node),
    Comment(Comment),
}

/// A YAML comment: the text after the `#` (the leading space, if any, is part of it).
///
/// `inline` marks a comment that stood after a value on the same line; sops 3.13+ writes it back
/// there, older releases (and `inline = false`) on a line of its own before the entry.
#[derive(Clone, PartialEq)]
pub struct Comment {
    pub text: SecretString,
    pub inline: bool,
}

impl fmt::Debug for Comment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Comment")
            .field("inline", &self.inline)
            .finish_non_exhaustive()
    }
}

/// A value in the tree. Strings hold plaintext once decrypted, so they are secret types.
#[derive(Clone, PartialEq)]
pub enum Node {
    Null,
    Str(SecretString),
    Int(i64),
    Float(f64),
    Bool(bool),
    Time(Timestamp),
    Map(Map),
    Seq(Seq),
}

impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Scalars may be plaintext secrets: show only their type.
        match self {
            Node::Null => f.write_str("Null"),
            Node::Str(_) => f.write_str("Str(..)"),
            Node::Int(_) => f.write_str("Int(..)"),
            Node::Float(_) => f.write_str("Float(..)"),
            Node::Bool(_) => f.write_str("Bool(..)"),
            Node::Time(_) => f.write_str("Time(..)"),
            Node::Map(m) => f.debug_tuple("Map").field(m).finish(),
            Node::Seq(s) => f.debug_tuple("Seq").field(s).finish(),
        }
    }
}

impl Node {
    pub fn str(s: impl Into<String>) -> Node {
        Node::Str(SecretString::new(s.into()))
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Node::Str(s) => Some(s.expose()),
            _ => None,
        }
    }

    /// Levels of mappings and sequences in this value: 0 for a scalar.
    pub fn depth(&self) -> usize {
        match self {
            Node::Map(m) => 1 + m.pairs().map(|(_, v)| v.depth()).max().unwrap_or(0),
            Node::Seq(s) => 1 + s.nodes().map(Node::depth).max().unwrap_or(0),
            _ => 0,
        }
    }

    pub fn as_map(&self) -> Option<&Map> {
        match self {
            Node::Map(m) => Some(m),
            _ => None,
        }
    }

    /// The value as JSON data (comments dropped), for typed deserialisation of plans and
    /// Kubernetes objects read with the YAML store. Exposes plaintext: for non-secret data.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match self {
            Node::Null => Value::Null,
            Node::Str(s) => Value::String(s.expose().to_owned()),
            Node::Int(i) => Value::from(*i),
            Node::Float(f) => Value::from(*f),
            Node::Bool(b) => Value::Bool(*b),
            Node::Time(t) => Value::String(t.to_rfc3339_nano()),
            Node::Map(m) => Value::Object(
                m.pairs()
                    .map(|(k, v)| (k.to_owned(), v.to_json()))
                    .collect(),
            ),
            Node::Seq(s) => Value::Array(s.nodes().map(Node::to_json).collect()),
        }
    }
}

impl Map {
    pub fn new() -> Self {
        Map { items: Vec::new() }
    }

    /// The value of the first pair with this key.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.items.iter().find_map(|item| match item {
            MapItem::Pair(k, v) if k == key => Some(v),
            _ => None,
        })
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut Node> {
        self.items.iter_mut().find_map(|item| match item {
            MapItem::Pair(k, v) if k == key => Some(v),
            _ => None,
        })
    }

    /// Removes the first pair with this key and returns its value.
    pub fn remove(&mut self, key: &str) -> Option<Node> {
        let pos = self
            .items
            .iter()
            .position(|item| matches!(item, MapItem::Pair(k, _) if k == key))?;
        match self.items.remove(pos) {
            MapItem::Pair(_, v) => Some(v),
            MapItem::Comment(_) => unreachable!("position matched a pair"),
        }
    }

    pub fn insert(&mut self, key: impl Into<String>, value: Node) {
        self.items.push(MapItem::Pair(key.into(), value));
    }

    pub fn pairs(&self) -> impl Iterator<Item = (&str, &Node)> {
        self.items.iter().filter_map(|item| match item {
            MapItem::Pair(k, v) => Some((k.as_str(), v)),
            MapItem::Comment(_) => None,
        })
    }
}

impl Seq {
    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.items.iter().filter_map(|item| match item {
            SeqItem::Node(n) => Some(n),
            SeqItem::Comment(_) => None,
        })
    }
}

/// A point in time as go-yaml v3 and Go's `time` package see it: a civil date and time with a
/// fixed UTC offset. Kept as fields so it round-trips exactly (docs/sops-format.md §5 `time`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timestamp {
    pub year: i32,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    pub nanos: u32,
    /// Offset east of UTC in seconds; 0 is written `Z`.
    pub offset_secs: i32,
}

impl Timestamp {
    /// Go's `time.RFC3339Nano` (`MarshalText`): fraction without trailing zeros, `Z` for UTC.
    pub fn to_rfc3339_nano(&self) -> String {
        let mut s = format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        );
        if self.nanos != 0 {
            let frac = format!("{:09}", self.nanos);
            s.push('.');
            s.push_str(frac.trim_end_matches('0'));
        }
        push_offset(&mut s, self.offset_secs);
        s
    }

    /// Go's `time.RFC3339` (whole seconds): the form of sops' `lastmodified` and MAC AAD.
    pub fn to_rfc3339(&self) -> String {
        let mut s = format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        );
        push_offset(&mut s, self.offset_secs);
        s
    }

    /// Parses RFC 3339 (`T` or `t`, optional fraction, `Z`/`z` or `±hh:mm`), as Go's
    /// `time.Parse(time.RFC3339Nano, …)` accepts it.
    pub fn parse_rfc3339(s: &str) -> Option<Timestamp> {
        let b = s.as_bytes();
        if b.len() < 20 {
            return None;
        }
        let num = |r: std::ops::Range<usize>| -> Option<u32> {
            let part = s.get(r)?;
            if part.bytes().all(|c| c.is_ascii_digit()) {
                part.parse().ok()
            } else {
                None
            }
        };
        if b[4] != b'-'
            || b[7] != b'-'
            || !matches!(b[10], b'T' | b't')
            || b[13] != b':'
            || b[16] != b':'
        {
            return None;
        }
        let year = num(0..4)? as i32;
        let month = num(5..7)? as u8;
        let day = num(8..10)? as u8;
        let hour = num(11..13)? as u8;
        let minute = num(14..16)? as u8;
        let second = num(17..19)? as u8;
        let mut i = 19;
        let mut nanos = 0u32;
        if b.get(i) == Some(&b'.') {
            let start = i + 1;
            let mut end = start;
            while end < b.len() && b[end].is_ascii_digit() {
                end += 1;
            }
            if end == start || end - start > 9 {
                return None;
            }
            let digits = &s[start..end];
            nanos = digits.parse::<u32>().ok()? * 10u32.pow(9 - digits.len() as u32);
            i = end;
        }
        let offset_secs = match b.get(i)? {
            b'Z' | b'z' if i + 1 == b.len() => 0,
            b'+' | b'-' if i + 6 == b.len() && b[i + 3] == b':' => {
                let h = num(i + 1..i + 3)? as i32;
                let m = num(i + 4..i + 6)? as i32;
                let sign = if b[i] == b'-' { -1 } else { 1 };
                sign * (h * 3600 + m * 60)
            }
            _ => return None,
        };
        let ts = Timestamp {
            year,
            month,
            day,
            hour,
            minute,
            second,
            nanos,
            offset_secs,
        };
        ts.is_valid().then_some(ts)
    }

    /// Seconds since the Unix epoch (the inverse of `from_unix`; nanoseconds dropped).
    pub fn unix(&self) -> i64 {
        // Howard Hinnant's days_from_civil.
        let (y, m, d) = (self.year as i64, self.month as i64, self.day as i64);
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let mp = (m + 9) % 12;
        let doy = (153 * mp + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        days * 86_400 + self.hour as i64 * 3600 + self.minute as i64 * 60 + self.second as i64
            - self.offset_secs as i64
    }

    /// A UTC time from seconds since the Unix epoch (whole seconds, as sops' `lastmodified`).
    pub fn from_unix(secs: i64) -> Timestamp {
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        // Howard Hinnant's civil_from_days.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
        let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
        Timestamp {
            year,
            month,
            day,
            hour: (rem / 3600) as u8,
            minute: ((rem / 60) % 60) as u8,
            second: (rem % 60) as u8,
            nanos: 0,
            offset_secs: 0,
        }
    }

    /// Whether the civil fields name a real date and time.
    pub fn is_valid(&self) -> bool {
        let leap = (self.year % 4 == 0 && self.year % 100 != 0) || self.year % 400 == 0;
        let days = match self.month {
            1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
            4 | 6 | 9 | 11 => 30,
            2 if leap => 29,
            2 => 28,
            _ => return false,
        };
        (1..=days).contains(&self.day) && self.hour < 24 && self.minute < 60 && self.second < 60
    }
}

fn push_offset(s: &mut String, offset_secs: i32) {
    if offset_secs == 0 {
        s.push('Z');
    } else {
        let sign = if offset_secs < 0 { '-' } else { '+' };
        let abs = offset_secs.unsigned_abs();
        s.push_str(&format!("{sign}{:02}:{:02}", abs / 3600, (abs / 60) % 60));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_inverts_from_unix() {
        for s in [0i64, 1_700_000_000, 951_782_400, 4_102_444_800] {
            assert_eq!(Timestamp::from_unix(s).unix(), s);
        }
        let offset = Timestamp::parse_rfc3339("2006-01-02T15:04:05+07:00").unwrap();
        assert_eq!(offset.unix(), 1_136_189_045);
    }

    #[test]
    fn rfc3339_round_trips_go_forms() {
        for s in [
            "2024-01-01T00:00:00Z",
            "2006-01-02T15:04:05+07:06",
            "2024-11-12T13:33:42.5Z",
            "2001-12-14T21:59:43.1-05:00",
        ] {
            assert_eq!(Timestamp::parse_rfc3339(s).unwrap().to_rfc3339_nano(), s);
        }
        let t = Timestamp::parse_rfc3339("2024-11-12T13:33:42.123456789+00:00").unwrap();
        assert_eq!(t.to_rfc3339(), "2024-11-12T13:33:42Z");
        assert!(Timestamp::parse_rfc3339("2024-02-30T00:00:00Z").is_none());
        assert!(Timestamp::parse_rfc3339("2024-01-01 00:00:00Z").is_none());
    }

    #[test]
    fn unix_to_civil() {
        assert_eq!(Timestamp::from_unix(0).to_rfc3339(), "1970-01-01T00:00:00Z");
        assert_eq!(
            Timestamp::from_unix(1_731_418_422).to_rfc3339(),
            "2024-11-12T13:33:42Z"
        );
        assert_eq!(
            Timestamp::from_unix(951_782_400).to_rfc3339(),
            "2000-02-29T00:00:00Z"
        );
    }

    #[test]
    fn debug_hides_scalars() {
        let n = Node::Map(Map {
            items: vec![MapItem::Pair("password".into(), Node::str("hunter2"))],
        });
        let d = format!("{n:?}");
        assert!(d.contains("password") && !d.contains("hunter2"), "{d}");
    }
}
