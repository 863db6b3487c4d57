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
    /// A recipient that does not parse. Names where it was given and what it looks like,
    /// never the text itself: a private key pasted where a recipient belongs must not end up
    /// in a terminal, a CI log or a bug report.
    #[error("{location}: {kind}")]
    BadRecipient {
        location: String,
        kind: BadRecipientKind,
    },
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

/// What a string given as a recipient looks like, when it is not one (see
/// [`KeyError::BadRecipient`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadRecipientKind {
    /// An `AGE-SECRET-KEY-…` identity: the private half.
    SecretKey,
    /// An `AGE-PLUGIN-…` identity: private too.
    PluginIdentity,
    /// An SSH public key (`ssh-ed25519 …`, `ssh-rsa …`).
    Ssh,
    /// Starts like a recipient (`age1`) but is not a valid X25519 one: a typo, a truncation,
    /// or a plugin or post-quantum recipient.
    MalformedAge { chars: usize },
    /// Anything else.
    Other { chars: usize },
}

impl std::fmt::Display for BadRecipientKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BadRecipientKind::SecretKey => f.write_str(
                "an age secret key was given as a recipient (not shown). It is private: treat it as \
                 exposed and rotate it (a new key, `credseal updatekeys`, then `credseal rekey`); \
                 recipients are public keys, age1…, as `credseal keygen` prints them",
            ),
            BadRecipientKind::PluginIdentity => f.write_str(
                "an age plugin identity was given as a recipient (not shown). It is private; \
                 recipients are public keys, age1…, and credseal supports X25519 ones only",
            ),
            BadRecipientKind::Ssh => f.write_str(
                "an SSH key is not supported as a recipient; use an X25519 age recipient (age1…)",
            ),
            BadRecipientKind::MalformedAge { chars } => write!(
                f,
                "not a valid X25519 age recipient ({chars} characters starting with age1, \
                 expected 62: check for a typo or a truncation; plugin and post-quantum \
                 recipients are not supported)"
            ),
            BadRecipientKind::Other { chars } => write!(
                f,
                "not an age recipient ({chars} characters; expected age1… as `credseal keygen` \
                 prints it)"
            ),
        }
    }
}

impl BadRecipientKind {
    /// Classifies a string that failed to parse as a recipient, looking only at its shape.
    pub fn of(text: &str) -> BadRecipientKind {
        let upper = text.to_ascii_uppercase();
        let chars = text.chars().count();
        if upper.contains("AGE-SECRET-KEY-") {
            BadRecipientKind::SecretKey
        } else if upper.contains("AGE-PLUGIN-") {
            BadRecipientKind::PluginIdentity
        } else if text.starts_with("ssh-") || text.starts_with("ecdsa-sha2-") {
            BadRecipientKind::Ssh
        } else if upper.starts_with("AGE1") {
            BadRecipientKind::MalformedAge { chars }
        } else {
            BadRecipientKind::Other { chars }
        }
    }
}

/// A validated age recipient, kept as the exact string the user gave (sops compares by it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recipient {
    text: String,
    key: age::x25519::Recipient,
}

impl Recipient {
    pub fn parse(s: &str) -> Result<Recipient, KeyError> {
        Recipient::parse_at(s, || "age recipient".to_owned())
    }

    /// [`Recipient::parse`], naming the place it was given (`location`) in the error.
    fn parse_at(s: &str, location: impl FnOnce() -> String) -> Result<Recipient, KeyError> {
        let text = s.trim();
        let key = age::x25519::Recipient::from_str(text).map_err(|_| KeyError::BadRecipient {
            location: location(),
            kind: BadRecipientKind::of(text),
        })?;
        Ok(Recipient {
            text: text.to_owned(),
            key,
        })
    }

    /// Parses sops' comma-separated form (`--age`, `SOPS_AGE_RECIPIENTS`, a rule's `age:`).
    pub fn parse_list(s: &str) -> Result<Vec<Recipient>, KeyError> {
        Recipient::parse_list_from(s, "recipients")
    }

    /// [`Recipient::parse_list`]; errors say `source_name, recipient N of M`.
    pub fn parse_list_from(s: &str, source_name: &str) -> Result<Vec<Recipient>, KeyError> {
        let items: Vec<&str> = s
            .split(',')
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .collect();
        Recipient::parse_each(&items, source_name)
    }

    /// Parses each item of an already split list; errors say `source_name, recipient N of M`.
    pub fn parse_each(
        items: &[impl AsRef<str>],
        source_name: &str,
    ) -> Result<Vec<Recipient>, KeyError> {
        let count = items.len();
        items
            .iter()
            .enumerate()
            .map(|(i, r)| {
                Recipient::parse_at(r.as_ref(), || {
                    format!("{source_name}, recipient {} of {count}", i + 1)
                })
            })
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

    #[test]
    fn a_secret_key_given_as_recipient_is_never_echoed() {
        let (text, r1) = generate_identity("x");
        let secret = text.expose().lines().last().unwrap().to_owned();
        // The bech32 payload after the `-1` separator.
        let payload = &secret.rsplit_once('-').unwrap().1[1..];
        for list in [
            secret.clone(),
            format!("{r1},{secret}"),
            secret.to_lowercase(),
            text.expose().replace('\n', " "),
        ] {
            let err = Recipient::parse_list_from(&list, "--age").unwrap_err();
            assert!(
                matches!(
                    err,
                    KeyError::BadRecipient {
                        kind: BadRecipientKind::SecretKey,
                        ..
                    }
                ),
                "{err:?}"
            );
            let shown = format!("{err} {err:?}");
            for window in payload.as_bytes().windows(10) {
                let window = std::str::from_utf8(window).unwrap();
                assert!(
                    !shown.to_uppercase().contains(&window.to_uppercase()),
                    "{shown}"
                );
            }
            assert!(shown.contains("--age, recipient"), "{shown}");
            assert!(
                shown.contains("secret key") && shown.contains("rotate"),
                "{shown}"
            );
        }
        let err = Recipient::parse_list_from(&format!("{r1}, {secret}"), "SOPS_AGE_RECIPIENTS")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("SOPS_AGE_RECIPIENTS, recipient 2 of 2: "),
            "{err}"
        );
    }

    #[test]
    fn other_bad_recipients_are_described_not_echoed() {
        let (_, r) = generate_identity("x");
        let kind = |s: &str| match Recipient::parse(s).unwrap_err() {
            KeyError::BadRecipient { kind, .. } => kind,
            e => panic!("{e:?}"),
        };
        assert_eq!(kind(&r[..40]), BadRecipientKind::MalformedAge { chars: 40 });
        assert_eq!(kind("ssh-ed25519 AAAAC3Nza"), BadRecipientKind::Ssh);
        assert_eq!(
            kind(&format!("{}-YUBIKEY-1QQQ", "AGE-PLUGIN")),
            BadRecipientKind::PluginIdentity
        );
        assert_eq!(kind("hunter2"), BadRecipientKind::Other { chars: 7 });
        let shown = Recipient::parse("hunter2").unwrap_err().to_string();
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
