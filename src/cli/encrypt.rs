//! `credseal encrypt`.

use clap::Args as ClapArgs;

use crate::cli::env::Env;
use crate::cli::exit::in_file;
use crate::cli::exit::{CliResult, Code, Failure};
use crate::cli::io::{Input, Output};
use crate::cli::key_plan::{self, PgpSources};
use crate::cli::{config, now};
use credseal::manifest;
use credseal::sops::file::{self, Context, EncryptSettings};
use credseal::sops::keys::Recipient;
use credseal::sops::master_key::MasterKey;
use credseal::sops::rules::Selector;
use credseal::sops::store;
use credseal::sops::walk::OsEntropy;

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
    /// PGP fingerprints, comma-separated (with --age, or alone; overrides SOPS_PGP_FP and
    /// .sops.yaml). The
    /// public keys come from --pgp-public-keys, .sops.yaml `pgp_public_keys:` or gpg.
    #[arg(long, value_name = "FP1,FP2")]
    pub pgp: Option<String>,
    #[command(flatten)]
    pub pgp_sources: PgpSources,
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
    let tree = store::load_plain(&data, in_format).map_err(|e| in_file(&name, e))?;

    let loaded = config::find(args.config.as_deref(), env.config.as_deref())?;
    let flag_recipients = args.age.as_deref().or(env.age_recipients.as_deref());
    let flag_source = if args.age.is_some() {
        "--age"
    } else {
        "SOPS_AGE_RECIPIENTS"
    };
    let flag_pgp = args.pgp.as_deref().or(env.pgp_fp.as_deref());
    let key_flags = flag_recipients.is_some() || flag_pgp.is_some();
    let rule = match &loaded {
        Some(l) => match l.config.rule_for(&l.rule_path(args.input.name())) {
            Ok(r) => Some(r),
            // Without key flags the rule is required; with them a missing rule is fine.
            Err(e) if !key_flags => {
                return Err(Failure::from(e));
            }
            Err(_) => None,
        },
        None => None,
    };

    // Key flags replace the rule's keys, as in sops.
    let keys: Vec<MasterKey> = if key_flags {
        let age = match flag_recipients {
            Some(list) => Recipient::parse_list_from(list, flag_source)
                .map_err(|e| Failure::new(Code::Generic, e))?,
            None => Vec::new(),
        };
        age.iter()
            .map(|r| MasterKey::age(r.as_str()))
            .chain(key_plan::from_flag("pgp", flag_pgp))
            .collect()
    } else {
        match (rule, &loaded) {
            (Some(r), Some(l)) => r
                .keys()
                .map_err(|e| Failure::from(e).context(l.path.display().to_string()))?
                .to_vec(),
            _ => Vec::new(),
        }
    };
    if keys.is_empty() {
        return Err(Failure::msg(
            Code::NoEncryptionKeyFound,
            "no age recipients: pass --age, set SOPS_AGE_RECIPIENTS, or add a creation rule to .sops.yaml",
        ));
    }
    let keys = key_plan::plan(
        keys,
        |_| true,
        &args.pgp_sources,
        loaded.as_ref(),
        rule.filter(|_| !key_flags),
    )?;

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
        keys,
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
        let f = in_file(&name, e);
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
