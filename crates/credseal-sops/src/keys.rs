//! age identities and recipients, and wrapping the data key for them (docs/sops-format.md §9.3, §13):
//! X25519 always; SSH keys (`ssh` feature) and age plugins (`plugin` feature) as sops 3.10+
//! takes them.

use std::io::Write;
use std::str::FromStr;

use age::armor::{ArmoredReader, ArmoredWriter, Format};
use age::secrecy::ExposeSecret;

use crate::metadata::{AgeEntry, KeyGroup, Metadata};
use crate::secret::{DataKey, SecretBytes};
use crate::shamir;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A line of an identity source is not an age identity. Names the line, never its content.
    #[error(
        "{source_name}, line {line}: not an age identity (expected an X25519 identity as age-keygen writes it{PLUGIN_IDENTITY_HINT})"
    )]
    BadIdentity { source_name: String, line: usize },
    /// Post-quantum and passphrase-protected identities (and plugin identities in a build
    /// without the `plugin` feature) need features credseal leaves out.
    #[error("{source_name}, line {line}: {kind} identities are not supported by credseal{hint}")]
    UnsupportedIdentity {
        source_name: String,
        line: usize,
        kind: &'static str,
        hint: &'static str,
    },
    /// An identity source that is not text. Names the source, never its content.
    #[error("{source_name}: not UTF-8 text (expected an identities file as age-keygen writes it)")]
    NotText { source_name: String },
    /// An SSH private key file that credseal cannot use. Names the file, never its content.
    #[error("{source_name}: {problem}")]
    SshIdentity {
        source_name: String,
        problem: SshKeyProblem,
    },
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
    /// The data key could not be wrapped for a recipient: an age plugin that is missing,
    /// failed, or asked for input. (Recipients are public: the recipient is named.)
    #[error("cannot wrap the data key for {recipient}: {problem}")]
    Wrap { recipient: String, problem: String },
    /// No identity opened any key entry of the file (sops exit 128). Key sources that could
    /// not be used are listed here, and only here: one that fails is no error while another
    /// opens the file, as in sops.
    #[error(
        "no identity could decrypt the data key (tried {identities} identities against recipients {recipients}); set SOPS_AGE_KEY_FILE, SOPS_AGE_KEY or SOPS_AGE_SSH_PRIVATE_KEY_FILE to a key for one of them{}",
        Problems(problems)
    )]
    NoMatchingIdentity {
        identities: usize,
        recipients: String,
        /// Each key source that failed and each plugin that failed, with its problem.
        problems: Vec<String>,
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

#[cfg(feature = "plugin")]
const PLUGIN_IDENTITY_HINT: &str = ", or an AGE-PLUGIN-… identity";
#[cfg(not(feature = "plugin"))]
const PLUGIN_IDENTITY_HINT: &str = "";

/// The "problems" tail of [`KeyError::NoMatchingIdentity`].
struct Problems<'a>(&'a [String]);

impl std::fmt::Display for Problems<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            return Ok(());
        }
        f.write_str(". Key sources that could not be used: ")?;
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            f.write_str(p)?;
        }
        Ok(())
    }
}

/// Why an SSH private key file cannot be used (see [`KeyError::SshIdentity`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SshKeyProblem {
    /// The key is passphrase-protected: credseal never prompts.
    Encrypted,
    /// A key type age cannot decrypt with (ECDSA, DSA, a hardware security key).
    UnsupportedType(String),
    /// Not an OpenSSH or PEM private key age can read.
    Invalid,
    /// This build has no `ssh` feature.
    NotBuilt,
}

impl std::fmt::Display for SshKeyProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SshKeyProblem::Encrypted => f.write_str(
                "the SSH key is passphrase-protected, and credseal never prompts for a passphrase; \
                 decrypt with an age identity, or with sops (which prompts)",
            ),
            SshKeyProblem::UnsupportedType(kind) => write!(
                f,
                "SSH keys of type {kind} cannot decrypt age files; use an ssh-ed25519 or ssh-rsa key"
            ),
            SshKeyProblem::Invalid => f.write_str(
                "not an SSH private key (expected an ssh-ed25519 or ssh-rsa key as ssh-keygen writes it)",
            ),
            SshKeyProblem::NotBuilt => f.write_str(
                "SSH identities need credseal built with the `ssh` feature (the default build has it)",
            ),
        }
    }
}

/// One identity, and the source it came from (named in plugin failures).
enum IdentityKey {
    X25519(age::x25519::Identity),
    #[cfg(feature = "ssh")]
    Ssh(age::ssh::Identity),
    #[cfg(feature = "plugin")]
    Plugin(age::plugin::Identity),
}

/// A set of age identities gathered from every configured source, and the sources that
/// failed (reported only when no identity opens a file, as sops does).
#[derive(Default)]
pub struct Keyring {
    identities: Vec<(IdentityKey, String)>,
    broken: Vec<String>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Keyring({} identities, {} broken sources)",
            self.identities.len(),
            self.broken.len()
        )
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
                let id = parse_identity(word, source_name, i + 1)?;
                added.push((id, format!("{source_name}, line {}", i + 1)));
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

    /// Adds the SSH private key in `bytes` (an OpenSSH or PEM file, as ssh-keygen writes it)
    /// as an identity. Passphrase-protected keys are refused: credseal never prompts.
    pub fn add_ssh_identity(&mut self, bytes: &[u8], source_name: &str) -> Result<(), KeyError> {
        let problem = |problem| KeyError::SshIdentity {
            source_name: source_name.to_owned(),
            problem,
        };
        #[cfg(feature = "ssh")]
        {
            use age::ssh::{Identity, UnsupportedKey};
            let id = Identity::from_buffer(bytes, Some(source_name.to_owned()))
                .map_err(|_| problem(SshKeyProblem::Invalid))?;
            match id {
                Identity::Unencrypted(_) => {
                    self.identities
                        .push((IdentityKey::Ssh(id), source_name.to_owned()));
                    Ok(())
                }
                Identity::Encrypted(_)
                | Identity::Unsupported(UnsupportedKey::EncryptedPem)
                | Identity::Unsupported(UnsupportedKey::EncryptedSsh(_)) => {
                    Err(problem(SshKeyProblem::Encrypted))
                }
                Identity::Unsupported(
                    UnsupportedKey::Hardware(kind) | UnsupportedKey::Type(kind),
                ) => Err(problem(SshKeyProblem::UnsupportedType(kind))),
            }
        }
        #[cfg(not(feature = "ssh"))]
        {
            let _ = bytes;
            Err(problem(SshKeyProblem::NotBuilt))
        }
    }

    pub fn push(&mut self, id: age::x25519::Identity) {
        self.identities
            .push((IdentityKey::X25519(id), "identity".to_owned()));
    }

    /// Remembers a key source that could not be used (`what`: the source and its problem,
    /// never key material). It is reported only if no identity opens a file.
    pub fn add_broken_source(&mut self, what: String) {
        self.broken.push(what);
    }

    /// The key sources that could not be used, as given to [`Keyring::add_broken_source`].
    pub fn broken_sources(&self) -> &[String] {
        &self.broken
    }

    /// The recipients (public keys) of the X25519 and SSH identities in the ring (plugin
    /// identities do not say theirs).
    // A build without `ssh` and `plugin` has one key type: the match has one arm there.
    #[cfg_attr(
        not(any(feature = "ssh", feature = "plugin")),
        allow(clippy::unnecessary_filter_map)
    )]
    pub fn recipients(&self) -> Vec<String> {
        self.identities
            .iter()
            .filter_map(|(id, _)| match id {
                IdentityKey::X25519(i) => Some(i.to_public().to_string()),
                #[cfg(feature = "ssh")]
                IdentityKey::Ssh(i) => age::ssh::Recipient::try_from(i.clone())
                    .ok()
                    .map(|r| r.to_string()),
                #[cfg(feature = "plugin")]
                IdentityKey::Plugin(_) => None,
            })
            .collect()
    }

    /// Tries every identity on one armored entry.
    pub fn unwrap(&self, enc: &str) -> Option<SecretBytes> {
        let mut problems = Vec::new();
        self.unwrap_local(enc)
            .or_else(|| self.unwrap_plugins(enc, &mut problems))
    }

    /// The X25519 and SSH identities, each on its own: one that fails on an entry (a
    /// malformed stanza) does not keep the others from trying.
    #[cfg_attr(
        not(any(feature = "ssh", feature = "plugin")),
        allow(clippy::infallible_destructuring_match)
    )]
    fn unwrap_local(&self, enc: &str) -> Option<SecretBytes> {
        self.identities.iter().find_map(|(id, _)| {
            let id: &dyn age::Identity = match id {
                IdentityKey::X25519(i) => i,
                #[cfg(feature = "ssh")]
                IdentityKey::Ssh(i) => i,
                #[cfg(feature = "plugin")]
                IdentityKey::Plugin(_) => return None,
            };
            decrypt_entry(enc, id).ok()
        })
    }

    /// The plugin identities, one plugin run per plugin name; a plugin that is missing or
    /// fails is recorded in `problems` (deduplicated) and the next one tried.
    #[cfg(feature = "plugin")]
    fn unwrap_plugins(&self, enc: &str, problems: &mut Vec<String>) -> Option<SecretBytes> {
        let mut names: Vec<&str> = Vec::new();
        let mut ids: Vec<age::plugin::Identity> = Vec::new();
        let mut sources: Vec<&str> = Vec::new();
        for (id, source) in &self.identities {
            if let IdentityKey::Plugin(p) = id {
                if !names.contains(&p.plugin()) {
                    names.push(p.plugin());
                }
                ids.push(p.clone());
                sources.push(source);
            }
        }
        for name in names {
            let from: Vec<&str> = ids
                .iter()
                .zip(&sources)
                .filter(|(i, _)| i.plugin() == name)
                .map(|(_, s)| *s)
                .collect();
            let callbacks = plugin_ui::NonInteractive::default();
            let result = age::plugin::IdentityPluginV1::new(name, &ids, callbacks.clone())
                .map_err(|e| one_line(&e))
                .and_then(|plugin| match decrypt_entry(enc, &plugin) {
                    Ok(key) => Ok(Some(key)),
                    Err(age::DecryptError::NoMatchingKeys) if !callbacks.asked() => Ok(None),
                    Err(e) => Err(one_line(&e)),
                });
            match result {
                Ok(Some(key)) => return Some(key),
                Ok(None) => {}
                Err(e) => {
                    let problem = format!(
                        "age plugin {name} (identity from {}): {}{}",
                        from.join(", "),
                        e,
                        callbacks.report()
                    );
                    if !problems.contains(&problem) {
                        problems.push(problem);
                    }
                }
            }
        }
        None
    }

    #[cfg(not(feature = "plugin"))]
    fn unwrap_plugins(&self, _enc: &str, _problems: &mut Vec<String>) -> Option<SecretBytes> {
        None
    }

    /// Recovers the data key: every entry of every group is tried with every identity (the
    /// X25519 and SSH ones on every entry first, then the plugins, so no plugin is started
    /// when a local key opens the file); with several groups, `shamir_threshold` shares are
    /// combined (docs/sops-format.md §2).
    pub fn data_key(&self, meta: &Metadata) -> Result<DataKey, KeyError> {
        let mut parts: Vec<SecretBytes> = Vec::new();
        let mut problems = Vec::new();
        for group in &meta.key_groups {
            let part = group
                .age
                .iter()
                .find_map(|e| self.unwrap_local(&e.enc))
                .or_else(|| {
                    group
                        .age
                        .iter()
                        .find_map(|e| self.unwrap_plugins(&e.enc, &mut problems))
                });
            if let Some(part) = part {
                parts.push(part);
            }
        }
        let key_bytes = if meta.key_groups.len() <= 1 {
            parts.pop().ok_or_else(|| self.no_match(meta, problems))?
        } else {
            let need = match meta.shamir_threshold {
                0 => meta.key_groups.len(),
                t => t as usize,
            };
            if parts.is_empty() {
                return Err(self.no_match(meta, problems));
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

    fn no_match(&self, meta: &Metadata, plugin_problems: Vec<String>) -> KeyError {
        let recipients: Vec<&str> = meta.age_recipients().collect();
        let mut problems = self.broken.clone();
        problems.extend(plugin_problems);
        KeyError::NoMatchingIdentity {
            identities: self.identities.len(),
            recipients: if recipients.is_empty() {
                "(none: the file has no age entries)".into()
            } else {
                recipients.join(", ")
            },
            problems,
        }
    }
}

/// age's message as one plain line: its localized messages wrap arguments in Unicode
/// isolation marks and span lines, which a one-line error list cannot show.
fn one_line(e: &dyn std::fmt::Display) -> String {
    let text: String = e
        .to_string()
        .chars()
        .filter(|c| !matches!(c, '\u{2068}' | '\u{2069}'))
        .collect();
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Opens one armored entry with one identity (or one plugin): the 32-byte data key (or a
/// 33-byte share), read into a zeroizing buffer from the start.
fn decrypt_entry(enc: &str, id: &dyn age::Identity) -> Result<SecretBytes, age::DecryptError> {
    let decryptor = age::Decryptor::new(ArmoredReader::new(enc.as_bytes()))?;
    let reader = decryptor.decrypt(std::iter::once(id))?;
    Ok(SecretBytes::read_from(reader, 32)?)
}

fn parse_identity(word: &str, source_name: &str, line: usize) -> Result<IdentityKey, KeyError> {
    let unsupported = |kind, hint| KeyError::UnsupportedIdentity {
        source_name: source_name.to_owned(),
        line,
        kind,
        hint,
    };
    let bad = || KeyError::BadIdentity {
        source_name: source_name.to_owned(),
        line,
    };
    if word.starts_with("AGE-PLUGIN-") {
        #[cfg(feature = "plugin")]
        return age::plugin::Identity::from_str(word)
            .map(IdentityKey::Plugin)
            .map_err(|_| bad());
        #[cfg(not(feature = "plugin"))]
        return Err(unsupported(
            "plugin",
            " built without the `plugin` feature (the default build has it)",
        ));
    }
    if word.starts_with("AGE-SECRET-KEY-PQ-") {
        return Err(unsupported(
            "post-quantum",
            "; use an X25519 identity (age-keygen)",
        ));
    }
    if word.starts_with("age-encryption.org") || word.starts_with("-----BEGIN") {
        return Err(unsupported(
            "passphrase-protected",
            "; use an X25519 identity (age-keygen)",
        ));
    }
    age::x25519::Identity::from_str(word)
        .map(IdentityKey::X25519)
        .map_err(|_| bad())
}

/// The callbacks handed to age plugins: credseal runs without a terminal (CI, pods), so
/// every request for input is refused, and remembered to say why a plugin failed.
#[cfg(feature = "plugin")]
mod plugin_ui {
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    pub struct NonInteractive {
        /// What the plugin asked for or said (its own prompts: no key material).
        said: Arc<Mutex<Vec<String>>>,
        asked: Arc<Mutex<bool>>,
    }

    impl NonInteractive {
        fn note(&self, what: String, asking: bool) {
            if let Ok(mut said) = self.said.lock() {
                said.push(what);
            }
            if asking {
                if let Ok(mut asked) = self.asked.lock() {
                    *asked = true;
                }
            }
        }

        /// Whether the plugin asked for input (and was refused).
        pub fn asked(&self) -> bool {
            self.asked.lock().map(|a| *a).unwrap_or(false)
        }

        /// What the plugin said and asked, for an error message ("" if nothing).
        pub fn report(&self) -> String {
            let said = self.said.lock().map(|s| s.clone()).unwrap_or_default();
            if said.is_empty() {
                return String::new();
            }
            let refused = if self.asked() {
                " credseal never prompts (no terminal in CI or a pod): use an identity or plugin \
                 setting that needs no input."
            } else {
                ""
            };
            format!(" (the plugin said: {}.{refused})", said.join("; "))
        }
    }

    impl age::Callbacks for NonInteractive {
        fn display_message(&self, message: &str) {
            self.note(message.trim().to_owned(), false);
        }

        fn confirm(&self, message: &str, _yes: &str, _no: Option<&str>) -> Option<bool> {
            self.note(format!("asked to confirm \"{}\"", message.trim()), true);
            None
        }

        fn request_public_string(&self, description: &str) -> Option<String> {
            self.note(format!("asked for input \"{}\"", description.trim()), true);
            None
        }

        fn request_passphrase(&self, description: &str) -> Option<age::secrecy::SecretString> {
            self.note(
                format!("asked for a secret \"{}\"", description.trim()),
                true,
            );
            None
        }
    }
}

/// What a string given as a recipient looks like, when it is not one (see
/// [`KeyError::BadRecipient`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadRecipientKind {
    /// An `AGE-SECRET-KEY-…` identity: the private half.
    SecretKey,
    /// An `AGE-PLUGIN-…` identity: private too.
    PluginIdentity,
    /// An SSH public key that is not usable: not ed25519 or RSA of 2048 bits or more, or
    /// malformed (or any SSH key, in a build without the `ssh` feature).
    Ssh,
    /// Starts like a recipient (`age1`) but is not a valid one: a typo, a truncation, or (in a
    /// build without the `plugin` feature) a plugin recipient.
    MalformedAge { chars: usize },
    /// Anything else.
    Other { chars: usize },
}

#[cfg(feature = "ssh")]
const SSH_RECIPIENT_PROBLEM: &str = "not a usable SSH public key (credseal takes ssh-ed25519 and \
     ssh-rsa keys of 2048 bits or more, one line as in a .pub file)";
#[cfg(not(feature = "ssh"))]
const SSH_RECIPIENT_PROBLEM: &str = "an SSH key as a recipient needs credseal built with the \
     `ssh` feature (the default build has it); or use an X25519 age recipient (age1…)";

#[cfg(feature = "plugin")]
const MALFORMED_AGE_HINT: &str = "X25519 recipients are 62 characters, plugin recipients \
     age1<name>1…; check for a typo or a truncation";
#[cfg(not(feature = "plugin"))]
const MALFORMED_AGE_HINT: &str = "expected 62: check for a typo or a truncation; plugin \
     recipients (age1<name>1…) need credseal built with the `plugin` feature";

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
                 recipients are public keys: age1…, or the plugin's age1<name>1… recipient",
            ),
            BadRecipientKind::Ssh => f.write_str(SSH_RECIPIENT_PROBLEM),
            BadRecipientKind::MalformedAge { chars } => write!(
                f,
                "not a valid age recipient ({chars} characters starting with age1; \
                 {MALFORMED_AGE_HINT})"
            ),
            BadRecipientKind::Other { chars } => write!(
                f,
                "not an age recipient ({chars} characters; expected age1… as `credseal keygen` \
                 prints it, or an ssh-ed25519 or ssh-rsa public key)"
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
        } else if text.starts_with("ssh-")
            || text.starts_with("ecdsa-sha2-")
            || text.starts_with("sk-")
        {
            BadRecipientKind::Ssh
        } else if upper.starts_with("AGE1") {
            BadRecipientKind::MalformedAge { chars }
        } else {
            BadRecipientKind::Other { chars }
        }
    }
}

/// A validated age recipient, kept as the exact string the user gave (sops compares by it,
/// and writes it as the entry's `recipient`: an SSH key with its comment).
#[derive(Clone)]
pub struct Recipient {
    text: String,
    key: RecipientKey,
}

#[derive(Clone)]
enum RecipientKey {
    X25519(age::x25519::Recipient),
    #[cfg(feature = "ssh")]
    Ssh(age::ssh::Recipient),
    #[cfg(feature = "plugin")]
    Plugin(age::plugin::Recipient),
}

/// The text decides the key, so it decides equality.
impl PartialEq for Recipient {
    fn eq(&self, other: &Recipient) -> bool {
        self.text == other.text
    }
}

impl Eq for Recipient {}

/// Recipients are public: shown as given.
impl std::fmt::Debug for Recipient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Recipient").field(&self.text).finish()
    }
}

/// Parses a recipient the way sops' `parseRecipient` tells them apart: `age1…` with a
/// second `1` is a plugin recipient (the Bech32 data part never holds a `1`), `age1…`
/// otherwise X25519, `ssh-…` an SSH public key.
fn parse_key(text: &str) -> Option<RecipientKey> {
    if text.starts_with("age1") && text.matches('1').count() > 1 {
        #[cfg(feature = "plugin")]
        return age::plugin::Recipient::from_str(text)
            .ok()
            .map(RecipientKey::Plugin);
        #[cfg(not(feature = "plugin"))]
        return None;
    }
    if text.starts_with("ssh-") {
        #[cfg(feature = "ssh")]
        return age::ssh::Recipient::from_str(text)
            .ok()
            .map(RecipientKey::Ssh);
        #[cfg(not(feature = "ssh"))]
        return None;
    }
    age::x25519::Recipient::from_str(text)
        .ok()
        .map(RecipientKey::X25519)
}

impl Recipient {
    pub fn parse(s: &str) -> Result<Recipient, KeyError> {
        Recipient::parse_at(s, || "age recipient".to_owned())
    }

    /// [`Recipient::parse`], naming the place it was given (`location`) in the error.
    fn parse_at(s: &str, location: impl FnOnce() -> String) -> Result<Recipient, KeyError> {
        let text = s.trim();
        let key = parse_key(text).ok_or_else(|| KeyError::BadRecipient {
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

    /// Wraps `payload` (the data key) as an armored age file for this recipient alone. Only a
    /// plugin recipient can fail (the plugin is missing, fails, or asks for input).
    pub fn wrap(&self, payload: &[u8]) -> Result<String, KeyError> {
        let wrap_error = |problem: String| KeyError::Wrap {
            recipient: self.text.clone(),
            problem,
        };
        match &self.key {
            RecipientKey::X25519(k) => armored_for(k, payload).map_err(wrap_error),
            #[cfg(feature = "ssh")]
            RecipientKey::Ssh(k) => armored_for(k, payload).map_err(wrap_error),
            #[cfg(feature = "plugin")]
            RecipientKey::Plugin(r) => {
                let callbacks = plugin_ui::NonInteractive::default();
                let plugin = age::plugin::RecipientPluginV1::new(
                    r.plugin(),
                    std::slice::from_ref(r),
                    &[],
                    callbacks.clone(),
                )
                .map_err(|e| wrap_error(one_line(&e)))?;
                armored_for(&plugin, payload)
                    .map_err(|e| wrap_error(format!("{e}{}", callbacks.report())))
            }
        }
    }
}

/// `payload` as an armored age file for one recipient (its error as text: age's messages
/// name the plugin and what it said).
fn armored_for(recipient: &dyn age::Recipient, payload: &[u8]) -> Result<String, String> {
    let encryptor =
        age::Encryptor::with_recipients(std::iter::once(recipient)).map_err(|e| one_line(&e))?;
    let mut out = Vec::new();
    let armor =
        ArmoredWriter::wrap_output(&mut out, Format::AsciiArmor).expect("writing to memory");
    let mut w = encryptor.wrap_output(armor).expect("writing to memory");
    w.write_all(payload).expect("writing to memory");
    w.finish()
        .and_then(|armor| armor.finish())
        .expect("writing to memory");
    Ok(String::from_utf8(out).expect("armor is ASCII"))
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
            enc: r.wrap(key.expose())?,
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
        let enc = r.wrap(&[9u8; 32]).unwrap();
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
        if cfg!(feature = "plugin") {
            assert!(err.starts_with("env, line 1: not an age identity"), "{err}");
        } else {
            assert!(err.contains("plugin") && err.contains("feature"), "{err}");
        }
        assert!(!err.contains("1XYZ"), "{err}");
    }

    /// A public key from age's test vectors (public: fine as a literal).
    const SSH_ED25519: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHsKLqeplhpW+uObz5dvMgjz1OxfM/XXUB+VHtZ6isGN alice@rust";

    #[test]
    fn ssh_recipients_are_kept_as_given_with_their_comment() {
        let parsed = Recipient::parse_list(&format!("  {SSH_ED25519} ,"));
        if cfg!(feature = "ssh") {
            let list = parsed.unwrap();
            assert_eq!(list[0].as_str(), SSH_ED25519);
            let enc = list[0].wrap(&[1u8; 32]).unwrap();
            assert!(enc.starts_with("-----BEGIN AGE ENCRYPTED FILE-----\n"));
        } else {
            let err = parsed.unwrap_err().to_string();
            assert!(err.contains("`ssh` feature"), "{err}");
        }
        // ECDSA keys cannot be age recipients, in any build.
        let err = Recipient::parse("ecdsa-sha2-nistp256 AAAAE2VjZHNh")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("ssh-ed25519") || err.contains("`ssh` feature"),
            "{err}"
        );
    }

    #[test]
    fn plugin_recipients_are_told_apart_from_x25519_ones() {
        use bech32::ToBase32;
        let r = bech32::encode(
            "age1example",
            [3u8; 16].to_base32(),
            bech32::Variant::Bech32,
        )
        .unwrap();
        let parsed = Recipient::parse(&r);
        if cfg!(feature = "plugin") {
            assert_eq!(parsed.unwrap().as_str(), r);
        } else {
            let e = parsed.unwrap_err().to_string();
            assert!(e.contains("`plugin` feature"), "{e}");
        }
    }

    #[test]
    fn broken_sources_are_listed_in_the_no_match_error() {
        let mut ring = Keyring::new();
        ring.add_broken_source("SOPS_AGE_KEY_CMD (false) failed with exit status: 1".into());
        ring.add_broken_source("SOPS_AGE_KEY_FILE is not usable: /x: cannot read".into());
        let err = KeyError::NoMatchingIdentity {
            identities: ring.len(),
            recipients: "age1…".into(),
            problems: ring.broken_sources().to_vec(),
        }
        .to_string();
        assert!(
            err.contains("tried 0 identities")
                && err.ends_with(
                    "Key sources that could not be used: SOPS_AGE_KEY_CMD (false) failed with \
                     exit status: 1; SOPS_AGE_KEY_FILE is not usable: /x: cannot read"
                ),
            "{err}"
        );
        let none = KeyError::NoMatchingIdentity {
            identities: 1,
            recipients: "age1…".into(),
            problems: Vec::new(),
        };
        assert!(none.to_string().ends_with("for one of them"), "{none}");
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
