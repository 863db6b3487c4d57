//! The tree walk that encrypts or decrypts every leaf and computes the MAC (docs/sops-format.md §7, §8).

use std::collections::HashMap;

use sha2::{Digest, Sha256, Sha512};

use crate::cipher::{self, CipherError, Encrypted, IV_LEN, ValueType};
use crate::rules::Selector;
use crate::secret::{DataKey, SecretBytes, SecretString};
use crate::tree::{Comment, Map, MapItem, Node, Seq, SeqItem, Tree};
use crate::value::{self, ValueError};

/// A source of random bytes for data keys and IVs; tests inject a deterministic one.
pub trait Entropy {
    fn fill(&mut self, buf: &mut [u8]);
}

/// The operating system's CSPRNG.
pub struct OsEntropy;

impl Entropy for OsEntropy {
    fn fill(&mut self, buf: &mut [u8]) {
        use rand::RngCore;
        rand::rngs::OsRng.fill_bytes(buf);
    }
}

/// IVs seen while decrypting, by (path, type, plaintext). Re-encrypting an unchanged value at
/// the same path under the same data key reuses its IV, so its ciphertext stays byte-identical
/// (sops' "stash"; small git diffs). A changed value never matches, so it gets a fresh IV.
///
/// The plaintext is held as its SHA-256: a copy of every value would double the memory of a
/// decrypt (and a lookup used to copy the value again to build its key).
#[derive(Default)]
pub struct IvStash {
    seen: HashMap<(String, ValueType, [u8; 32]), [u8; IV_LEN]>,
}

impl IvStash {
    fn remember(&mut self, aad: &str, ty: ValueType, plain: &[u8], iv: &[u8]) {
        if let Ok(iv) = <[u8; IV_LEN]>::try_from(iv) {
            self.seen.insert((aad.to_owned(), ty, digest(plain)), iv);
        }
    }

    fn lookup(&self, aad: &str, ty: ValueType, plain: &[u8]) -> Option<[u8; IV_LEN]> {
        if self.seen.is_empty() {
            return None;
        }
        self.seen.get(&(aad.to_owned(), ty, digest(plain))).copied()
    }

    /// Adds the IVs of another file under the same data key; ours win where both have one.
    pub fn absorb(&mut self, other: &IvStash) {
        for (k, iv) in &other.seen {
            self.seen.entry(k.clone()).or_insert(*iv);
        }
    }
}

fn digest(plain: &[u8]) -> [u8; 32] {
    Sha256::digest(plain).into()
}

/// What went wrong at one leaf. `path` is in `--extract` syntax; no value is ever included.
#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    #[error("could not decrypt the value at {path}")]
    Cipher { path: String, source: CipherError },
    #[error("the value at {path}")]
    Value { path: String, source: ValueError },
    /// A leaf that the selection rules say is encrypted is not a string (hand-edited file).
    #[error("{path}: expected an encrypted value (a string), found a {found} in clear")]
    NotString { path: String, found: &'static str },
    /// An encrypted comment matches `unencrypted_comment_regex`: the file could not be decrypted.
    #[error(
        "{path}: an encrypted comment matches unencrypted_comment_regex; choose a regex that cannot match ENC[...]"
    )]
    CommentMatchesRegex { path: String },
}

impl WalkError {
    /// Whether the failure is a value that did not authenticate or parse (sops exit 25).
    pub fn path(&self) -> &str {
        match self {
            WalkError::Cipher { path, .. }
            | WalkError::Value { path, .. }
            | WalkError::NotString { path, .. }
            | WalkError::CommentMatchesRegex { path } => path,
        }
    }
}

/// The selection and MAC settings the walk needs from the metadata.
pub struct WalkRules<'a> {
    pub selector: &'a Selector,
    pub mac_only_encrypted: bool,
}

enum Mode<'a> {
    Encrypt {
        key: &'a DataKey,
        entropy: &'a mut dyn Entropy,
        stash: &'a IvStash,
    },
    Decrypt {
        key: &'a DataKey,
        stash: &'a mut IvStash,
    },
}

/// SHA-256("sops"), fed first when `mac_only_encrypted` is set (docs/sops-format.md §8).
fn mac_only_encrypted_init() -> [u8; 32] {
    Sha256::digest(b"sops").into()
}

/// Encrypts every selected leaf and comment in place; returns the MAC (upper-case hex).
pub fn encrypt_tree(
    tree: &mut Tree,
    rules: &WalkRules<'_>,
    key: &DataKey,
    entropy: &mut dyn Entropy,
    stash: &IvStash,
) -> Result<String, WalkError> {
    let mut w = Walker::new(
        rules,
        Mode::Encrypt {
            key,
            entropy,
            stash,
        },
    );
    for doc in &mut tree.documents {
        w.map(doc)?;
    }
    Ok(w.finish())
}

/// Decrypts every selected leaf in place, remembering IVs; returns the recomputed MAC.
pub fn decrypt_tree(
    tree: &mut Tree,
    rules: &WalkRules<'_>,
    key: &DataKey,
    stash: &mut IvStash,
) -> Result<String, WalkError> {
    let mut w = Walker::new(rules, Mode::Decrypt { key, stash });
    for doc in &mut tree.documents {
        w.map(doc)?;
    }
    Ok(w.finish())
}

/// Computes the MAC of a plaintext tree without changing it (for checks and tests).
pub fn plaintext_mac(tree: &Tree, rules: &WalkRules<'_>) -> String {
    let mut hasher = Sha512::new();
    if rules.mac_only_encrypted {
        hasher.update(mac_only_encrypted_init());
    }
    for_each_leaf(tree, &mut |leaf| {
        if !rules.mac_only_encrypted
            || rules
                .selector
                .should_encrypt(leaf.keys, leaf.comments, false)
        {
            if let Some((bytes, _)) = value::to_bytes(leaf.node) {
                hasher.update(bytes.expose());
            }
        }
    });
    upper_hex(&hasher.finalize())
}

/// One scalar leaf as [`for_each_leaf`] sees it.
pub struct Leaf<'a> {
    /// Index of the document (YAML multi-document files).
    pub document: usize,
    /// Keys from the root, without list indices, as the AAD and selectors see them.
    pub keys: &'a [String],
    /// The active comment lines of every enclosing level.
    pub comments: &'a [Vec<String>],
    pub node: &'a Node,
    segs: &'a [Seg],
}

impl Leaf<'_> {
    /// The path in `--extract` syntax, list indices included.
    pub fn display_path(&self) -> String {
        display_path(self.segs)
    }
}

pub type LeafVisitor<'a> = dyn FnMut(&Leaf<'_>) + 'a;

/// Visits every scalar leaf in document order.
pub fn for_each_leaf(tree: &Tree, f: &mut LeafVisitor<'_>) {
    let mut at = Cursor::default();
    for (i, doc) in tree.documents.iter().enumerate() {
        at.document = i;
        at.map(doc, f);
    }
}

#[derive(Default)]
struct Cursor {
    document: usize,
    keys: Vec<String>,
    segs: Vec<Seg>,
    comments: Vec<Vec<String>>,
}

impl Cursor {
    fn map(&mut self, m: &Map, f: &mut LeafVisitor<'_>) {
        self.comments.push(Vec::new());
        for item in &m.items {
            match item {
                MapItem::Comment(c) => self
                    .comments
                    .last_mut()
                    .expect("pushed")
                    .push(c.text.expose().to_owned()),
                MapItem::Pair(k, v) => {
                    self.keys.push(k.clone());
                    self.segs.push(Seg::Key(k.clone()));
                    self.node(v, f);
                    self.segs.pop();
                    self.keys.pop();
                    self.comments.last_mut().expect("pushed").clear();
                }
            }
        }
        self.comments.pop();
    }

    fn node(&mut self, n: &Node, f: &mut LeafVisitor<'_>) {
        match n {
            Node::Map(m) => self.map(m, f),
            Node::Seq(s) => {
                self.comments.push(Vec::new());
                let mut index = 0;
                for item in &s.items {
                    match item {
                        SeqItem::Comment(c) => self
                            .comments
                            .last_mut()
                            .expect("pushed")
                            .push(c.text.expose().to_owned()),
                        SeqItem::Node(n) => {
                            self.segs.push(Seg::Index(index));
                            self.node(n, f);
                            self.segs.pop();
                            index += 1;
                            self.comments.last_mut().expect("pushed").clear();
                        }
                    }
                }
                self.comments.pop();
            }
            leaf => f(&Leaf {
                document: self.document,
                keys: &self.keys,
                comments: &self.comments,
                node: leaf,
                segs: &self.segs,
            }),
        }
    }
}

fn upper_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// A path segment for error messages (list indices are shown there, though not in the AAD).
enum Seg {
    Key(String),
    Index(usize),
}

struct Walker<'a> {
    rules: &'a WalkRules<'a>,
    mode: Mode<'a>,
    hasher: Sha512,
    path: Vec<String>,
    display: Vec<Seg>,
    comments: Vec<Vec<String>>,
    /// Set when a value decrypted to `type:comment`: sops 3.10–3.12 wrote encrypted comments
    /// inside lists as list items; 3.11 reads them back as comments, outside the MAC.
    became_comment: Option<Comment>,
}

impl<'a> Walker<'a> {
    fn new(rules: &'a WalkRules<'a>, mode: Mode<'a>) -> Self {
        let mut hasher = Sha512::new();
        if rules.mac_only_encrypted {
            hasher.update(mac_only_encrypted_init());
        }
        Walker {
            rules,
            mode,
            hasher,
            path: Vec::new(),
            display: Vec::new(),
            comments: Vec::new(),
            became_comment: None,
        }
    }

    fn finish(self) -> String {
        upper_hex(&self.hasher.finalize())
    }

    fn display_path(&self) -> String {
        display_path(&self.display)
    }

    fn aad(&self) -> String {
        let mut s = self.path.join(":");
        s.push(':');
        s
    }

    fn map(&mut self, m: &mut Map) -> Result<(), WalkError> {
        self.comments.push(Vec::new());
        for item in &mut m.items {
            match item {
                MapItem::Comment(c) => {
                    self.comments
                        .last_mut()
                        .expect("pushed")
                        .push(c.text.expose().to_owned());
                    self.comment(c)?;
                }
                MapItem::Pair(k, v) => {
                    self.path.push(k.clone());
                    self.display.push(Seg::Key(k.clone()));
                    self.node(v)?;
                    self.path.pop();
                    self.display.pop();
                    self.comments.last_mut().expect("pushed").clear();
                }
            }
        }
        self.comments.pop();
        Ok(())
    }

    fn seq(&mut self, s: &mut Seq) -> Result<(), WalkError> {
        self.comments.push(Vec::new());
        let mut index = 0;
        for item in &mut s.items {
            match item {
                SeqItem::Comment(c) => {
                    self.comments
                        .last_mut()
                        .expect("pushed")
                        .push(c.text.expose().to_owned());
                    self.comment(c)?;
                }
                SeqItem::Node(n) => {
                    self.display.push(Seg::Index(index));
                    self.node(n)?;
                    self.display.pop();
                    if let Some(c) = self.became_comment.take() {
                        *item = SeqItem::Comment(c);
                    }
                    index += 1;
                    self.comments.last_mut().expect("pushed").clear();
                }
            }
        }
        self.comments.pop();
        Ok(())
    }

    fn node(&mut self, n: &mut Node) -> Result<(), WalkError> {
        match n {
            Node::Map(m) => self.map(m),
            Node::Seq(s) => self.seq(s),
            Node::Null => Ok(()),
            _ => self.leaf(n),
        }
    }

    fn should_encrypt(&self, is_comment: bool) -> bool {
        self.rules
            .selector
            .should_encrypt(&self.path, &self.comments, is_comment)
    }

    fn comment(&mut self, c: &mut Comment) -> Result<(), WalkError> {
        if !self.should_encrypt(true) || c.text.expose().is_empty() {
            return Ok(());
        }
        let aad = self.aad();
        match &mut self.mode {
            Mode::Encrypt {
                key,
                entropy,
                stash,
            } => {
                let plain = SecretBytes::new(c.text.expose().as_bytes().to_vec());
                let iv = stash
                    .lookup(&aad, ValueType::Comment, plain.expose())
                    .unwrap_or_else(|| fresh_iv(&mut **entropy));
                let enc =
                    cipher::encrypt(key, plain.expose(), aad.as_bytes(), &iv, ValueType::Comment)
                        .to_text();
                if let Selector::UnencryptedCommentRegex(r) = self.rules.selector {
                    if r.is_match(&enc) {
                        return Err(WalkError::CommentMatchesRegex {
                            path: self.display_path(),
                        });
                    }
                }
                c.text = SecretString::new(enc);
            }
            Mode::Decrypt { key, stash } => {
                // Files from old sops releases had clear comments: keep what does not open.
                if let Ok(enc) = Encrypted::parse(c.text.expose()) {
                    if let Ok(plain) = cipher::decrypt(key, &enc, aad.as_bytes()) {
                        if let Ok(text) = String::from_utf8(plain.expose().to_vec()) {
                            stash.remember(&aad, ValueType::Comment, plain.expose(), &enc.iv);
                            c.text = SecretString::new(text);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn leaf(&mut self, n: &mut Node) -> Result<(), WalkError> {
        let encrypted = self.should_encrypt(false);
        let aad = self.aad();
        match &mut self.mode {
            Mode::Encrypt {
                key,
                entropy,
                stash,
            } => {
                // A string's own bytes: a copy would double a large value's memory.
                let owned;
                let (plain, ty) = match n {
                    Node::Str(s) => (s.expose().as_bytes(), ValueType::Str),
                    _ => {
                        owned = value::to_bytes(n).expect("node() passes only leaves");
                        (owned.0.expose(), owned.1)
                    }
                };
                if !self.rules.mac_only_encrypted || encrypted {
                    self.hasher.update(plain);
                }
                if encrypted {
                    let text = if plain.is_empty() {
                        String::new()
                    } else {
                        let iv = stash
                            .lookup(&aad, ty, plain)
                            .unwrap_or_else(|| fresh_iv(&mut **entropy));
                        cipher::encrypt(key, plain, aad.as_bytes(), &iv, ty).to_text()
                    };
                    *n = Node::str(text);
                }
            }
            Mode::Decrypt { key, stash } => {
                if encrypted {
                    let text = match n {
                        Node::Str(s) => s.expose(),
                        other => {
                            return Err(WalkError::NotString {
                                path: self.display_path(),
                                found: type_name(other),
                            });
                        }
                    };
                    if !text.is_empty() {
                        let display = &self.display;
                        let path = || display_path(display);
                        let enc = Encrypted::parse(text).map_err(|source| WalkError::Cipher {
                            path: path(),
                            source,
                        })?;
                        let plain =
                            cipher::decrypt(key, &enc, aad.as_bytes()).map_err(|source| {
                                WalkError::Cipher {
                                    path: path(),
                                    source,
                                }
                            })?;
                        stash.remember(&aad, enc.value_type, plain.expose(), &enc.iv);
                        *n = value::from_bytes(plain, enc.value_type).map_err(|source| {
                            WalkError::Value {
                                path: path(),
                                source,
                            }
                        })?;
                        if enc.value_type == ValueType::Comment {
                            if let Node::Str(text) = n {
                                self.became_comment = Some(Comment {
                                    text: text.clone(),
                                    inline: false,
                                });
                            }
                            return Ok(());
                        }
                    }
                }
                if !self.rules.mac_only_encrypted || encrypted {
                    match n {
                        Node::Str(s) => self.hasher.update(s.expose().as_bytes()),
                        _ => {
                            let (plain, _) = value::to_bytes(n).expect("leaves stay leaves");
                            self.hasher.update(plain.expose());
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

fn display_path(segs: &[Seg]) -> String {
    if segs.is_empty() {
        return "(top level)".into();
    }
    segs.iter()
        .map(|s| match s {
            Seg::Key(k) => format!("[{k:?}]"),
            Seg::Index(i) => format!("[{i}]"),
        })
        .collect()
}

fn fresh_iv(entropy: &mut dyn Entropy) -> [u8; IV_LEN] {
    let mut iv = [0u8; IV_LEN];
    entropy.fill(&mut iv);
    iv
}

fn type_name(n: &Node) -> &'static str {
    match n {
        Node::Null => "null",
        Node::Str(_) => "string",
        Node::Int(_) => "integer",
        Node::Float(_) => "float",
        Node::Bool(_) => "boolean",
        Node::Time(_) => "timestamp",
        Node::Map(_) => "mapping",
        Node::Seq(_) => "sequence",
    }
}

/// Encrypts the MAC hex string with AAD = the `lastmodified` text (docs/sops-format.md §8).
pub fn encrypt_mac(
    key: &DataKey,
    mac: &str,
    lastmodified_aad: &str,
    entropy: &mut dyn Entropy,
) -> String {
    let iv = fresh_iv(entropy);
    cipher::encrypt(
        key,
        mac.as_bytes(),
        lastmodified_aad.as_bytes(),
        &iv,
        ValueType::Str,
    )
    .to_text()
}

/// Decrypts the stored MAC; `None` when it is missing or does not open.
pub fn decrypt_mac(key: &DataKey, stored: &str, lastmodified_aad: &str) -> Option<String> {
    let enc = Encrypted::parse(stored).ok()?;
    let plain = cipher::decrypt(key, &enc, lastmodified_aad.as_bytes()).ok()?;
    String::from_utf8(plain.expose().to_vec()).ok()
}
