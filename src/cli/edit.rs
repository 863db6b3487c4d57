//! `credseal edit`: the plaintext goes to a 0600 file in a private temporary directory that is
//! removed on every exit path, signals included (see `session`); only a changed, parseable
//! result is written back.

mod session;

use std::io::{BufRead, IsTerminal, Write};

use clap::Args as ClapArgs;

use crate::cli::config;
use crate::cli::encrypt;
use crate::cli::env::Env;
use crate::cli::exit::in_file;
use crate::cli::exit::{CliResult, Code, Failure};
use crate::cli::io::{Input, InputType, Output};
use crate::cli::keyring::split_command;
use crate::cli::sopsfile::{emit_options, open, write_back};
use credseal::file_io;
use credseal::sops::store::{self, Format};
use credseal::sops::tree::Tree;

pub use session::Session;

#[derive(ClapArgs, Debug)]
pub struct Args {
    /// The encrypted file to edit. A file that does not exist yet is created, encrypted as
    /// the matching .sops.yaml rule says, from an example to edit (as sops does); it is
    /// written only if the example was changed.
    pub file: std::path::PathBuf,
    /// Do not verify the MAC before editing (to repair a damaged file).
    #[arg(long)]
    pub ignore_mac: bool,
    #[command(flatten)]
    pub input_type: InputType,
}

pub fn run(args: Args, env: &Env) -> CliResult {
    let input = args.input_type.input(args.file);
    let name = input.display();
    // Before anything is decrypted: from here on a signal cannot leave plaintext behind.
    let session = Session::start(name.clone(), "edit")?;
    if !input.is_stdin() && std::fs::symlink_metadata(&input.file).is_err() {
        return create(&input, env, &session);
    }
    let mut opened = open(&input, env, args.ignore_mac)?;
    let opts = emit_options(&input, env);
    let format = opened.format;
    let plain = opened
        .emit_plain(format, &opts)
        .map_err(|e| in_file(&name, e))?;
    let new_tree = edit_until_valid(&session, &input, env, &plain, format)?;
    if new_tree == opened.tree {
        return Err(unmodified(&name));
    }
    opened.tree = new_tree;
    session.finish(|| write_back(&mut opened, &input, &opts))
    // `session` is dropped here and on every early return: the plaintext goes with it.
}

/// `edit` of a file that does not exist: sops' example for the format in the editor; a
/// changed, valid result is encrypted to the new file as `encrypt` would (the matching rule's
/// recipients and selection), an unchanged one writes nothing (exit 200).
fn create(input: &Input, env: &Env, session: &Session) -> CliResult {
    let name = input.display();
    // Refuse before the user types anything: a missing or non-matching rule is known now.
    if env.age_recipients.is_none() {
        let Some(loaded) = config::find(None, env.config.as_deref())? else {
            return Err(Failure::msg(
                Code::NoEncryptionKeyFound,
                format!(
                    "{name} does not exist, and there are no age recipients to create it for: set SOPS_AGE_RECIPIENTS or add a creation rule to .sops.yaml"
                ),
            ));
        };
        loaded
            .config
            .rule_for(&loaded.rule_path(&input.file))
            .map_err(|e| Failure::from(e).context(name.clone()))?;
    }
    let format = input.input_format()?;
    let template = new_file_template(format);
    edit_until_valid(session, input, env, template, format)?;
    let plaintext = session.private_dir()?.join(plaintext_name(input));
    let encrypt = encrypt::Args {
        input: Input {
            input_type: input.input_type.clone(),
            filename_override: Some(input.file.clone()),
            ..Input::from_path(plaintext)
        },
        output: Output {
            in_place: false,
            output: Some(input.file.clone()),
        },
        age: None,
        pgp: None,
        pgp_sources: Default::default(),
        selection: Default::default(),
        config: None,
    };
    session.finish(|| encrypt::run(encrypt, env))
}

/// What sops 3.11 puts in the editor for a new file of each format, byte for byte.
fn new_file_template(format: Format) -> &'static [u8] {
    match format {
        Format::Yaml => {
            b"hello: Welcome to SOPS! Edit this file as you please!\nexample_key: example_value\n# Example comment\nexample_array:\n    - example_value1\n    - example_value2\nexample_number: 1234.56789\nexample_booleans:\n    - true\n    - false\n"
        }
        Format::Json => {
            b"{\n\t\"hello\": \"Welcome to SOPS! Edit this file as you please!\",\n\t\"example_key\": \"example_value\",\n\t\"example_array\": [\n\t\t\"example_value1\",\n\t\t\"example_value2\"\n\t],\n\t\"example_number\": 1234.56789,\n\t\"example_booleans\": [\n\t\ttrue,\n\t\tfalse\n\t]\n}\n"
        }
        Format::Dotenv => {
            b"# This is an example file.\nhello=Welcome to SOPS! Edit this file as you please!\nexample_key=example_value\nexample_multiline=foo\\nbar\\nbaz\n"
        }
        Format::Ini => {
            b"; This is an example file.\n[Welcome!]\nhello       = Welcome to SOPS! Edit this file as you please!\nexample_key = example_value\n"
        }
        Format::Binary => b"Welcome to SOPS! Edit this file as you please!",
    }
}

/// The plaintext file's name in the private directory: the extension kept for the editor's
/// syntax highlighting.
fn plaintext_name(input: &Input) -> String {
    let ext = input
        .name()
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    format!("plaintext{ext}")
}

fn unmodified(name: &str) -> Failure {
    Failure::msg(
        Code::FileHasNotBeenModified,
        format!("{name}: file has not been modified"),
    )
}

/// Puts `plain` in the private directory, runs the editor until the result parses (asking on a
/// terminal), and returns it. The result stays in the directory for the caller.
fn edit_until_valid(
    session: &Session,
    input: &Input,
    env: &Env,
    plain: &[u8],
    format: Format,
) -> CliResult<Tree> {
    let name = input.display();
    let tmp = session.create_plaintext(&plaintext_name(input), plain)?;
    let editor = find_editor(env)?;
    loop {
        let status = session.edit(&editor, &tmp)?;
        if !status.success() {
            // sops' code for an editor that could not be run or failed.
            return Err(Failure::msg(
                Code::NoEditorFound,
                format!("editor {} exited with {status}; file untouched", editor[0]),
            ));
        }
        let edited = file_io::read(&tmp).map_err(|e| Failure::new(Code::CouldNotReadInput, e))?;
        if edited == plain {
            return Err(unmodified(&name));
        }
        match store::load_plain(&edited, format) {
            Ok(tree) => return Ok(tree),
            Err(e) => {
                eprintln!(
                    "credseal: the edited file is not valid: {}",
                    credseal::sops::error_text::with_causes(&e)
                );
                if !ask_reedit()? {
                    return Err(Failure::new(Code::CouldNotReadInput, e)
                        .context(format!("{name}: edit abandoned, file untouched")));
                }
            }
        }
    }
}

fn find_editor(env: &Env) -> CliResult<Vec<String>> {
    if let Some(e) = &env.editor {
        return split_command(e).filter(|v| !v.is_empty()).ok_or_else(|| {
            Failure::msg(
                Code::NoEditorFound,
                "the editor command ($SOPS_EDITOR/$EDITOR) cannot be parsed",
            )
        });
    }
    for candidate in ["vim", "nano", "vi"] {
        if let Some(path) = std::env::var_os("PATH")
            .into_iter()
            .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .map(|d| d.join(candidate))
            .find(|p| p.is_file())
        {
            return Ok(vec![path.to_string_lossy().into_owned()]);
        }
    }
    Err(Failure::msg(
        Code::NoEditorFound,
        "no editor found: set $EDITOR (or $SOPS_EDITOR)",
    ))
}

/// On a terminal, asks whether to edit again; elsewhere the edit is abandoned.
fn ask_reedit() -> CliResult<bool> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Ok(false);
    }
    eprint!("Edit again? [Y/n] ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    stdin
        .lock()
        .read_line(&mut line)
        .map_err(|e| Failure::new(Code::Generic, e))?;
    Ok(!matches!(line.trim(), "n" | "N" | "no"))
}
