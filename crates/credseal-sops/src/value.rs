//! Leaf values to the bytes sops encrypts and hashes, and back (docs/sops-format.md §5).

use crate::cipher::ValueType;
use crate::secret::{SecretBytes, SecretString};
use crate::tree::{Node, Timestamp};

/// Why decrypted bytes do not make a value of their `type:`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ValueError {
    /// The plaintext is not a valid value of the type named in `ENC[…]`.
    #[error("decrypted bytes are not a valid {0} value")]
    BadValue(&'static str),
}

/// Go `strconv.FormatFloat(f, 'f', -1, 64)`: shortest round-trip decimal, never an exponent.
pub fn format_float_f(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f.is_infinite() {
        if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        // Rust's `Display` for f64 is the shortest round-trip form without an exponent.
        format!("{f}")
    }
}

/// The serialised plaintext and type of a leaf; `None` for nulls and collections.
pub fn to_bytes(node: &Node) -> Option<(SecretBytes, ValueType)> {
    Some(match node {
        Node::Str(s) => (
            SecretBytes::new(s.expose().as_bytes().to_vec()),
            ValueType::Str,
        ),
        Node::Int(i) => (SecretBytes::new(i.to_string().into_bytes()), ValueType::Int),
        Node::Float(f) => (
            SecretBytes::new(format_float_f(*f).into_bytes()),
            ValueType::Float,
        ),
        Node::Bool(b) => (
            SecretBytes::new(if *b {
                b"True".to_vec()
            } else {
                b"False".to_vec()
            }),
            ValueType::Bool,
        ),
        Node::Time(t) => (
            SecretBytes::new(t.to_rfc3339_nano().into_bytes()),
            ValueType::Time,
        ),
        Node::Null | Node::Map(_) | Node::Seq(_) => return None,
    })
}

/// Parses decrypted bytes back into a leaf of the given type, as sops' `aes.Decrypt` does.
pub fn from_bytes(bytes: SecretBytes, value_type: ValueType) -> Result<Node, ValueError> {
    let text = || {
        std::str::from_utf8(bytes.expose()).map_err(|_| ValueError::BadValue(value_type.as_str()))
    };
    Ok(match value_type {
        ValueType::Str | ValueType::Bytes | ValueType::Comment => {
            // `bytes` was never written by a released sops; read it as a string like sops does.
            Node::Str(SecretString::new(text()?.to_owned()))
        }
        ValueType::Int => Node::Int(parse_go_atoi(text()?).ok_or(ValueError::BadValue("int"))?),
        ValueType::Float => {
            Node::Float(parse_go_float(text()?).ok_or(ValueError::BadValue("float"))?)
        }
        ValueType::Bool => Node::Bool(parse_go_bool(text()?).ok_or(ValueError::BadValue("bool"))?),
        ValueType::Time => {
            Node::Time(Timestamp::parse_rfc3339(text()?).ok_or(ValueError::BadValue("time"))?)
        }
    })
}

/// Go `strconv.Atoi`: optional sign, decimal digits.
fn parse_go_atoi(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    s.strip_prefix('+').unwrap_or(s).parse().ok()
}

/// Go `strconv.ParseFloat` for the forms sops writes (decimal, `+Inf`, `-Inf`, `NaN`).
fn parse_go_float(s: &str) -> Option<f64> {
    let cleaned = s.replace('_', "");
    match cleaned.to_ascii_lowercase().as_str() {
        "inf" | "+inf" | "infinity" | "+infinity" => Some(f64::INFINITY),
        "-inf" | "-infinity" => Some(f64::NEG_INFINITY),
        "nan" => Some(f64::NAN),
        _ => cleaned.parse().ok(),
    }
}

/// Go `strconv.ParseBool`.
fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_follow_go_f_format() {
        for (f, s) in [
            (1234.56789, "1234.56789"),
            (2.0, "2"),
            (25.4, "25.4"),
            (1e21, "1000000000000000000000"),
            (1e-7, "0.0000001"),
            (1234568000.0, "1234568000"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
        ] {
            assert_eq!(format_float_f(f), s);
        }
        assert_eq!(format_float_f(f64::NAN), "NaN");
    }

    #[test]
    fn bytes_round_trip_per_type() {
        for node in [
            Node::str("x"),
            Node::Int(-42),
            Node::Float(25.4),
            Node::Bool(true),
            Node::Bool(false),
            Node::Time(Timestamp::parse_rfc3339("2024-01-01T00:00:00Z").unwrap()),
        ] {
            let (bytes, ty) = to_bytes(&node).unwrap();
            assert_eq!(from_bytes(bytes, ty).unwrap(), node);
        }
        assert_eq!(to_bytes(&Node::Bool(true)).unwrap().0.expose(), b"True");
        assert_eq!(
            from_bytes(SecretBytes::new(b"+7".to_vec()), ValueType::Int).unwrap(),
            Node::Int(7)
        );
        assert!(from_bytes(SecretBytes::new(b"yes".to_vec()), ValueType::Bool).is_err());
    }
}
