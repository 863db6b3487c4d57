//! Placeholder until the YAML layer lands (being written in parallel).
use crate::sops::tree::{Node, Tree};

#[derive(Debug, thiserror::Error)]
pub enum YamlError {
    #[error("YAML support is not built yet")]
    Unsupported,
}

pub struct EmitOptions {
    pub indent: usize,
}

impl Default for EmitOptions {
    fn default() -> Self {
        EmitOptions { indent: 4 }
    }
}

pub fn parse(_input: &[u8]) -> Result<Tree, YamlError> {
    Err(YamlError::Unsupported)
}

pub fn emit(_tree: &Tree, _opts: &EmitOptions) -> Vec<u8> {
    Vec::new()
}

pub fn emit_node(_node: &Node, _opts: &EmitOptions) -> Vec<u8> {
    Vec::new()
}
