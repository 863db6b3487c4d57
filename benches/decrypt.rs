//! In-process decryption: one typical Secret, and 1,000 files through the library path the
//! deploy-time commands use. `cargo bench --bench decrypt`; numbers go to BENCHMARKS.md.

use std::hint::black_box;
use std::time::{Duration, Instant};

use credseal::sops::file::{self, Context, EncryptSettings, EncryptedFile, KeyPlan};
use credseal::sops::keys::{Keyring, Recipient, generate_identity};
use credseal::sops::rules::Selector;
use credseal::sops::store::{self, EmitOptions, Format};
use credseal::sops::tree::Timestamp;
use credseal::sops::walk::OsEntropy;

const SECRET: &str = "apiVersion: v1
kind: Secret
metadata:
    name: postgres-credentials
    namespace: platform-services
type: Opaque
stringData:
    username: app_user
    password: 8c1d6b0e7f3a4c29b5e1d07a6f2c9e34
    database: saas_platform
    host: postgres.platform-services.svc.cluster.local
    port: \"5432\"
";

fn encrypted(recipient: &Recipient) -> Vec<u8> {
    let tree = store::load_plain(SECRET.as_bytes(), Format::Yaml).unwrap();
    let settings = EncryptSettings {
        keys: KeyPlan::age(std::slice::from_ref(recipient)),
        selector: Selector::from_key("encrypted_regex", "^(data|stringData)$").unwrap(),
        mac_only_encrypted: false,
    };
    let mut entropy = OsEntropy;
    let mut ctx = Context {
        entropy: &mut entropy,
        now: Timestamp::from_unix(1_700_000_000),
    };
    file::encrypt(
        tree,
        Format::Yaml,
        &settings,
        &mut ctx,
        &EmitOptions::default(),
    )
    .unwrap()
}

fn decrypt(bytes: &[u8], ring: &Keyring) {
    let opened = EncryptedFile::parse(bytes, Format::Yaml)
        .unwrap()
        .open(ring, false)
        .unwrap();
    black_box(
        opened
            .emit_plain(Format::Yaml, &EmitOptions::default())
            .unwrap(),
    );
}

fn time<F: FnMut()>(iters: u32, mut f: F) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        f();
    }
    start.elapsed()
}

fn main() {
    let (text, recipient) = generate_identity("bench");
    let mut ring = Keyring::new();
    ring.add_identities(text.expose(), "bench").unwrap();
    let recipient = Recipient::parse(&recipient).unwrap();
    let one = encrypted(&recipient);

    // Warm up, then take the best of 5 runs of 2,000 decryptions.
    time(200, || decrypt(&one, &ring));
    let best = (0..5)
        .map(|_| time(2000, || decrypt(&one, &ring)))
        .min()
        .unwrap();
    println!(
        "decrypt typical Secret (5 values, 1 recipient, parse + age unwrap + AES-GCM + MAC + emit): {:.1} µs/op",
        best.as_secs_f64() * 1e6 / 2000.0
    );

    let files: Vec<Vec<u8>> = (0..1000).map(|_| encrypted(&recipient)).collect();
    let best = (0..3)
        .map(|_| {
            let start = Instant::now();
            for f in &files {
                decrypt(f, &ring);
            }
            start.elapsed()
        })
        .min()
        .unwrap();
    println!(
        "decrypt 1,000 files in one process: {:.1} ms",
        best.as_secs_f64() * 1e3
    );
}
