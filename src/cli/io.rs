//! Input and output handling shared by the subcommands: stdin or a file in, stdout, an
//! atomically replaced file, or a new output file out.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use clap::Args;

use crate::cli::exit::{CliResult, Code, Failure};
use credseal::file_io;
use credseal::sops::store::{EmitOptions, Format};

/// The input file and how to read it.
#[derive(Args, Debug, Clone)]
pub struct Input {
    /// The file to read, or `-` for standard input.
    pub file: PathBuf,
    /// Input format: yaml, json, dotenv or binary (default: from the file extension, else from
    /// the content of an encrypted file).
    #[arg(long, value_name = "TYPE")]
    pub input_type: Option<String>,
    /// Output format (default: the input format).
    #[arg(long, value_name = "TYPE")]
    pub output_type: Option<String>,
    /// The file name to use for format detection and .sops.yaml matching (useful with stdin).
    #[arg(long, value_name = "NAME")]
    pub filename_override: Option<PathBuf>,
    /// Indentation of YAML/JSON output (default: .sops.yaml stores settings, else 4 / tab).
    #[arg(long, value_name = "N")]
    pub indent: Option<usize>,
}

/// `--input-type` alone, for commands that read encrypted files given by name (flattened
/// into their arguments).
#[derive(Args, Debug, Clone, Default)]
pub struct InputType {
    /// Input format: yaml, json, dotenv or binary (default: from the file extension, else from
    /// the content of an encrypted file).
    #[arg(long, value_name = "TYPE")]
    pub input_type: Option<String>,
}

impl InputType {
    /// The input `file` read with this `--input-type`.
    pub fn input(&self, file: PathBuf) -> Input {
        Input {
            input_type: self.input_type.clone(),
            ..Input::from_path(file)
        }
    }
}

/// Where the result goes.
#[derive(Args, Debug, Clone)]
pub struct Output {
    /// Write the result back to the input file (atomically).
    #[arg(short = 'i', long, conflicts_with = "output")]
    pub in_place: bool,
    /// Write the result to this file (atomically) instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

impl Input {
    /// A plain file argument with no format overrides.
    pub fn from_path(file: PathBuf) -> Input {
        Input {
            file,
            input_type: None,
            output_type: None,
            filename_override: None,
            indent: None,
        }
    }

    pub fn is_stdin(&self) -> bool {
        self.file.as_os_str() == "-"
    }

    /// The name used for format detection and rule matching.
    pub fn name(&self) -> &Path {
        self.filename_override.as_deref().unwrap_or(&self.file)
    }

    pub fn display(&self) -> String {
        if self.is_stdin() && self.filename_override.is_none() {
            "<stdin>".into()
        } else {
            self.name().display().to_string()
        }
    }

    pub fn read(&self) -> CliResult<Vec<u8>> {
        if self.is_stdin() {
            let mut buf = Vec::new();
            std::io::stdin().read_to_end(&mut buf).map_err(|e| {
                Failure::new(Code::CouldNotReadInput, e).context("cannot read standard input")
            })?;
            return Ok(buf);
        }
        if !self.file.exists() {
            return Err(Failure::msg(
                Code::NoFileSpecified,
                format!("{}: no such file", self.file.display()),
            ));
        }
        file_io::read(&self.file).map_err(|e| Failure::new(Code::CouldNotReadInput, e))
    }

    pub fn input_format(&self) -> CliResult<Format> {
        parse_format(self.input_type.as_deref())
            .map(|f| f.unwrap_or_else(|| Format::from_path(self.name())))
    }

    /// The format of an encrypted input: `--input-type`, else what the name states, else
    /// (a pipe, `/dev/fd/N`, git's extension-less temp files) what the content shows, else
    /// binary as sops would read it.
    pub fn encrypted_format(&self, data: &[u8]) -> CliResult<Format> {
        if let Some(f) = parse_format(self.input_type.as_deref())? {
            return Ok(f);
        }
        Ok(Format::named_by(self.name())
            .or_else(|| Format::of_encrypted(data))
            .unwrap_or(Format::Binary))
    }

    /// `--output-type`, else `input` (the format the input was read as).
    pub fn output_format_or(&self, input: Format) -> CliResult<Format> {
        Ok(parse_format(self.output_type.as_deref())?.unwrap_or(input))
    }

    pub fn output_format(&self) -> CliResult<Format> {
        match parse_format(self.output_type.as_deref())? {
            Some(f) => Ok(f),
            None => self.input_format(),
        }
    }

    /// Emit options: `--indent` over `.sops.yaml` `stores:` over sops' defaults.
    pub fn emit_options(
        &self,
        stores: Option<&credseal::sops::config::StoreSettings>,
    ) -> EmitOptions {
        let mut opts = EmitOptions::default();
        if let Some(s) = stores {
            if let Some(i) = s.yaml_indent {
                opts.yaml_indent = i;
            }
            if let Some(i) = s.json_indent.filter(|i| *i >= 0) {
                opts.json_indent = " ".repeat(i as usize);
            }
        }
        if let Some(i) = self.indent {
            opts.yaml_indent = i;
            opts.json_indent = " ".repeat(i);
        }
        opts
    }
}

fn parse_format(name: Option<&str>) -> CliResult<Option<Format>> {
    match name {
        None => Ok(None),
        Some(n) => Format::from_name(n).map(Some).ok_or_else(|| {
            Failure::msg(
                Code::ConflictingParameters,
                format!("unknown format {n:?}: use yaml, json, dotenv, ini or binary"),
            )
        }),
    }
}

impl Output {
    /// Writes the result: in place (atomic, keeps the file's mode), to `--output` (atomic,
    /// `new_mode` for a new file), or to stdout. A broken pipe on stdout is not an error.
    pub fn write(&self, input: &Input, data: &[u8], new_mode: u32) -> CliResult {
        if self.in_place {
            if input.is_stdin() {
                return Err(Failure::msg(
                    Code::ConflictingParameters,
                    "--in-place cannot be used with standard input",
                ));
            }
            return file_io::write_atomic(&input.file, data, new_mode)
                .map_err(|e| Failure::new(Code::CouldNotWriteOutput, e));
        }
        if let Some(path) = &self.output {
            return file_io::write_atomic(path, data, new_mode)
                .map_err(|e| Failure::new(Code::CouldNotWriteOutput, e));
        }
        write_stdout(data)
    }
}

pub fn write_stdout(data: &[u8]) -> CliResult {
    let mut out = std::io::stdout().lock();
    match out.write_all(data).and_then(|_| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => {
            Err(Failure::new(Code::CouldNotWriteOutput, e)
                .context("cannot write to standard output"))
        }
    }
}
