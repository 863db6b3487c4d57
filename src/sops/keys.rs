//! age identities and recipients, and wrapping the data key for them (spec §9.3, §13).

use std::io::Write;
use std::str::FromStr;

use age::armor::{ArmoredReader, ArmoredWriter, Format};
use age::secrecy::ExposeSecret;

use crate::secret::{DataKey, SecretBytes};
use crate::sops::metadata::{AgeEntry, KeyGroup, Metadata};
use crate::sops::shamir;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A line of an identity source is not an age identity. Names the line, never its content.
    #[error(
        "{source_name}, line {line}: not an age identity (expected an X25519 identity as age-keygen writes it)"
    )]
    BadIdentity { source_name: String, line: usize },
    /// Plugin, post-quantum and passphrase-protected identities need features credseal leaves out.
    #[error(
        "{source_name}, line {line}: {kind} identities are not supported by credseal; use an X25519 identity (age-keygen)"
    )]
    UnsupportedIdentity {
        source_name: String,
        line: usize,
        kind: &'static str,
    },
    /// An identity source that is not text. Names the source, never its content.
    #[error("{source_name}: not UTF-8 text (expected an identities file as age-keygen writes it)")]
    NotText { source_name: String },
    #[error("{0:?} is not an age recipient (expected age1…)")]
    BadRecipient(String),
    #[error(
        "no age recipients given: pass --age, set SOPS_AGE_RECIPIENTS, or add a creation rule to .sops.yaml"
    )]
    NoRecipients,
    /// No identity opened any key entry of the file (sops exit 128).
    #[error(
        "no identity could decrypt the data key (tried {identities} identities against recipients {recipients}); set SOPS_AGE_KEY_FILE or SOPS_AGE_KEY to a key for one of them"
    )]
    NoMatchingIdentity {
        identities: usize,
        recipients: String,
    },
    /// Too few Shamir shares could be recovered.
    #[error("recovered {got} of the {need} key-group shares needed to rebuild the data key")]
    NotEnoughShares { got: usize, need: usize },
    #[error("the data key recovered from the file is malformed ({0})")]
    BadDataKey(String),
    #[error(
        "writing several key groups (Shamir sharing) is not supported by credseal; use one group"
    )]
    ShamirWriteUnsupported,
}

/// A set of age identities gathered from every configured source.
#[derive(Default)]
pub struct Keyring {
    identities: Vec<age::x25519::Identity>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keyring({} identities)", self.identities.len())
    }
}

impl Keyring {
    pub fn new() -> Self {
        Keyring::default()
    }

    pub fn len(&self) -> usize {
        self.identities.len()
    }

    pub fn is_empty(&self) -> bool {
        self.identities.is_empty()
    }

    /// Adds every identity of an `age-keygen`-style text (comments and blank lines skipped;
    /// several identities per line allowed, as sops 3.13 reads `SOPS_AGE_KEY`). Any bad line
    /// makes the whole source fail. `source_name` names the source in errors.
    pub fn add_identities(&mut self, text: &str, source_name: &str) -> Result<usize, KeyError> {
        let mut added = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            for word in line.split_whitespace() {
                added.push(parse_identity(word, source_name, i + 1)?);
            }
        }
        let n = added.len();
        self.identities.extend(added);
        Ok(n)
    }

    /// [`Keyring::add_identities`] for a source read as bytes (a key file, a command's output),
    /// checked to be UTF-8 in place: the text is never copied out of its zeroizing buffer.
    pub fn add_identities_bytes(
        &mut self,
        bytes: &[u8],
        source_name: &str,
    ) -> Result<usize, KeyError> {
        let text = std::str::from_utf8(bytes).map_err(|_| KeyError::NotText {
            source_name: source_name.to_owned(),
        })?;
        self.add_identities(text, source_name)
    }

    pub fn push(&mut self, id: age::x25519::Identity) {
        self.identities.push(id);
    }

    /// The recipients (public keys) of the identities in the ring.
    pub fn recipients(&self) -> Vec<String> {
        self.identities
            .iter()
            .map(|i| i.to_public().to_string())
            .collect()
    }

    /// Tries every identity on one armored entry.
    pub fn unwrap(&self, enc: &str) -> Option<SecretBytes> {
        if self.identities.is_empty() {
            return None;
        }
        let decryptor = age::Decryptor::new(ArmoredReader::new(enc.as_bytes())).ok()?;
        let ids = self.identities.iter().map(|i| i as &dyn age::Identity);
        let reader = decryptor.decrypt(ids).ok()?;
        // A data key is 32 bytes; read into a zeroizing buffer from the start.
        SecretBytes::read_from(reader, 32).ok()
    }

    /// Recovers the data key: every entry of every group is tried with every identity; with
    /// several groups, `shamir_threshold` shares are combined (spec §2).
    pub fn data_key(&self, meta: &Metadata) -> Result<DataKey, KeyError> {
        let mut parts: Vec<SecretBytes> = Vec::new();
        for group in &meta.key_groups {
            if let Some(part) = group.age.iter().find_map(|e| self.unwrap(&e.enc)) {
                parts.push(part);
            }
        }
        let key_bytes = if meta.key_groups.len() <= 1 {
            parts.pop().ok_or_else(|| self.no_match(meta))?
        } else {
            let need = match meta.shamir_threshold {
                0 => meta.key_groups.len(),
                t => t as usize,
            };
            if parts.is_empty() {
                return Err(self.no_match(meta));
            }
            if parts.len() < need {
                return Err(KeyError::NotEnoughShares {
                    got: parts.len(),
                    need,
                });
            }
            shamir::combine(&parts).map_err(|e| KeyError::BadDataKey(e.to_string()))?
        };
        let bytes: [u8; 32] = key_bytes
            .expose()
            .try_into()
            .map_err(|_| KeyError::BadDataKey(format!("{} bytes, expected 32", key_bytes.len())))?;
        Ok(DataKey::from_bytes(bytes))
    }

    fn no_match(&self, meta: &Metadata) -> KeyError {
        let recipients: Vec<&str> = meta.age_recipients().collect();
        KeyError::NoMatchingIdentity {
            identities: self.identities.len(),
            recipients: if recipients.is_empty() {
                "(none: the file has no age entries)".into()
            } else {
                recipients.join(", ")
            },
        }
    }
}

fn parse_identity(
    word: &str,
    source_name: &str,
    line: usize,
) -> Result<age::x25519::Identity, KeyError> {
    let unsupported = |kind| KeyError::UnsupportedIdentity {
        source_name: source_name.to_owned(),
        line,
        kind,
    };
    if word.starts_with("AGE-PLUGIN-") {
        return Err(unsupported("plugin"));
    }
    if word.starts_with("AGE-SECRET-KEY-PQ-") {
        return Err(unsupported("post-quantum"));
    }
    if word.starts_with("age-encryption.org") || word.starts_with("-----BEGIN") {
        return Err(unsupported("passphrase-protected"));
    }
    age::x25519::Identity::from_str(word).map_err(|_| KeyError::BadIdentity {
        source_name: source_name.to_owned(),
        line,
    })
}

/// A validated age recipient, kept as the exact string the user gave (sops compares by it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recipient {
    text: String,
    key: age::x25519::Recipient,
}

impl Recipient {
    pub fn parse(s: &str) -> Result<Recipient, KeyError> {
        let text = s.trim();
        let key = age::x25519::Recipient::from_str(text)
            .map_err(|_| KeyError::BadRecipient(text.to_owned()))?;
        Ok(Recipient {
            text: text.to_owned(),
            key,
        })
    }

    /// Parses sops' comma-separated form (`--age`, `SOPS_AGE_RECIPIENTS`, a rule's `age:`).
    pub fn parse_list(s: &str) -> Result<Vec<Recipient>, KeyError> {
        s.split(',')
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(Recipient::parse)
            .collect()
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Wraps `payload` (the data key) as an armored age file for this recipient alone.
    pub fn wrap(&self, payload: &[u8]) -> String {
        let encryptor =
            age::Encryptor::with_recipients(std::iter::once(&self.key as &dyn age::Recipient))
                .expect("one X25519 recipient is always a valid recipient set");
        let mut out = Vec::new();
        let armor =
            ArmoredWriter::wrap_output(&mut out, Format::AsciiArmor).expect("writing to memory");
        let mut w = encryptor.wrap_output(armor).expect("writing to memory");
        w.write_all(payload).expect("writing to memory");
        w.finish()
            .and_then(|armor| armor.finish())
            .expect("writing to memory");
        String::from_utf8(out).expect("armor is ASCII")
    }
}

/// Builds the single key group for `recipients`, wrapping the data key for each (deduplicated,
/// as sops does for creation rules).
pub fn key_group_for(key: &DataKey, recipients: &[Recipient]) -> Result<KeyGroup, KeyError> {
    if recipients.is_empty() {
        return Err(KeyError::NoRecipients);
    }
    let mut group = KeyGroup::default();
    for r in recipients {
        if group.age.iter().any(|e| e.recipient == r.as_str()) {
            continue;
        }
        group.age.push(AgeEntry {
            recipient: r.as_str().to_owned(),
            enc: r.wrap(key.expose()),
        });
    }
    Ok(group)
}

/// Generates a new X25519 identity: (identity file text as `age-keygen` writes it, recipient).
pub fn generate_identity(created: &str) -> (crate::secret::SecretString, String) {
    let id = age::x25519::Identity::generate();
    let recipient = id.to_public().to_string();
    let secret = id.to_string();
    let header = format!("# created: {created}\n# public key: {recipient}\n");
    // Sized up front and filled in place, so the key text is never left in a freed buffer.
    let mut text = crate::secret::SecretString::new(String::with_capacity(
        header.len() + secret.expose_secret().len() + 1,
    ));
    let out = text.expose_mut();
    out.push_str(&header);
    out.push_str(secret.expose_secret());
    out.push('\n');
    (text, recipient)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_then_unwrap() {
        let (text, recipient) = generate_identity("2026-01-01T00:00:00Z");
        let mut ring = Keyring::new();
        assert_eq!(ring.add_identities(text.expose(), "test").unwrap(), 1);
        assert_eq!(ring.recipients(), vec![recipient.clone()]);
        let r = Recipient::parse(&recipient).unwrap();
        let enc = r.wrap(&[9u8; 32]);
        assert!(enc.starts_with("-----BEGIN AGE ENCRYPTED FILE-----\n"));
        assert!(enc.ends_with("-----END AGE ENCRYPTED FILE-----\n"));
        assert_eq!(ring.unwrap(&enc).unwrap().expose(), &[9u8; 32]);
        assert!(Keyring::new().unwrap(&enc).is_none());
    }

    #[test]
    fn bad_identity_lines_are_named_not_shown() {
        let mut ring = Keyring::new();
        // Built at run time so no key-shaped token sits in the source (secret scanners).
        let text = format!("# comment\n\n{}-1NOTVALIDATALLXYZ\n", "AGE-SECRET-KEY");
        let err = ring
            .add_identities(&text, "keys.txt")
            .unwrap_err()
            .to_string();
        assert!(err.contains("keys.txt, line 3"), "{err}");
        assert!(!err.contains("NOTVALID"), "{err}");
        let err = ring
            .add_identities("AGE-PLUGIN-YUBIKEY-1XYZ", "env")
            .unwrap_err()
            .to_string();
        assert!(err.contains("plugin"), "{err}");
    }

    #[test]
    fn recipient_lists_trim_and_skip_empties() {
        let (_, r1) = generate_identity("x");
        let (_, r2) = generate_identity("x");
        let list = Recipient::parse_list(&format!(" {r1} ,\n{r2},,")).unwrap();
        assert_eq!(
            list.iter().map(Recipient::as_str).collect::<Vec<_>>(),
            vec![r1.as_str(), r2.as_str()]
        );
        assert!(Recipient::parse_list("age1nope").is_err());
    }
}
