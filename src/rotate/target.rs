//! The file target: the password is a value in a SOPS file, rewritten churn-free, and the
//! pending record is a SOPS file beside it, encrypted to the same recipients, so whoever can
//! read the target can finish a rotation a crashed run left.

use std::path::{Path, PathBuf};

use crate::file_io;
use crate::manifest::{GENERATION_ANNOTATION, ROTATED_AT_ANNOTATION};
use crate::rotate::store::{Current, Pending, Phase};
use crate::secret::SecretString;
use crate::sops::file::{
    self, Context, EncryptSettings, EncryptedFile, KeyPlan, Opened, SopsError,
};
use crate::sops::keys::{Keyring, Recipient};
use crate::sops::path::{self, Step};
use crate::sops::rules::Selector;
use crate::sops::store::{self, EmitOptions, Format};
use crate::sops::tree::{Map, Node, Timestamp, Tree};

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error(transparent)]
    Fs(#[from] file_io::FsError),
    #[error("{file}")]
    Sops { file: PathBuf, source: SopsError },
    #[error("{file}: {what}")]
    Shape { file: PathBuf, what: String },
}

pub struct FileTarget<'a> {
    pub path: PathBuf,
    key: Vec<Step>,
    username_key: Option<Vec<Step>>,
    keyring: &'a Keyring,
    opts: EmitOptions,
}

fn sops_err(file: &Path) -> impl FnOnce(SopsError) -> TargetError + '_ {
    move |source| TargetError::Sops {
        file: file.to_owned(),
        source,
    }
}

impl<'a> FileTarget<'a> {
    pub fn new(
        path: PathBuf,
        key: &str,
        username_key: Option<&str>,
        keyring: &'a Keyring,
    ) -> Result<Self, TargetError> {
        let shape = |what: String| TargetError::Shape {
            file: path.clone(),
            what,
        };
        let key = path::parse(key).map_err(|e| shape(e.to_string()))?;
        let username_key = username_key
            .map(|k| path::parse(k).map_err(|e| shape(e.to_string())))
            .transpose()?;
        Ok(FileTarget {
            path,
            key,
            username_key,
            keyring,
            opts: EmitOptions::default(),
        })
    }

    fn format(&self) -> Format {
        Format::from_path(&self.path)
    }

    /// `dir/.name.credseal-pending.yaml`: hidden, beside the target, encrypted to the same
    /// recipients.
    pub fn pending_path(&self) -> PathBuf {
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        self.path
            .with_file_name(format!(".{name}.credseal-pending.yaml"))
    }

    fn open(&self) -> Result<Opened, TargetError> {
        let bytes = file_io::read(&self.path)?;
        EncryptedFile::parse(&bytes, self.format())
            .and_then(|f| f.open(self.keyring, false))
            .map_err(sops_err(&self.path))
    }

    fn string_at(&self, doc: &Map, steps: &[Step]) -> Result<String, TargetError> {
        match path::get(doc, steps) {
            Ok(Node::Str(s)) => Ok(s.expose().to_owned()),
            Ok(_) => Err(TargetError::Shape {
                file: self.path.clone(),
                what: format!("{} is not a string", path::display(steps)),
            }),
            Err(e) => Err(TargetError::Shape {
                file: self.path.clone(),
                what: e.to_string(),
            }),
        }
    }

    pub fn read(&self) -> Result<Current, TargetError> {
        let opened = self.open()?;
        let doc = opened
            .tree
            .documents
            .first()
            .ok_or_else(|| TargetError::Shape {
                file: self.path.clone(),
                what: "no document".into(),
            })?;
        let password = SecretString::new(self.string_at(doc, &self.key)?);
        let username = self
            .username_key
            .as_ref()
            .map(|k| self.string_at(doc, k))
            .transpose()?;
        let annotation = |name: &str| {
            doc.get("metadata")
                .and_then(Node::as_map)
                .and_then(|m| m.get("annotations"))
                .and_then(Node::as_map)
                .and_then(|a| a.get(name))
                .and_then(Node::as_str)
                .map(str::to_owned)
        };
        Ok(Current {
            password,
            username,
            generation: annotation(GENERATION_ANNOTATION)
                .and_then(|g| g.parse().ok())
                .unwrap_or(0),
            rotated_at: annotation(ROTATED_AT_ANNOTATION)
                .and_then(|t| Timestamp::parse_rfc3339(&t)),
        })
    }

    /// Writes the new password (and username) as current, bumps the generation and the
    /// rotation time. Idempotent: a rerun after a crash finds the value set and changes nothing.
    pub fn commit(&self, pending: &Pending, ctx: &mut Context<'_>) -> Result<(), TargetError> {
        let mut opened = self.open()?;
        let shape = |e: crate::sops::path::PathError| TargetError::Shape {
            file: self.path.clone(),
            what: e.to_string(),
        };
        let doc = opened
            .tree
            .documents
            .first_mut()
            .ok_or_else(|| TargetError::Shape {
                file: self.path.clone(),
                what: "no document".into(),
            })?;
        let mut changed =
            path::set(doc, &self.key, Node::Str(pending.password.clone())).map_err(shape)?;
        if let (Some(k), Some(u)) = (&self.username_key, &pending.username) {
            changed |= path::set(doc, k, Node::str(u.clone())).map_err(shape)?;
        }
        if !changed {
            return Ok(());
        }
        if doc.get("metadata").and_then(Node::as_map).is_some() {
            let annotations = |name: &str| {
                vec![
                    Step::Key("metadata".into()),
                    Step::Key("annotations".into()),
                    Step::Key(name.into()),
                ]
            };
            path::set(
                doc,
                &annotations(GENERATION_ANNOTATION),
                Node::str(pending.generation.to_string()),
            )
            .map_err(shape)?;
            path::set(
                doc,
                &annotations(ROTATED_AT_ANNOTATION),
                Node::str(ctx.now.to_rfc3339()),
            )
            .map_err(shape)?;
        }
        let bytes = opened.seal(ctx, &self.opts).map_err(sops_err(&self.path))?;
        file_io::write_atomic(&self.path, &bytes, 0o644)?;
        Ok(())
    }

    pub fn pending(&self) -> Result<Option<Pending>, TargetError> {
        let path = self.pending_path();
        if !path.exists() {
            return Ok(None);
        }
        let bytes = file_io::read(&path)?;
        let opened = EncryptedFile::parse(&bytes, Format::Yaml)
            .and_then(|f| f.open(self.keyring, false))
            .map_err(sops_err(&path))?;
        let doc = opened.tree.documents.first().cloned().unwrap_or_default();
        let text = |k: &str| doc.get(k).and_then(Node::as_str).map(str::to_owned);
        let bad = |what: &str| TargetError::Shape {
            file: path.clone(),
            what: format!("pending record: {what}"),
        };
        Ok(Some(Pending {
            credential: text("credential").ok_or_else(|| bad("no credential"))?,
            phase: text("phase")
                .and_then(|p| Phase::parse(&p))
                .ok_or_else(|| bad("bad phase"))?,
            password: SecretString::new(text("password").ok_or_else(|| bad("no password"))?),
            username: text("username"),
            previous_username: text("previousUsername"),
            previous_password: text("previousPassword").map(SecretString::new),
            generation: text("generation")
                .and_then(|g| g.parse().ok())
                .ok_or_else(|| bad("bad generation"))?,
            retire_after: text("retireAfter")
                .map(|t| Timestamp::parse_rfc3339(&t).ok_or_else(|| bad("bad retireAfter")))
                .transpose()?,
        }))
    }

    /// Saves the pending record atomically, encrypted to the target file's recipients.
    pub fn save_pending(&self, p: &Pending, ctx: &mut Context<'_>) -> Result<(), TargetError> {
        let bytes = file_io::read(&self.path)?;
        let meta = store::load_encrypted(&bytes, self.format())
            .map_err(|e| sops_err(&self.path)(e.into()))?
            .1;
        let recipients = meta
            .age_recipients()
            .map(Recipient::parse)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| sops_err(&self.path)(e.into()))?;
        let mut doc = Map::new();
        doc.insert("credential", Node::str(p.credential.clone()));
        doc.insert("phase", Node::str(p.phase.as_str()));
        doc.insert("generation", Node::str(p.generation.to_string()));
        if let Some(u) = &p.username {
            doc.insert("username", Node::str(u.clone()));
        }
        if let Some(u) = &p.previous_username {
            doc.insert("previousUsername", Node::str(u.clone()));
        }
        doc.insert("password", Node::Str(p.password.clone()));
        if let Some(old) = &p.previous_password {
            doc.insert("previousPassword", Node::Str(old.clone()));
        }
        if let Some(t) = p.retire_after {
            doc.insert("retireAfter", Node::str(t.to_rfc3339()));
        }
        let settings = EncryptSettings {
            keys: KeyPlan::age(&recipients),
            // The state stays readable for operators; only the password is encrypted.
            selector: Selector::from_key("encrypted_regex", "^(password|previousPassword)$")
                .expect("valid regex"),
            mac_only_encrypted: false,
        };
        let out = file::encrypt(
            Tree {
                documents: vec![doc],
            },
            Format::Yaml,
            &settings,
            ctx,
            &self.opts,
        )
        .map_err(sops_err(&self.path))?;
        file_io::write_atomic(&self.pending_path(), &out, 0o600)?;
        Ok(())
    }

    pub fn clear_pending(&self) -> Result<(), TargetError> {
        let path = self.pending_path();
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(file_io::FsError {
                path,
                action: "cannot remove",
                source,
            }
            .into()),
        }
    }
}
