//! Templates that render extra files from Secret values, e.g.
//! `DATABASE_URL=postgresql://{{postgres-credentials/username}}:{{postgres-credentials/password}}@postgres:5432/app`.
//!
//! A placeholder is `{{secret/key}}` (`/` cannot occur in Secret names or keys). In a template
//! that is a URL (`scheme://…`), every value is percent-encoded except RFC 3986 unreserved
//! characters, so a password full of `@:/?#%` cannot break the URL; `{{secret/key | raw}}`
//! inserts the value as is.

use crate::manifest::SecretValues;
use crate::secret::SecretBytes;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TemplateError {
    #[error("template {0:?}: expected NAME=TEMPLATE")]
    Syntax(String),
    #[error("template {name}: unclosed {{{{ at byte {at}")]
    Unclosed { name: String, at: usize },
    #[error(
        "template {name}: placeholder {placeholder:?} must be {{{{secret/key}}}} or {{{{secret/key | raw}}}}"
    )]
    BadPlaceholder { name: String, placeholder: String },
    #[error("template {name}: no Secret {secret:?} with key {key:?} among the rendered files")]
    Missing {
        name: String,
        secret: String,
        key: String,
    },
    #[error("template {name}: {secret}/{key} is not UTF-8 text")]
    NotText {
        name: String,
        secret: String,
        key: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Text(String),
    Value {
        secret: String,
        key: String,
        raw: bool,
    },
}

/// A parsed `--template NAME=TEMPLATE`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    pub name: String,
    parts: Vec<Part>,
    is_url: bool,
}

impl Template {
    pub fn parse(arg: &str) -> Result<Template, TemplateError> {
        let (name, body) = arg
            .split_once('=')
            .ok_or_else(|| TemplateError::Syntax(arg.to_owned()))?;
        if !crate::manifest::valid_key(name) {
            return Err(TemplateError::Syntax(arg.to_owned()));
        }
        let mut parts = Vec::new();
        let mut rest = body;
        let mut offset = 0;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Text(rest[..start].to_owned()));
            }
            let after = &rest[start + 2..];
            let end = after.find("}}").ok_or_else(|| TemplateError::Unclosed {
                name: name.to_owned(),
                at: offset + start,
            })?;
            let inner = after[..end].trim();
            let bad = || TemplateError::BadPlaceholder {
                name: name.to_owned(),
                placeholder: inner.to_owned(),
            };
            let (reference, raw) = match inner.split_once('|') {
                Some((r, f)) if f.trim() == "raw" => (r.trim(), true),
                Some(_) => return Err(bad()),
                None => (inner, false),
            };
            let (secret, key) = reference.split_once('/').ok_or_else(bad)?;
            if secret.is_empty() || key.is_empty() || key.contains('/') {
                return Err(bad());
            }
            parts.push(Part::Value {
                secret: secret.to_owned(),
                key: key.to_owned(),
                raw,
            });
            let consumed = start + 2 + end + 2;
            offset += consumed;
            rest = &rest[consumed..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        let is_url = match parts.first() {
            Some(Part::Text(t)) => t.split_once("://").is_some_and(|(scheme, _)| {
                !scheme.is_empty()
                    && scheme
                        .bytes()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
            }),
            _ => false,
        };
        Ok(Template {
            name: name.to_owned(),
            parts,
            is_url,
        })
    }

    /// Renders with the values of the decrypted Secrets.
    pub fn render(&self, secrets: &[SecretValues]) -> Result<SecretBytes, TemplateError> {
        // Built in the zeroizing buffer from the first byte: it grows without leaving copies.
        let mut out = SecretBytes::with_capacity(256);
        for part in &self.parts {
            match part {
                Part::Text(t) => out.extend_from_slice(t.as_bytes()),
                Part::Value { secret, key, raw } => {
                    let value = secrets
                        .iter()
                        .find(|s| &s.name == secret)
                        .and_then(|s| s.get(key))
                        .ok_or_else(|| TemplateError::Missing {
                            name: self.name.clone(),
                            secret: secret.clone(),
                            key: key.clone(),
                        })?;
                    if std::str::from_utf8(value.expose()).is_err() {
                        return Err(TemplateError::NotText {
                            name: self.name.clone(),
                            secret: secret.clone(),
                            key: key.clone(),
                        });
                    }
                    if self.is_url && !raw {
                        percent_encode(value.expose(), &mut out);
                    } else {
                        out.extend_from_slice(value.expose());
                    }
                }
            }
        }
        Ok(out)
    }
}

/// Everything but RFC 3986 unreserved characters: safe in any URL component.
const NOT_UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes `value` into `out`. The encoder yields slices of the value and static `%XX`
/// triples, so no temporary string ever holds part of the value.
fn percent_encode(value: &[u8], out: &mut SecretBytes) {
    for chunk in percent_encoding::percent_encode(value, NOT_UNRESERVED) {
        out.extend_from_slice(chunk.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(password: &str) -> Vec<SecretValues> {
        vec![SecretValues {
            secret_type: None,
            labels: vec![],
            annotations: vec![],
            name: "db".into(),
            namespace: "ns".into(),
            values: vec![
                ("user".into(), SecretBytes::new(b"app".to_vec())),
                (
                    "password".into(),
                    SecretBytes::new(password.as_bytes().to_vec()),
                ),
            ],
        }]
    }

    #[test]
    fn url_templates_encode_values() {
        let t =
            Template::parse("DATABASE_URL=postgresql://{{db/user}}:{{ db/password }}@pg:5432/app")
                .unwrap();
        let out = t.render(&values("p@ss:w/rd?#%")).unwrap();
        assert_eq!(
            out.expose(),
            b"postgresql://app:p%40ss%3Aw%2Frd%3F%23%25@pg:5432/app"
        );
        let t = Template::parse("PLAIN=user={{db/user}} pass={{db/password}}").unwrap();
        assert_eq!(
            t.render(&values("a@b")).unwrap().expose(),
            b"user=app pass=a@b"
        );
        let t = Template::parse("U=redis://:{{db/password|raw}}@r").unwrap();
        assert_eq!(
            t.render(&values("a@b")).unwrap().expose(),
            b"redis://:a@b@r"
        );
    }

    #[test]
    fn errors_name_the_template() {
        assert!(matches!(
            Template::parse("nameonly"),
            Err(TemplateError::Syntax(_))
        ));
        assert!(matches!(
            Template::parse("X={{db/user"),
            Err(TemplateError::Unclosed { .. })
        ));
        assert!(matches!(
            Template::parse("X={{dbuser}}"),
            Err(TemplateError::BadPlaceholder { .. })
        ));
        let t = Template::parse("X={{db/nope}}").unwrap();
        let e = t.render(&values("pw")).unwrap_err().to_string();
        assert!(
            e.contains("db") && e.contains("nope") && !e.contains("pw"),
            "{e}"
        );
    }
}
