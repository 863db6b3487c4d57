//! The data key wrapping against Debian's Go `age`, both ways.

use crate::support::{Cmd, new_key, write};

fn encrypt_json(dir: &std::path::Path, recipient: &str) -> serde_json::Value {
    let plain = write(dir, "v.json", r#"{"password": "hunter2", "port": 5432}"#);
    let enc = crate::support::encrypt_with(Cmd::credseal(), dir, recipient, &[], &plain);
    serde_json::from_slice(&enc).unwrap()
}

#[test]
fn data_key_credseal_wrapped_opens_with_age() {
    let dir = tempfile::tempdir().unwrap();
    let (key, recipient) = new_key(dir.path(), "k");
    let file = encrypt_json(dir.path(), &recipient);
    let enc = file["sops"]["age"][0]["enc"].as_str().unwrap();
    let enc_path = write(dir.path(), "dk.age", enc);
    let out = Cmd::tool("age")
        .args(["-d", "-i"])
        .arg(&key)
        .arg(&enc_path)
        .run()
        .ok();
    assert_eq!(
        out.stdout.len(),
        32,
        "the payload is the raw 32-byte data key"
    );
}

#[test]
fn data_key_age_wrapped_opens_with_credseal() {
    let dir = tempfile::tempdir().unwrap();
    let (key1, r1) = new_key(dir.path(), "k1");
    let (key2, r2) = new_key(dir.path(), "k2");
    let mut file = encrypt_json(dir.path(), &r1);
    // Recover the data key with age, wrap it for r2 with age's own armored writer.
    let enc_path = write(
        dir.path(),
        "dk.age",
        file["sops"]["age"][0]["enc"].as_str().unwrap(),
    );
    let dk = Cmd::tool("age")
        .args(["-d", "-i"])
        .arg(&key1)
        .arg(&enc_path)
        .run()
        .ok();
    let wrapped = Cmd::tool("age")
        .args(["-e", "-a", "-r", &r2])
        .stdin(dk.stdout)
        .run()
        .ok();
    file["sops"]["age"][0]["enc"] = serde_json::Value::String(wrapped.text());
    file["sops"]["age"][0]["recipient"] = serde_json::Value::String(r2.clone());
    let path = write(
        dir.path(),
        "peer.json",
        serde_json::to_vec_pretty(&file).unwrap(),
    );
    let out = Cmd::credseal()
        .cwd(dir.path())
        .key(&key2)
        .args(["decrypt", "--extract", r#"["password"]"#])
        .arg(&path)
        .run()
        .ok();
    assert_eq!(out.text(), "hunter2");
    // The old identity no longer opens it: exit 128, no value shown.
    let out = Cmd::credseal()
        .cwd(dir.path())
        .key(&key1)
        .arg("decrypt")
        .arg(&path)
        .run()
        .code(128);
    out.never_shows("hunter2");
    assert!(
        out.stderr.contains(&r2),
        "names the recipients it needs: {}",
        out.stderr
    );
}
