//! A tiny age plugin for the test suite (`tests/it/age_keys.rs`): the age plugin protocol
//! (recipient-v1 and identity-v1, as C2SP's age-plugin spec describes it) written out by
//! hand, so the suite needs no real hardware plugin and no extra crate.
//!
//! It is no cryptography: the recipient `age1credsealtest1…` and the identity
//! `AGE-PLUGIN-CREDSEALTEST-1…` carry the same 16-byte key, and the file key is wrapped by
//! XOR with it. An identity made with `--generate-asking` asks its client for a secret first
//! (as a PIN-protected hardware key would) and fails without one.
//!
//! `age-plugin-credsealtest --generate` prints the identity, then the recipient, one a line.

use std::io::{self, BufRead, Write};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use bech32::{FromBase32, ToBase32, Variant};

const RECIPIENT_HRP: &str = "age1credsealtest";
const IDENTITY_HRP: &str = "age-plugin-credsealtest-";
const STANZA_TAG: &str = "credsealtest";
/// The identity's first byte: whether it asks its client for a secret.
const PLAIN: u8 = 0;
const ASKING: u8 = 1;

fn main() {
    let arg = std::env::args().nth(1).unwrap_or_default();
    let result = match arg.as_str() {
        "--generate" => generate(PLAIN),
        "--generate-asking" => generate(ASKING),
        "--age-plugin=recipient-v1" => recipient_v1(),
        "--age-plugin=identity-v1" => identity_v1(),
        _ => {
            eprintln!("usage: age-plugin-credsealtest --generate | --age-plugin=STATE_MACHINE");
            std::process::exit(2);
        }
    };
    if let Err(e) = result {
        eprintln!("age-plugin-credsealtest: {e}");
        std::process::exit(1);
    }
}

fn generate(mode: u8) -> io::Result<()> {
    let key: [u8; 16] = rand::random();
    let mut identity = vec![mode];
    identity.extend_from_slice(&key);
    let id = bech32::encode(IDENTITY_HRP, identity.to_base32(), Variant::Bech32)
        .expect("valid HRP")
        .to_uppercase();
    let recipient =
        bech32::encode(RECIPIENT_HRP, key.to_base32(), Variant::Bech32).expect("valid HRP");
    println!("{id}\n{recipient}");
    Ok(())
}

/// One protocol stanza: `-> tag args…` and its body.
struct Stanza {
    tag: String,
    args: Vec<String>,
    body: Vec<u8>,
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

fn read_stanza(input: &mut impl BufRead) -> io::Result<Stanza> {
    let mut line = String::new();
    if input.read_line(&mut line)? == 0 {
        return Err(bad("unexpected end of input"));
    }
    let mut words = line
        .trim_end_matches('\n')
        .strip_prefix("-> ")
        .ok_or_else(|| bad("expected a stanza"))?
        .split(' ')
        .map(str::to_owned);
    let tag = words.next().unwrap_or_default();
    let args = words.collect();
    // Body: base64 lines of 64 characters, ended by a shorter (possibly empty) line.
    let mut encoded = String::new();
    loop {
        let mut body_line = String::new();
        if input.read_line(&mut body_line)? == 0 {
            return Err(bad("unexpected end of input in a stanza body"));
        }
        let body_line = body_line.trim_end_matches('\n');
        encoded.push_str(body_line);
        if body_line.len() < 64 {
            break;
        }
    }
    let body = B64.decode(encoded).map_err(|_| bad("bad base64"))?;
    Ok(Stanza { tag, args, body })
}

fn write_stanza(out: &mut impl Write, tag: &str, args: &[&str], body: &[u8]) -> io::Result<()> {
    let mut head = format!("-> {tag}");
    for a in args {
        head.push(' ');
        head.push_str(a);
    }
    writeln!(out, "{head}")?;
    let encoded = B64.encode(body);
    let mut last_len = 0;
    for chunk in encoded.as_bytes().chunks(64) {
        out.write_all(chunk)?;
        out.write_all(b"\n")?;
        last_len = chunk.len();
    }
    if last_len == 64 || encoded.is_empty() {
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// Phase 1: the client's stanzas up to `done`.
fn read_phase1(input: &mut impl BufRead) -> io::Result<Vec<Stanza>> {
    let mut all = Vec::new();
    loop {
        let s = read_stanza(input)?;
        if s.tag == "done" {
            return Ok(all);
        }
        all.push(s);
    }
}

/// Sends one phase-2 command and reads the client's answer (`ok`, `fail`, `unsupported`).
fn ask(
    input: &mut impl BufRead,
    out: &mut impl Write,
    tag: &str,
    args: &[&str],
    body: &[u8],
) -> io::Result<Stanza> {
    write_stanza(out, tag, args, body)?;
    read_stanza(input)
}

fn decode(s: &str, hrp: &str) -> Option<Vec<u8>> {
    let (got, data, variant) = bech32::decode(s).ok()?;
    (got == hrp && variant == Variant::Bech32)
        .then(|| Vec::<u8>::from_base32(&data).ok())
        .flatten()
}

fn xor(a: &[u8], key: &[u8]) -> Vec<u8> {
    a.iter()
        .zip(key.iter().cycle())
        .map(|(x, k)| x ^ k)
        .collect()
}

fn recipient_v1() -> io::Result<()> {
    let stdin = io::stdin();
    let mut input = stdin.lock();
    let mut out = io::stdout().lock();
    let phase1 = read_phase1(&mut input)?;
    let keys: Vec<Vec<u8>> = phase1
        .iter()
        .filter(|s| s.tag == "add-recipient")
        .filter_map(|s| decode(s.args.first()?, RECIPIENT_HRP))
        .collect();
    let file_keys: Vec<&Vec<u8>> = phase1
        .iter()
        .filter(|s| s.tag == "wrap-file-key")
        .map(|s| &s.body)
        .collect();
    if keys.len() != phase1.iter().filter(|s| s.tag == "add-recipient").count() {
        ask(
            &mut input,
            &mut out,
            "error",
            &["recipient", "0"],
            b"bad recipient",
        )?;
    } else {
        for (i, file_key) in file_keys.iter().enumerate() {
            for key in &keys {
                let tag = hex4(key);
                let index = i.to_string();
                ask(
                    &mut input,
                    &mut out,
                    "recipient-stanza",
                    &[&index, STANZA_TAG, &tag],
                    &xor(file_key, key),
                )?;
            }
        }
    }
    write_stanza(&mut out, "done", &[], &[])
}

fn identity_v1() -> io::Result<()> {
    let stdin = io::stdin();
    let mut input = stdin.lock();
    let mut out = io::stdout().lock();
    let phase1 = read_phase1(&mut input)?;
    let identities: Vec<Vec<u8>> = phase1
        .iter()
        .filter(|s| s.tag == "add-identity")
        .filter_map(|s| decode(&s.args.first()?.to_lowercase(), IDENTITY_HRP))
        .filter(|d| d.len() == 17)
        .collect();
    let mut done_files = Vec::new();
    for s in phase1.iter().filter(|s| s.tag == "recipient-stanza") {
        let (Some(file), Some(kind), Some(tag)) = (s.args.first(), s.args.get(1), s.args.get(2))
        else {
            continue;
        };
        if kind != STANZA_TAG || done_files.contains(file) {
            continue;
        }
        for id in &identities {
            let (mode, key) = (id[0], &id[1..]);
            if hex4(key) != *tag {
                continue;
            }
            if mode == ASKING {
                let answer = ask(
                    &mut input,
                    &mut out,
                    "request-secret",
                    &[],
                    b"Enter the PIN of the credsealtest key",
                )?;
                if answer.tag != "ok" || answer.body.is_empty() {
                    ask(
                        &mut input,
                        &mut out,
                        "error",
                        &["identity", "0"],
                        b"no PIN was given",
                    )?;
                    continue;
                }
            }
            ask(
                &mut input,
                &mut out,
                "file-key",
                &[file],
                &xor(&s.body, key),
            )?;
            done_files.push(file.clone());
            break;
        }
    }
    write_stanza(&mut out, "done", &[], &[])
}

fn hex4(key: &[u8]) -> String {
    key[..4].iter().map(|b| format!("{b:02x}")).collect()
}
