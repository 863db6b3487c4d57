//! `check`'s output: the findings as text lines or one JSON document, and its exit code.

use super::OutputFormat;
use crate::cli::exit::{CliResult, Code, Failure};
use credseal::check::Finding;

/// What `check` found across the files it read.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Files judged (not skipped as holding nothing to judge).
    pub checked: usize,
    pub encrypted: usize,
    pub mac_verified: usize,
    pub findings: Vec<Finding>,
}

impl Outcome {
    /// Prints the findings to stdout; with text, a summary line to stderr.
    pub fn print(&self, format: OutputFormat) {
        match format {
            OutputFormat::Json => {
                let doc = serde_json::json!({
                    "checked": self.checked,
                    "encrypted": self.encrypted,
                    "macVerified": self.mac_verified,
                    "findings": self.findings,
                });
                println!("{doc:#}");
            }
            OutputFormat::Text => {
                for f in &self.findings {
                    println!("{}", text_line(f));
                }
                eprintln!(
                    "credseal check: {} file(s) checked, {} encrypted ({} MAC-verified), {} finding(s)",
                    self.checked,
                    self.encrypted,
                    self.mac_verified,
                    self.findings.len()
                );
            }
        }
    }

    /// Any finding fails the command (exit 230).
    pub fn result(&self) -> CliResult {
        if self.findings.is_empty() {
            Ok(())
        } else {
            Err(Failure::msg(
                Code::CheckFindings,
                format!("{} finding(s)", self.findings.len()),
            ))
        }
    }
}

/// `file: location: check: message`, the location left out for the whole file.
fn text_line(f: &Finding) -> String {
    let at = if f.location.is_empty() {
        String::new()
    } else {
        format!(": {}", f.location)
    };
    let check = serde_json::to_value(f.check).unwrap_or_default();
    format!(
        "{}{at}: {}: {}",
        f.file,
        check.as_str().unwrap_or(""),
        f.message
    )
}
