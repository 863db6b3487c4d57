//! The YAML store: an order- and comment-preserving parse into the SOPS tree, and emission
//! byte for byte as sops (go-yaml v3) writes it. Spec §10.
//!
//! * [`parse`] reads every document of a stream. Scalars get go-yaml v3's types (§10.1, not
//!   YAML 1.1), anchors and aliases are expanded, `<<` stays an ordinary key, comments become
//!   tree entries where sops puts them (§10.3, see `parse.rs`).
//! * [`emit`] writes what sops' `EmitPlainFile` writes for the same tree (§10.4), including the
//!   comment placement of sops 3.13 (inline comments stay on the value's line).
//! * [`emit_node`] writes one value as sops' `EmitValue` does (`decrypt --extract`).

mod emit;
mod parse;
mod resolve;

use crate::tree::{MapItem, Node, Tree};

/// Why YAML text could not be read. Messages name the line and column (1-based) and the
/// problem; they never contain a scalar's content (values may be secrets), only keys.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum YamlError {
    /// The text is not well-formed YAML (the message is the parser's description).
    #[error("invalid YAML at line {line}, column {column}: {message}")]
    Syntax {
        line: usize,
        column: usize,
        message: String,
    },
    /// The input is not UTF-8.
    #[error("invalid YAML at line {line}: the input is not UTF-8 text")]
    NotUtf8 { line: usize },
    /// A document is a sequence or a scalar; sops only handles mappings (docs/sops-format.md §10.2).
    #[error(
        "YAML document {document} is not a mapping: the top level must be key: value pairs (lists and single values are not supported)"
    )]
    TopLevelNotMapping { document: usize },
    /// A mapping key is not a string (an unquoted number, bool, null, date, or a collection).
    #[error(
        "YAML key at line {line}, column {column} is not a string; quote keys such as 1, true or dates"
    )]
    NonStringKey { line: usize, column: usize },
    /// The same key appears twice in one mapping of the first document (docs/sops-format.md §10.2).
    #[error("duplicate YAML key {key:?} at line {line}, column {column}")]
    DuplicateKey {
        key: String,
        line: usize,
        column: usize,
    },
    /// An integer that does not fit in a signed 64-bit integer (sops cannot store it).
    #[error(
        "YAML value at line {line}, column {column} is an integer too large for 64 bits (signed); quote it to keep it as a string"
    )]
    IntegerOutOfRange { line: usize, column: usize },
    /// Mappings and sequences nested deeper than [`MAX_DEPTH`](crate::tree::MAX_DEPTH),
    /// directly or through an alias.
    #[error(
        "YAML at line {line}, column {column}: mappings and sequences nested more than {limit} levels deep (the limit)"
    )]
    TooDeep {
        line: usize,
        column: usize,
        limit: usize,
    },
    /// Aliases would expand the document far beyond its text (a "billion laughs" document):
    /// go-yaml's alias budget, which sops applies too.
    #[error(
        "YAML alias or anchor at line {line}, column {column}: the document contains excessive aliasing (aliases would expand it far beyond its size)"
    )]
    ExcessiveAliasing { line: usize, column: usize },
    /// An alias names an anchor that was not defined before it.
    #[error("YAML alias at line {line}, column {column} refers to an unknown anchor")]
    UnknownAlias { line: usize, column: usize },
    /// A `!!binary` scalar is not base64 of UTF-8 text.
    #[error("YAML !!binary value at line {line}, column {column} is not base64-encoded UTF-8 text")]
    BadBinary { line: usize, column: usize },
    /// A scalar with an explicit core tag (`!!int`, `!!bool`, …) does not have that type.
    #[error("YAML value at line {line}, column {column} does not match its !!{tag} tag")]
    TagMismatch {
        tag: String,
        line: usize,
        column: usize,
    },
}

/// Output settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EmitOptions {
    /// Indentation step: sops' default is 4, `stores.yaml.indent` changes it; go-yaml uses 2 for
    /// values outside 2..=9.
    pub indent: usize,
}

impl Default for EmitOptions {
    fn default() -> Self {
        EmitOptions { indent: 4 }
    }
}

/// Parses a YAML stream: one tree document per YAML document (an empty document is an empty
/// mapping; an empty input has no documents).
pub fn parse(input: &[u8]) -> Result<Tree, YamlError> {
    parse::parse(input)
}

/// Writes the tree as sops does: one YAML document per tree document, separated by `---`,
/// ending with a newline.
pub fn emit(tree: &Tree, opts: &EmitOptions) -> Vec<u8> {
    emit::emit_tree(tree, None, opts.indent)
}

/// As [`emit`], with `last` appended to every document (an encrypted file's metadata) without
/// copying the tree.
pub fn emit_with(tree: &Tree, last: &MapItem, opts: &EmitOptions) -> Vec<u8> {
    emit::emit_tree(tree, Some(last), opts.indent)
}

/// Writes one value as its own YAML document (used by `decrypt --extract` for values that are
/// not strings).
pub fn emit_node(node: &Node, opts: &EmitOptions) -> Vec<u8> {
    emit::emit_value(node, opts.indent)
}

#[cfg(test)]
mod tests;
