//! Whole-file operations: encrypt a plaintext tree, open an encrypted file, re-seal it.

use crate::keys::{KeyError, Keyring, Recipient};
use crate::master_key::{KeyKind, MasterKey};
use crate::metadata::{AgeEntry, KeyGroup, Metadata, MetadataError, SOPS_VERSION};
use crate::pgp::{PgpCert, PgpError};
use crate::rules::Selector;
use crate::secret::DataKey;
use crate::store::{self, EmitOptions, Format, StoreError};
use crate::tree::Map;
use crate::tree::{Node, Timestamp, Tree};
use crate::value;
use crate::walk::{self, Entropy, IvStash, WalkError, WalkRules};

#[derive(Debug, thiserror::Error)]
pub enum SopsError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A value failed to decrypt or parse (sops exit 25).
    #[error(transparent)]
    Walk(#[from] WalkError),
    /// The MAC could not be decrypted (sops exit 51).
    #[error(
        "MAC verification failed: the stored MAC does not decrypt (file tampered with, or lastmodified changed)"
    )]
    MacUndecryptable,
    /// The recomputed MAC differs (sops exit 51).
    #[error("MAC mismatch: the file's values or their order were changed after it was encrypted")]
    MacMismatch,
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    /// A key the file or rule needs that credseal cannot wrap a data key for: nothing written.
    #[error(
        "cannot wrap the data key for {keys}: credseal wraps for age and PGP keys only, and these need their key service; nothing was changed. Run `sops {sops_command}` where those services are reachable, or remove the keys from .sops.yaml and run `credseal updatekeys`"
    )]
    CannotWrap {
        keys: String,
        sops_command: &'static str,
    },
    /// A PGP key without a public key to wrap for.
    #[error(
        "no public key for PGP key {fingerprint}: give it with --pgp-public-keys FILE or `pgp_public_keys:` in .sops.yaml (a `gpg --export` file), or import it into gpg; nothing was changed"
    )]
    PgpKeyMissing { fingerprint: String },
    #[error(transparent)]
    Pgp(#[from] PgpError),
}

/// What a data key is wrapped for: the master keys, and the public keys of the PGP ones.
#[derive(Clone, Debug, Default)]
pub struct KeyPlan {
    pub keys: Vec<MasterKey>,
    pub pgp_certs: Vec<PgpCert>,
}

impl KeyPlan {
    pub fn age(recipients: &[Recipient]) -> KeyPlan {
        KeyPlan {
            keys: recipients
                .iter()
                .map(|r| MasterKey::age(r.as_str()))
                .collect(),
            pgp_certs: Vec::new(),
        }
    }

    /// One key group holding every planned key, in plan order (duplicates once): entries
    /// `current` already has are kept byte for byte, the rest wrapped for `key`. Fails,
    /// changing nothing, when a key cannot be wrapped.
    fn group(
        &self,
        key: &DataKey,
        current: Option<&KeyGroup>,
        now: &Timestamp,
        sops_command: &'static str,
    ) -> Result<KeyGroup, SopsError> {
        if self.keys.is_empty() {
            return Err(KeyError::NoRecipients.into());
        }
        let existing_other = |k: &MasterKey| {
            current.and_then(|g| {
                g.others
                    .iter()
                    .filter(|(kind, _)| *kind == k.kind)
                    .flat_map(|(_, entries)| entries.nodes())
                    .find(|e| MasterKey::of_entry(k.kind, e.as_map().unwrap_or(&Map::new())) == *k)
                    .cloned()
            })
        };
        let unwrappable: Vec<String> = self
            .keys
            .iter()
            .filter(|k| !k.kind.wrappable_offline() && existing_other(k).is_none())
            .map(MasterKey::to_string)
            .collect();
        if !unwrappable.is_empty() {
            return Err(SopsError::CannotWrap {
                keys: unwrappable.join(", "),
                sops_command,
            });
        }
        let mut group = KeyGroup::default();
        let mut seen: Vec<&MasterKey> = Vec::new();
        for k in &self.keys {
            if seen.contains(&k) {
                continue;
            }
            seen.push(k);
            match k.kind {
                KeyKind::Age => {
                    let kept = current.and_then(|g| g.age.iter().find(|e| e.recipient == k.id));
                    group.age.push(match kept {
                        Some(e) => e.clone(),
                        None => AgeEntry {
                            recipient: k.id.clone(),
                            enc: Recipient::parse(&k.id)?.wrap(key.expose())?,
                        },
                    });
                }
                kind => {
                    let entry = match existing_other(k) {
                        Some(e) => e,
                        None => self.wrap_pgp(k, key, now)?,
                    };
                    group.push_other(kind, entry);
                }
            }
        }
        Ok(group)
    }

    /// A new `pgp` entry as sops writes it: created_at, enc, fp (the rule's fingerprint).
    fn wrap_pgp(&self, k: &MasterKey, key: &DataKey, now: &Timestamp) -> Result<Node, SopsError> {
        let cert = self
            .pgp_certs
            .iter()
            .find(|c| c.answers_to(&k.id))
            .ok_or_else(|| SopsError::PgpKeyMissing {
                fingerprint: k.id.clone(),
            })?;
        let mut entry = Map::new();
        entry.insert("created_at", Node::str(now.to_rfc3339()));
        entry.insert("enc", Node::str(cert.wrap(key.expose())?));
        entry.insert("fp", Node::str(k.id.clone()));
        Ok(Node::Map(entry))
    }
}

/// How a new file is encrypted.
pub struct EncryptSettings {
    pub keys: KeyPlan,
    pub selector: Selector,
    pub mac_only_encrypted: bool,
}

/// Clock and randomness, injected so tests can reproduce sops' output.
pub struct Context<'a> {
    pub entropy: &'a mut dyn Entropy,
    pub now: Timestamp,
}

/// An encrypted file as read: values still encrypted, metadata separated.
pub struct EncryptedFile {
    pub tree: Tree,
    pub metadata: Metadata,
    pub format: Format,
}

/// A decrypted file, holding what is needed to write it back churn-free.
pub struct Opened {
    /// Plaintext tree.
    pub tree: Tree,
    pub metadata: Metadata,
    pub format: Format,
    key: DataKey,
    stash: IvStash,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened")
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

/// Encrypts a plaintext tree to a new file with a fresh data key.
pub fn encrypt(
    tree: Tree,
    format: Format,
    settings: &EncryptSettings,
    ctx: &mut Context<'_>,
    opts: &EmitOptions,
) -> Result<Vec<u8>, SopsError> {
    let mut raw = [0u8; 32];
    ctx.entropy.fill(&mut raw);
    let key = DataKey::from_bytes(raw);
    raw.fill(0);
    let group = settings.keys.group(&key, None, &ctx.now, "encrypt")?;
    // The binary store encrypts its one value regardless of selectors and writes none (3.11+).
    let selector = if format == Format::Binary {
        Selector::All
    } else {
        settings.selector.clone()
    };
    let opened = Opened {
        tree,
        metadata: Metadata {
            key_groups: vec![group],
            shamir_threshold: 0,
            lastmodified: String::new(),
            mac: String::new(),
            selector,
            mac_only_encrypted: settings.mac_only_encrypted && format != Format::Binary,
            version: SOPS_VERSION.to_owned(),
        },
        format,
        key,
        stash: IvStash::default(),
    };
    opened.seal(ctx, opts)
}

impl EncryptedFile {
    pub fn parse(input: &[u8], format: Format) -> Result<EncryptedFile, SopsError> {
        let (tree, mut metadata) = store::load_encrypted(input, format)?;
        if format == Format::Binary {
            metadata.selector = Selector::All;
        }
        Ok(EncryptedFile {
            tree,
            metadata,
            format,
        })
    }

    pub fn data_key(&self, keyring: &Keyring) -> Result<DataKey, SopsError> {
        Ok(keyring.data_key(&self.metadata)?)
    }

    /// Decrypts every value and, unless `ignore_mac`, verifies the MAC.
    pub fn open(self, keyring: &Keyring, ignore_mac: bool) -> Result<Opened, SopsError> {
        let key = self.data_key(keyring)?;
        self.open_with_key(key, ignore_mac)
    }

    pub fn open_with_key(self, key: DataKey, ignore_mac: bool) -> Result<Opened, SopsError> {
        let EncryptedFile {
            mut tree,
            metadata,
            format,
        } = self;
        let mut stash = IvStash::default();
        let rules = WalkRules {
            selector: &metadata.selector,
            mac_only_encrypted: metadata.mac_only_encrypted,
        };
        let computed = walk::decrypt_tree(&mut tree, &rules, &key, &mut stash)?;
        if !ignore_mac {
            let aad = metadata
                .mac_aad()
                .map_err(|_| SopsError::MacUndecryptable)?;
            let stored =
                walk::decrypt_mac(&key, &metadata.mac, &aad).ok_or(SopsError::MacUndecryptable)?;
            if stored != computed {
                return Err(SopsError::MacMismatch);
            }
        }
        Ok(Opened {
            tree,
            metadata,
            format,
            key,
            stash,
        })
    }

    /// Makes the file's keys those of `plan` (`updatekeys`): entries for keys it keeps stay
    /// byte for byte, new ones get the existing data key, removed ones are dropped. Values,
    /// `lastmodified`, `mac` and `version` are untouched.
    pub fn rewrap(
        &mut self,
        keyring: &Keyring,
        plan: &KeyPlan,
        now: &Timestamp,
    ) -> Result<(), SopsError> {
        if self.metadata.key_groups.len() > 1 {
            return Err(KeyError::ShamirWriteUnsupported.into());
        }
        let current = self
            .metadata
            .key_groups
            .first()
            .cloned()
            .unwrap_or_default();
        let current_keys = current.keys();
        // A key only added needs the data key; removing keys does not.
        let group = if plan.keys.iter().all(|k| current_keys.contains(k)) {
            let mut g = current;
            g.retain(|k| plan.keys.contains(k));
            g
        } else {
            let key = self.data_key(keyring)?;
            plan.group(&key, Some(&current), now, "updatekeys")?
        };
        self.metadata.key_groups = vec![group];
        Ok(())
    }

    pub fn emit(&self, opts: &EmitOptions) -> Result<Vec<u8>, SopsError> {
        Ok(store::emit_encrypted(
            &self.tree,
            &self.metadata,
            self.format,
            opts,
        )?)
    }
}

impl Opened {
    /// A short keyed fingerprint of a leaf value (16 hex digits): equal values in files that
    /// share this data key compare equal; without the key nothing about the value can be
    /// learned or guessed. The HMAC key is derived from the data key, never the key itself.
    pub fn fingerprint(&self, leaf: &Node) -> Option<String> {
        use hmac::{Hmac, Mac};
        type HmacSha256 = Hmac<sha2::Sha256>;
        let (bytes, ty) = value::to_bytes(leaf)?;
        let mut derive =
            HmacSha256::new_from_slice(self.key.expose()).expect("HMAC takes any key length");
        derive.update(b"credseal value fingerprint v1");
        let sub: zeroize::Zeroizing<[u8; 32]> =
            zeroize::Zeroizing::new(derive.finalize().into_bytes().into());
        let mut mac = HmacSha256::new_from_slice(&*sub).expect("HMAC takes any key length");
        mac.update(ty.as_str().as_bytes());
        mac.update(b"\0");
        mac.update(bytes.expose());
        let out = mac.finalize().into_bytes();
        Some(out[..8].iter().map(|b| format!("{b:02x}")).collect())
    }

    /// Lets values taken from `other` keep their exact ciphertext when it shares our data key
    /// (a merge of two edits of one file); otherwise they are encrypted afresh.
    pub fn adopt_ivs(&mut self, other: &Opened) {
        if self.key == other.key {
            self.stash.absorb(&other.stash);
        }
    }

    /// Encrypts the (possibly edited) tree again under the same data key, reusing the IVs of
    /// unchanged values, with a new `lastmodified` and MAC.
    pub fn seal(&self, ctx: &mut Context<'_>, opts: &EmitOptions) -> Result<Vec<u8>, SopsError> {
        let (tree, meta) = self.seal_tree(ctx)?;
        Ok(store::emit_encrypted(&tree, &meta, self.format, opts)?)
    }

    /// As [`Opened::seal`], returning the encrypted tree and metadata instead of bytes.
    pub fn seal_tree(&self, ctx: &mut Context<'_>) -> Result<(Tree, Metadata), SopsError> {
        let mut tree = self.tree.clone();
        let mut meta = self.metadata.clone();
        let rules = WalkRules {
            selector: &meta.selector,
            mac_only_encrypted: meta.mac_only_encrypted,
        };
        let mac = walk::encrypt_tree(&mut tree, &rules, &self.key, ctx.entropy, &self.stash)?;
        meta.lastmodified = ctx.now.to_rfc3339();
        meta.mac = walk::encrypt_mac(&self.key, &mac, &meta.lastmodified, ctx.entropy);
        Ok((tree, meta))
    }

    /// Draws a new data key and wraps it for every key of `plan` (`rekey`, sops `rotate`).
    /// A key credseal cannot wrap (KMS, Vault, …) is refused before anything changes: the
    /// old entries would no longer open the file.
    pub fn rekey(&mut self, ctx: &mut Context<'_>, plan: &KeyPlan) -> Result<(), SopsError> {
        if self.metadata.key_groups.len() > 1 {
            return Err(KeyError::ShamirWriteUnsupported.into());
        }
        let mut raw = [0u8; 32];
        ctx.entropy.fill(&mut raw);
        let key = DataKey::from_bytes(raw);
        raw.fill(0);
        let fresh = KeyPlan {
            keys: plan.keys.clone(),
            pgp_certs: plan.pgp_certs.clone(),
        };
        // No entry is reused: each must hold the new data key.
        let unwrappable: Vec<String> = fresh
            .keys
            .iter()
            .filter(|k| !k.kind.wrappable_offline())
            .map(MasterKey::to_string)
            .collect();
        if !unwrappable.is_empty() {
            return Err(SopsError::CannotWrap {
                keys: unwrappable.join(", "),
                sops_command: "rotate",
            });
        }
        let group = fresh.group(&key, None, &ctx.now, "rotate")?;
        self.key = key;
        self.metadata.key_groups = vec![group];
        Ok(())
    }

    /// The plaintext document(s) in the file's own format.
    pub fn emit_plain(&self, format: Format, opts: &EmitOptions) -> Result<Vec<u8>, SopsError> {
        Ok(store::emit_plain(&self.tree, format, opts)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::{Map, Node};

    /// Yields the bytes queued, in order: the data key, then one IV per encrypted value.
    struct Scripted(Vec<[u8; 32]>);

    impl Entropy for Scripted {
        fn fill(&mut self, buf: &mut [u8]) {
            buf.copy_from_slice(&self.0.remove(0)[..buf.len()]);
        }
    }

    fn seq(start: u8) -> [u8; 32] {
        std::array::from_fn(|i| start.wrapping_add(i as u8))
    }

    fn spec_document() -> Tree {
        let mut meta = Map::new();
        meta.insert("name", Node::str("db"));
        let mut data = Map::new();
        data.insert("password", Node::str("hunter2"));
        data.insert("port", Node::Int(5432));
        data.insert("enabled", Node::Bool(true));
        let mut doc = Map::new();
        doc.insert("apiVersion", Node::str("v1"));
        doc.insert("kind", Node::str("Secret"));
        doc.insert("metadata", Node::Map(meta));
        doc.insert("stringData", Node::Map(data));
        Tree {
            documents: vec![doc],
        }
    }

    fn opened(mac_only_encrypted: bool) -> Opened {
        Opened {
            tree: spec_document(),
            metadata: Metadata {
                key_groups: vec![KeyGroup::default()],
                shamir_threshold: 0,
                lastmodified: String::new(),
                mac: String::new(),
                selector: Selector::from_key("encrypted_regex", "^(data|stringData)$").unwrap(),
                mac_only_encrypted,
                version: SOPS_VERSION.into(),
            },
            format: Format::Yaml,
            key: DataKey::from_bytes(seq(0)),
            stash: IvStash::default(),
        }
    }

    /// Spec §16.2: the worked document with injected key and IVs gives the published values and MAC.
    #[test]
    fn spec_worked_example_is_reproduced() {
        let mut entropy = Scripted(vec![seq(0x20), seq(0x40), seq(0x60), seq(0x80)]);
        let mut ctx = Context {
            entropy: &mut entropy,
            now: Timestamp::parse_rfc3339("2024-01-01T00:00:00Z").unwrap(),
        };
        let (tree, meta) = opened(false).seal_tree(&mut ctx).unwrap();
        let data = tree.documents[0]
            .get("stringData")
            .unwrap()
            .as_map()
            .unwrap();
        assert_eq!(
            data.get("password").unwrap().as_str().unwrap(),
            "ENC[AES256_GCM,data:f7SfPOh95A==,iv:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=,tag:WBPE6k3mfjV0rMrvCs5GEw==,type:str]"
        );
        assert_eq!(
            data.get("port").unwrap().as_str().unwrap(),
            "ENC[AES256_GCM,data:UU8AVg==,iv:QEFCQ0RFRkdISUpLTE1OT1BRUlNUVVZXWFlaW1xdXl8=,tag:Iyps90WiQgGLeISTv/Ew7Q==,type:int]"
        );
        assert_eq!(
            tree.documents[0]
                .get("metadata")
                .unwrap()
                .as_map()
                .unwrap()
                .get("name"),
            Some(&Node::str("db"))
        );
        assert_eq!(meta.lastmodified, "2024-01-01T00:00:00Z");
        assert_eq!(
            meta.mac,
            "ENC[AES256_GCM,data:1i8F5noXIDhQuFqkiMRAAW7Tqqb+woiya2McxTa6pXXta9LKLMiPzj7Zz0zD4e93bmevJWnaP6fHjHn96ea6HByImExOXJBX6MgIEC/h0EY+DaqHxCJgE7oj1yM+JjxDYUdO/P3NG/054sjdgZ4557K3zrxbLofUavvOe7nKb/8=,iv:gIGCg4SFhoeIiYqLjI2Oj5CRkpOUlZaXmJmam5ydnp8=,tag:yL31EGKsYanjTyZu+YqUNw==,type:str]"
        );
        // And it opens again, MAC verified, to the same tree.
        let file = EncryptedFile {
            tree,
            metadata: meta,
            format: Format::Yaml,
        };
        let back = file
            .open_with_key(DataKey::from_bytes(seq(0)), false)
            .unwrap();
        assert_eq!(back.tree, spec_document());
    }

    #[test]
    fn spec_mac_values() {
        let sel = Selector::from_key("encrypted_regex", "^(data|stringData)$").unwrap();
        let full = walk::plaintext_mac(
            &spec_document(),
            &WalkRules {
                selector: &sel,
                mac_only_encrypted: false,
            },
        );
        assert_eq!(
            full,
            "FA13D068154E068063A1ECFEE41B725E613F59C92A23A15E12F3B0836CBE0297F2FD30EA9964D756CCE5D79039D2FC47FDC0392E2291C43A0C78AF5D207E9AC3"
        );
        let only = walk::plaintext_mac(
            &spec_document(),
            &WalkRules {
                selector: &sel,
                mac_only_encrypted: true,
            },
        );
        assert_eq!(
            only,
            "4E6E8F81DF2996432597EB0526203883C73092B78D69163651EA2BFE96DC200A1DF78DCA73ED8FB44F2B826EF0E5AB8D3A7F11E006FF01A128AB5F4234C43C24"
        );
    }

    #[test]
    fn unchanged_values_keep_ciphertext_changed_ones_do_not() {
        let mut entropy = Scripted(vec![seq(0x20), seq(0x40), seq(0x60), seq(0x80)]);
        let mut ctx = Context {
            entropy: &mut entropy,
            now: Timestamp::from_unix(1_700_000_000),
        };
        let (tree, metadata) = opened(false).seal_tree(&mut ctx).unwrap();
        let file = EncryptedFile {
            tree: tree.clone(),
            metadata,
            format: Format::Yaml,
        };
        let mut back = file
            .open_with_key(DataKey::from_bytes(seq(0)), false)
            .unwrap();
        let data = back.tree.documents[0].get_mut("stringData").unwrap();
        let Node::Map(m) = data else { panic!() };
        *m.get_mut("port").unwrap() = Node::Int(6543);
        // Fresh IV for the changed value and for the MAC only.
        let mut entropy = Scripted(vec![seq(0xc0), seq(0xe0)]);
        let mut ctx = Context {
            entropy: &mut entropy,
            now: Timestamp::from_unix(1_700_000_100),
        };
        let (again, _) = back.seal_tree(&mut ctx).unwrap();
        let get = |t: &Tree, k: &str| {
            t.documents[0]
                .get("stringData")
                .unwrap()
                .as_map()
                .unwrap()
                .get(k)
                .unwrap()
                .as_str()
                .unwrap()
                .to_owned()
        };
        assert_eq!(get(&again, "password"), get(&tree, "password"));
        assert_eq!(get(&again, "enabled"), get(&tree, "enabled"));
        assert_ne!(get(&again, "port"), get(&tree, "port"));
        assert!(get(&again, "port").contains("iv:wMHCw8TFxsfIycrLzM3Oz9DR0tPU1dbX2Nna29zd3t8="));
    }

    #[test]
    fn tampered_clear_value_fails_the_mac() {
        let mut entropy = Scripted(vec![seq(0x20), seq(0x40), seq(0x60), seq(0x80)]);
        let mut ctx = Context {
            entropy: &mut entropy,
            now: Timestamp::from_unix(1_700_000_000),
        };
        let (mut tree, metadata) = opened(false).seal_tree(&mut ctx).unwrap();
        let Node::Map(m) = tree.documents[0].get_mut("metadata").unwrap() else {
            panic!()
        };
        *m.get_mut("name").unwrap() = Node::str("other");
        let file = EncryptedFile {
            tree,
            metadata,
            format: Format::Yaml,
        };
        let err = file
            .open_with_key(DataKey::from_bytes(seq(0)), false)
            .unwrap_err();
        assert!(matches!(err, SopsError::MacMismatch), "{err:?}");
    }
}
