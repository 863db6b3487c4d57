//! File formats: which store reads and writes a file, and where each puts the metadata.

use std::path::Path;

use crate::dotenv::{self, DotenvError};
use crate::ini::{self, IniError};
use crate::json::{self, JsonError};
use crate::metadata::{Metadata, MetadataError, MetadataStore};
use crate::tree::{Map, MapItem, Node, Tree};
use crate::yaml::{self, YamlError};

/// The reserved top-level key (dotenv: key prefix `sops_`).
pub const METADATA_KEY: &str = "sops";
const DOTENV_PREFIX: &str = "sops_";
const BOM: &[u8] = b"\xef\xbb\xbf";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Json,
    Dotenv,
    Ini,
    Binary,
}

impl Format {
    /// sops' choice by extension: `.yaml`/`.yml`, `.json`, `.env`, `.ini`; anything else is
    /// binary.
    pub fn from_path(path: &Path) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some("yaml" | "yml") => Format::Yaml,
            Some("json") => Format::Json,
            Some("env") => Format::Dotenv,
            Some("ini") => Format::Ini,
            _ => Format::Binary,
        }
    }

    /// The format the file name states, or `None` when it says nothing (no extension, or one
    /// sops reads as binary): a pipe, `/dev/fd/N`, git's temp files.
    pub fn named_by(path: &Path) -> Option<Format> {
        Some(Format::from_path(path)).filter(|f| *f != Format::Binary)
    }

    /// The format of a text whose name says nothing: JSON when it starts like an object,
    /// dotenv when it holds sops' flattened `sops_version=` / `sops_mac=` lines, else YAML
    /// (which reads JSON too). `check` reads such files by this, and so does
    /// [`Format::of_encrypted`].
    pub fn sniff(bytes: &[u8]) -> Format {
        let bytes = bytes.strip_prefix(BOM).unwrap_or(bytes);
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
            return Format::Json;
        }
        let dotenv_meta = |l: &[u8]| l.starts_with(b"sops_version=") || l.starts_with(b"sops_mac=");
        if bytes.split(|&b| b == b'\n').any(dotenv_meta) {
            return Format::Dotenv;
        }
        Format::Yaml
    }

    /// The format of an encrypted file whose name says nothing, from its content: JSON with a
    /// top-level `sops` object (binary when `data` is its only other key, as sops writes a
    /// binary file), dotenv with `sops_version=`/`sops_mac=` lines, YAML with a top-level
    /// `sops:` mapping. `None` when it is none of these.
    pub fn of_encrypted(bytes: &[u8]) -> Option<Format> {
        match Format::sniff(bytes) {
            Format::Json => {
                let doc = json::parse(bytes.strip_prefix(BOM).unwrap_or(bytes)).ok()?;
                doc.get(METADATA_KEY)?.as_map()?;
                let only_data = doc.pairs().all(|(k, _)| k == "data" || k == METADATA_KEY)
                    && doc.get("data").is_some();
                Some(if only_data {
                    Format::Binary
                } else {
                    Format::Json
                })
            }
            Format::Dotenv => Some(Format::Dotenv),
            // A line scan, not a parse: the file may be large, and only sops' own layout
            // (`sops:` at the start of a line, a block mapping under it) needs recognising.
            _ => bytes
                .split(|&b| b == b'\n')
                .any(|l| l.strip_suffix(b"\r").unwrap_or(l) == b"sops:")
                .then_some(Format::Yaml),
        }
    }

    /// `--input-type` / `--output-type` values.
    pub fn from_name(name: &str) -> Option<Format> {
        Some(match name {
            "yaml" => Format::Yaml,
            "json" => Format::Json,
            "dotenv" => Format::Dotenv,
            "ini" => Format::Ini,
            "binary" => Format::Binary,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Yaml => "yaml",
            Format::Json => "json",
            Format::Dotenv => "dotenv",
            Format::Ini => "ini",
            Format::Binary => "binary",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid YAML")]
    Yaml(#[from] YamlError),
    #[error("invalid JSON")]
    Json(#[from] JsonError),
    #[error("invalid dotenv")]
    Dotenv(#[from] DotenvError),
    #[error("invalid INI")]
    Ini(#[source] IniError),
    /// What was written would not read back as INI: it stands on its own.
    #[error(transparent)]
    IniWrite(IniError),
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    #[error("binary input that is not UTF-8 text is not supported")]
    BinaryNotUtf8,
    #[error("the input has no document")]
    NoDocument,
    #[error("the file is already encrypted (it has a top-level sops key)")]
    AlreadyEncrypted,
    #[error("the binary store's data key is missing or not a string")]
    BinaryShape,
    /// The emitter's output would not parse: refused rather than written.
    #[error(
        "the YAML written for this file would not read back ({0}); nothing was written. This is a credseal bug: please report the shape of the input (its structure and comments, not its values)"
    )]
    WouldNotReadBack(String),
}

impl StoreError {
    /// Whether the input is well-formed but past a parser limit (nesting depth, alias
    /// expansion, list index): text that could still hide a value, unlike text that is not
    /// YAML, JSON or dotenv at all.
    pub fn exceeds_limit(&self) -> bool {
        matches!(
            self,
            StoreError::Yaml(YamlError::TooDeep { .. } | YamlError::ExcessiveAliasing { .. })
                | StoreError::Json(JsonError::TooDeep { .. })
                | StoreError::Dotenv(
                    DotenvError::MetadataIndex { .. } | DotenvError::MetadataTooDeep { .. }
                )
                | StoreError::Ini(IniError::Metadata(
                    DotenvError::MetadataIndex { .. } | DotenvError::MetadataTooDeep { .. }
                ))
        )
    }
}

/// Reading errors say the input is not valid INI; writing errors stand on their own.
impl From<IniError> for StoreError {
    fn from(e: IniError) -> StoreError {
        if e.is_write_error() {
            StoreError::IniWrite(e)
        } else {
            StoreError::Ini(e)
        }
    }
}

/// Output settings from `.sops.yaml` `stores:` or flags.
#[derive(Clone, Debug)]
pub struct EmitOptions {
    pub yaml_indent: usize,
    /// JSON indent string: a tab by default, or N spaces.
    pub json_indent: String,
}

impl Default for EmitOptions {
    fn default() -> Self {
        EmitOptions {
            yaml_indent: 4,
            json_indent: "\t".into(),
        }
    }
}

/// Parses a plaintext file. Refuses one that is already encrypted (sops exit 203).
pub fn load_plain(input: &[u8], format: Format) -> Result<Tree, StoreError> {
    let tree = parse(input, format)?;
    let first = tree.documents.first().ok_or(StoreError::NoDocument)?;
    let encrypted = match format {
        Format::Dotenv => first.pairs().any(|(k, _)| k.starts_with(DOTENV_PREFIX)),
        Format::Binary => false,
        _ => first.get(METADATA_KEY).is_some(),
    };
    if encrypted {
        return Err(StoreError::AlreadyEncrypted);
    }
    Ok(tree)
}

/// Parses any file of the format, encrypted or not, metadata left in place.
pub fn parse(input: &[u8], format: Format) -> Result<Tree, StoreError> {
    Ok(match format {
        Format::Yaml => {
            let tree = yaml::parse(input)?;
            if tree.documents.is_empty() {
                return Err(StoreError::NoDocument);
            }
            tree
        }
        Format::Json => Tree {
            documents: vec![json::parse(input)?],
        },
        Format::Dotenv => Tree {
            documents: vec![dotenv::parse(input)?],
        },
        Format::Ini => Tree {
            documents: vec![ini::parse(input)?],
        },
        Format::Binary => {
            let text = std::str::from_utf8(input).map_err(|_| StoreError::BinaryNotUtf8)?;
            let mut m = Map::new();
            m.insert("data", Node::str(text));
            Tree { documents: vec![m] }
        }
    })
}

/// Parses an encrypted file and takes the metadata out of the tree (read from the first
/// document; copies in later YAML documents are dropped, as sops does).
pub fn load_encrypted(input: &[u8], format: Format) -> Result<(Tree, Metadata), StoreError> {
    // The binary store's envelope is JSON.
    let parse_as = if format == Format::Binary {
        Format::Json
    } else {
        format
    };
    let mut tree = parse(input, parse_as)?;
    let meta_node = match format {
        Format::Dotenv => {
            let first = tree.documents.first_mut().ok_or(StoreError::NoDocument)?;
            let mut flat = Vec::new();
            first.items.retain(|item| match item {
                MapItem::Pair(k, v) if k.starts_with(DOTENV_PREFIX) => {
                    flat.push((k[DOTENV_PREFIX.len()..].to_owned(), v.clone()));
                    false
                }
                _ => true,
            });
            if flat.is_empty() {
                return Err(MetadataError::Missing.into());
            }
            Node::Map(dotenv::unflatten(flat)?)
        }
        Format::Ini => {
            let first = tree.documents.first_mut().ok_or(StoreError::NoDocument)?;
            Node::Map(ini::take_metadata(first)?.ok_or(MetadataError::Missing)?)
        }
        _ => {
            let mut found = None;
            for (i, doc) in tree.documents.iter_mut().enumerate() {
                let node = doc.remove(METADATA_KEY);
                if i == 0 {
                    found = node;
                }
            }
            found.ok_or(MetadataError::Missing)?
        }
    };
    let meta = Metadata::from_node(&meta_node)?;
    Ok((tree, meta))
}

/// Emits a plaintext tree (decrypt output).
pub fn emit_plain(tree: &Tree, format: Format, opts: &EmitOptions) -> Result<Vec<u8>, StoreError> {
    let first = tree.documents.first().ok_or(StoreError::NoDocument)?;
    Ok(match format {
        Format::Yaml => yaml::emit(
            tree,
            &yaml::EmitOptions {
                indent: opts.yaml_indent,
            },
        ),
        Format::Json => json::emit(first, &opts.json_indent)?,
        Format::Dotenv => dotenv::emit(first)?,
        Format::Ini => ini::emit(first)?,
        Format::Binary => match first.get("data") {
            Some(Node::Str(s)) => s.expose().as_bytes().to_vec(),
            _ => return Err(StoreError::BinaryShape),
        },
    })
}

/// Emits an encrypted tree with its metadata placed where the format keeps it.
pub fn emit_encrypted(
    tree: &Tree,
    meta: &Metadata,
    format: Format,
    opts: &EmitOptions,
) -> Result<Vec<u8>, StoreError> {
    let meta_node = meta.to_node(match format {
        Format::Yaml => MetadataStore::Yaml,
        Format::Json | Format::Binary => MetadataStore::Json,
        _ => MetadataStore::Flat,
    });
    // The metadata is emitted after the tree's own entries; the tree itself is not copied (it
    // holds every value, however large).
    match format {
        Format::Dotenv => {
            let mut first = tree
                .documents
                .first()
                .ok_or(StoreError::NoDocument)?
                .clone();
            let Node::Map(m) = &meta_node else {
                unreachable!("metadata is a mapping")
            };
            dotenv::flatten(m, DOTENV_PREFIX, &mut first);
            Ok(dotenv::emit(&first)?)
        }
        Format::Ini => {
            let first = tree.documents.first().ok_or(StoreError::NoDocument)?;
            let Node::Map(m) = &meta_node else {
                unreachable!("metadata is a mapping")
            };
            Ok(ini::emit_encrypted(first, m)?)
        }
        Format::Yaml => {
            let out = yaml::emit_with(
                tree,
                &MapItem::Pair(METADATA_KEY.into(), meta_node),
                &yaml::EmitOptions {
                    indent: opts.yaml_indent,
                },
            );
            // The emitter follows go-yaml byte for byte, and for a few pathological shapes
            // (fuzz/findings: a comment before an empty flow collection, a block scalar that
            // starts with a blank line) its output does not parse. Never write a file that no
            // one can open again: read it back first.
            yaml::parse(&out).map_err(|e| StoreError::WouldNotReadBack(e.to_string()))?;
            Ok(out)
        }
        Format::Json | Format::Binary => {
            let first = tree.documents.first().ok_or(StoreError::NoDocument)?;
            Ok(json::emit_with(
                first,
                Some((METADATA_KEY, &meta_node)),
                &opts.json_indent,
            )?)
        }
    }
}

/// Emits one extracted value: strings raw, anything else in the output format.
pub fn emit_value(node: &Node, format: Format, opts: &EmitOptions) -> Result<Vec<u8>, StoreError> {
    Ok(match (node, format) {
        (Node::Str(s), _) => s.expose().as_bytes().to_vec(),
        (Node::Map(m), _) => emit_plain(
            &Tree {
                documents: vec![m.clone()],
            },
            format,
            opts,
        )?,
        (_, Format::Json) => json::emit_value(node, &opts.json_indent)?,
        _ => yaml::emit_node(
            node,
            &yaml::EmitOptions {
                indent: opts.yaml_indent,
            },
        ),
    })
}
