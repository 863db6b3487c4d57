//! The YAML store: an order- and comment-preserving parse into the SOPS tree, and emission
//! byte-for-byte as sops (go-yaml v3) writes it. Spec §10.

mod emit;
mod parse;
pub mod resolve;

use crate::sops::tree::{Node, Tree};

/// Parse errors name the line and column and the problem, never a scalar's content.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum YamlError {
    /// The text is not valid YAML.
    #[error("line {line}, column {column}: {message}")]
    Syntax {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("line {line}: the input is not UTF-8 text")]
    NotUtf8 { line: usize },
    /// sops only handles documents that are mappings.
    #[error(
        "document {document}: the top level must be a mapping (key: value), not a list or a scalar"
    )]
    TopLevelNotMapping { document: usize },
    #[error(
        "line {line}, column {column}: keys must be strings (quote keys like 1, true or dates)"
    )]
    NonStringKey { line: usize, column: usize },
    #[error("line {line}, column {column}: duplicate key {key:?}")]
    DuplicateKey {
        key: String,
        line: usize,
        column: usize,
    },
    #[error("line {line}, column {column}: integer does not fit in 64 bits (signed); quote it")]
    IntegerOutOfRange { line: usize, column: usize },
    #[error("line {line}, column {column}: alias to an unknown anchor")]
    UnknownAlias { line: usize, column: usize },
    #[error("line {line}, column {column}: !!binary value is not base64-encoded UTF-8 text")]
    BadBinary { line: usize, column: usize },
    #[error("line {line}, column {column}: value does not match its !!{tag} tag")]
    TagMismatch {
        tag: String,
        line: usize,
        column: usize,
    },
}

/// Output settings.
pub struct EmitOptions {
    /// Indentation step (sops' default 4; go-yaml accepts 2 to 9).
    pub indent: usize,
}

impl Default for EmitOptions {
    fn default() -> Self {
        EmitOptions { indent: 4 }
    }
}

pub fn parse(input: &[u8]) -> Result<Tree, YamlError> {
    parse::parse(input)
}

pub fn emit(tree: &Tree, opts: &EmitOptions) -> Vec<u8> {
    emit::emit(tree, opts.indent)
}

/// One value as its own YAML document (for `decrypt --extract` of a non-string value).
pub fn emit_node(node: &Node, opts: &EmitOptions) -> Vec<u8> {
    emit::emit_value(node, opts.indent)
}
