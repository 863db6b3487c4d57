//! `credseal encrypt`.

use clap::Args as ClapArgs;

use crate::cli::env::Env;
use crate::cli::exit::{CliResult, Code, Failure};
use crate::cli::io::{Input, Output};
use crate::cli::{config, now, sops_failure};
use crate::manifest;
use crate::sops::file::{self, Context, EncryptSettings};
use crate::sops::keys::Recipient;
use crate::sops::rules::Selector;
use crate::sops::store;
use crate::sops::walk::OsEntropy;

/// The six selection flags; each overrides the same field of the matching creation rule.
#[derive(ClapArgs, Debug, Clone, Default)]
pub struct Selection {
    /// Leave values under keys ending with this suffix in clear.
    #[arg(long, value_name = "SUFFIX")]
    pub unencrypted_suffix: Option<String>,
    /// Encrypt only values under keys ending with this suffix.
    #[arg(long, value_name = "SUFFIX")]
    pub encrypted_suffix: Option<String>,
    /// Leave values under keys matching this regex in clear.
    #[arg(long, value_name = "REGEX")]
    pub unencrypted_regex: Option<String>,
    /// Encrypt only values under keys matching this regex.
    #[arg(long, value_name = "REGEX")]
    pub encrypted_regex: Option<String>,
    /// Leave values preceded by a comment matching this regex in clear.
    #[arg(long, value_name = "REGEX")]
    pub unencrypted_comment_regex: Option<String>,
    /// Encrypt only values preceded by a comment matching this regex.
    #[arg(long, value_name = "REGEX")]
    pub encrypted_comment_regex: Option<String>,
    /// Compute the MAC over encrypted values only (lets tools edit clear values).
    #[arg(long)]
    pub mac_only_encrypted: bool,
}

impl Selection {
    fn fields(&self) -> [Option<&str>; 6] {
        [
            self.unencrypted_suffix.as_deref(),
            self.encrypted_suffix.as_deref(),
            self.unencrypted_regex.as_deref(),
            self.encrypted_regex.as_deref(),
            self.unencrypted_comment_regex.as_deref(),
            self.encrypted_comment_regex.as_deref(),
        ]
    }
}

#[derive(ClapArgs, Debug)]
pub struct Args {
    #[command(flatten)]
    pub input: Input,
    #[command(flatten)]
    pub output: Output,
    /// age recipients, comma-separated (overrides SOPS_AGE_RECIPIENTS and .sops.yaml).
    #[arg(short = 'a', long, value_name = "R1,R2")]
    pub age: Option<String>,
    #[command(flatten)]
    pub selection: Selection,
    /// Path of the .sops.yaml to use (default: SOPS_CONFIG, else searched upwards from the
    /// current directory).
    #[arg(long, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
}

pub fn run(args: Args, env: &Env) -> CliResult {
    let name = args.input.display();
    let data = args.input.read()?;
    let in_format = args.input.input_format()?;
    let out_format = args.input.output_format()?;
    let tree = store::load_plain(&data, in_format).map_err(|e| sops_failure(&name, e.into()))?;

    let loaded = config::find(args.config.as_deref(), env.config.as_deref())?;
    let flag_recipients = args.age.as_deref().or(env.age_recipients.as_deref());
    let flag_source = if args.age.is_some() {
        "--age"
    } else {
        "SOPS_AGE_RECIPIENTS"
    };
    let rule = match &loaded {
        Some(l) => match l.config.rule_for(&l.rule_path(args.input.name())) {
            Ok(r) => Some(r),
            // Without key flags the rule is required; with them a missing rule is fine.
            Err(e) if flag_recipients.is_none() => {
                return Err(Failure::new(Code::ErrorReadingConfig, e));
            }
            Err(_) => None,
        },
        None => None,
    };

    let recipients = match flag_recipients {
        Some(list) => Recipient::parse_list_from(list, flag_source)
            .map_err(|e| Failure::new(Code::Generic, e))?,
        None => match rule {
            Some(r) => {
                if !r.other_key_types.is_empty() && r.key_groups.iter().all(Vec::is_empty) {
                    return Err(Failure::msg(
                        Code::NoEncryptionKeyFound,
                        format!(
                            "the matching creation rule uses {} keys only; credseal encrypts to age recipients",
                            r.other_key_types.join(", ")
                        ),
                    ));
                }
                r.recipients()
                    .map_err(|e| Failure::new(Code::Generic, e))?
                    .to_vec()
            }
            None => Vec::new(),
        },
    };
    if recipients.is_empty() {
        return Err(Failure::msg(
            Code::NoEncryptionKeyFound,
            "no age recipients: pass --age, set SOPS_AGE_RECIPIENTS, or add a creation rule to .sops.yaml",
        ));
    }

    // Flags override the rule field by field; then the one-selector check; then defaults.
    let flags = args.selection.fields();
    let mut fields: [Option<&str>; 6] =
        std::array::from_fn(|i| rule.and_then(|r| r.selector_fields[i].as_deref()));
    for (f, flag) in fields.iter_mut().zip(flags) {
        if flag.is_some() {
            *f = flag;
        }
    }
    let nothing_set = fields.iter().all(|f| f.is_none_or(str::is_empty));
    let selector = if nothing_set && manifest::all_secrets(&tree) {
        Selector::from_key("encrypted_regex", manifest::SECRET_ENCRYPTED_REGEX)
            .expect("valid regex")
    } else {
        Selector::from_fields(fields).map_err(|e| Failure::new(Code::ConflictingParameters, e))?
    };
    let settings = EncryptSettings {
        recipients,
        selector,
        mac_only_encrypted: args.selection.mac_only_encrypted
            || rule.is_some_and(|r| r.mac_only_encrypted),
    };
    let opts = args
        .input
        .emit_options(loaded.as_ref().map(|l| &l.config.stores));
    let mut entropy = OsEntropy;
    let mut ctx = Context {
        entropy: &mut entropy,
        now: now(),
    };
    let out = file::encrypt(tree, out_format, &settings, &mut ctx, &opts).map_err(|e| {
        let f = sops_failure(&name, e);
        if f.code == Code::ErrorDecryptingTree {
            Failure {
                code: Code::ErrorEncryptingTree,
                ..f
            }
        } else {
            f
        }
    })?;
    args.output.write(&args.input, &out, 0o644)
}
