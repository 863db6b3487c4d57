//! `credseal filestatus`: whether a file is SOPS-encrypted, printed as sops prints it
//! (`{"encrypted":true}` / `{"encrypted":false}`), without decrypting anything.

use std::path::PathBuf;

use clap::Args as ClapArgs;

use crate::cli::exit::{CliResult, Code, Failure};
use crate::cli::io::{InputType, write_stdout};
use credseal::sops::metadata::MetadataError;
use credseal::sops::store::{self, StoreError};

#[derive(ClapArgs, Debug)]
pub struct Args {
    #[command(flatten)]
    pub input_type: InputType,
    /// The file to look at.
    pub file: PathBuf,
}

/// Exit 0 with the answer; exit 1 (as sops) when the file cannot be read or parsed, or has
/// `sops` metadata that cannot be read.
pub fn run(args: Args) -> CliResult {
    let input = args.input_type.input(args.file);
    let name = input.display();
    let fail = |e: Failure| Failure {
        code: Code::Generic,
        ..e
    };
    let data = input.read().map_err(fail)?;
    let format = input.encrypted_format(&data).map_err(fail)?;
    let encrypted = match store::load_encrypted(&data, format) {
        // sops: encrypted once the metadata reads, if it has a version and a MAC.
        Ok((_, meta)) => !meta.version.is_empty() && !meta.mac.is_empty(),
        Err(StoreError::Metadata(MetadataError::Missing) | StoreError::NoDocument) => false,
        // sops reads a missing version as empty: not encrypted, not an error.
        Err(StoreError::Metadata(MetadataError::BadVersion(v))) if v.is_empty() => false,
        Err(e) => {
            return Err(Failure::new(Code::Generic, e)
                .context(format!("{name}: cannot tell whether it is encrypted")));
        }
    };
    write_stdout(format!("{{\"encrypted\":{encrypted}}}\n").as_bytes())
}
