//! Every real sops file in `tests/fixtures/interop` (copied unchanged from shared/interop),
//! one test case per `fixtures.json` entry.

use crate::support::{Cmd, interop};

struct Case {
    file: String,
    keys: Vec<String>,
    expect: String,
    plaintext: String,
}

fn cases() -> Vec<Case> {
    let text = std::fs::read_to_string(interop().join("fixtures.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|c| Case {
            file: c["file"].as_str().unwrap().into(),
            keys: c["keys"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| k.as_str().unwrap().into())
                .collect(),
            expect: c["expect"].as_str().unwrap().into(),
            plaintext: c["plaintext"].as_str().unwrap().into(),
        })
        .collect()
}

/// Semantic comparison: YAML and JSON are parsed (comments and formatting aside), other
/// formats compared as bytes.
fn same_document(file: &str, got: &[u8], want: &[u8]) {
    if file.ends_with(".yaml") {
        let g = credseal::sops::yaml::parse(got).expect("our output parses");
        let w = credseal::sops::yaml::parse(want).expect("expected parses");
        assert_eq!(
            strip_comments(g),
            strip_comments(w),
            "{file}: decrypted document differs"
        );
    } else if file.ends_with(".json") {
        let g: serde_json::Value = serde_json::from_slice(got).unwrap();
        let w: serde_json::Value = serde_json::from_slice(want).unwrap();
        assert_eq!(g, w, "{file}");
    } else {
        assert_eq!(
            String::from_utf8_lossy(got),
            String::from_utf8_lossy(want),
            "{file}"
        );
    }
}

fn strip_comments(mut t: credseal::sops::tree::Tree) -> credseal::sops::tree::Tree {
    use credseal::sops::tree::{MapItem, Node, SeqItem};
    fn node(n: &mut Node) {
        match n {
            Node::Map(m) => {
                m.items.retain(|i| !matches!(i, MapItem::Comment(_)));
                for i in &mut m.items {
                    if let MapItem::Pair(_, v) = i {
                        node(v);
                    }
                }
            }
            Node::Seq(s) => {
                s.items.retain(|i| !matches!(i, SeqItem::Comment(_)));
                for i in &mut s.items {
                    if let SeqItem::Node(v) = i {
                        node(v);
                    }
                }
            }
            _ => {}
        }
    }
    for d in &mut t.documents {
        let mut n = Node::Map(std::mem::take(d));
        node(&mut n);
        let Node::Map(m) = n else { unreachable!() };
        *d = m;
    }
    t
}

fn run_case(index: usize) {
    let all = cases();
    let case = &all[index];
    let dir = interop();
    for key in &case.keys {
        let out = Cmd::credseal()
            .arg("decrypt")
            .arg(dir.join(&case.file))
            .key(dir.join(key))
            .run();
        match case.expect.as_str() {
            "ok" => {
                let out = out.ok();
                let want = std::fs::read(dir.join(&case.plaintext)).unwrap();
                same_document(&case.file, &out.stdout, &want);
            }
            "mac_mismatch" => {
                let out = out.code(51);
                assert!(out.stdout.is_empty(), "nothing is printed on a MAC failure");
                assert!(
                    out.stderr.contains(&case.file),
                    "error names the file: {}",
                    out.stderr
                );
                assert!(out.stderr.contains("MAC"), "{}", out.stderr);
                // With --ignore-mac the values still decrypt, to the tampered variant.
                let out = Cmd::credseal()
                    .args(["decrypt", "--ignore-mac"])
                    .arg(dir.join(&case.file))
                    .key(dir.join(key))
                    .run()
                    .ok();
                let want = std::fs::read(dir.join(&case.plaintext)).unwrap();
                same_document(&case.file, &out.stdout, &want);
            }
            other => panic!("unknown expectation {other}"),
        }
        // `check` finds nothing wrong in a file sops wrote, and verifies its MAC.
        if credseal::check::format_of(&case.file).is_some() {
            let out = Cmd::credseal()
                .arg("check")
                .arg(dir.join(&case.file))
                .key(dir.join(key))
                .run();
            if case.expect == "ok" {
                let out = out.ok();
                assert!(
                    out.stderr
                        .contains("1 encrypted (1 MAC-verified), 0 finding(s)"),
                    "{}",
                    out.stderr
                );
            } else {
                assert!(out.code(230).text().contains(": mac: MAC"));
            }
        }
    }
}

macro_rules! fixture_cases {
    ($($name:ident = $i:expr;)*) => {
        $(#[test] fn $name() { run_case($i) })*
        #[test]
        fn every_fixture_has_a_case() {
            assert_eq!(cases().len(), [$($i),*].len(), "add a case for each fixtures.json entry");
        }
    };
}

fixture_cases! {
    getsops_example_yaml = 0;
    getsops_example_json = 1;
    getsops_example_txt = 2;
    flux_algorithms_age = 3;
    flux_global_secret = 4;
    flux_patches_merge1 = 5;
    flux_patches_merge2 = 6;
    flux_envs_env = 7;
    flux_component_env = 8;
    flux_files_file = 9;
    helm_secrets = 10;
    workshop_k8s_secret_flux_key = 11;
    workshop_k8s_secret_second_key = 12;
    tampered_mac_mismatch = 13;
}
