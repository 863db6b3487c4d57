//! The YAML layer against real sops output: every YAML file sops wrote re-emits byte for byte.

use credseal::sops::yaml::{self, EmitOptions};

use crate::support::interop;

/// The indentation a file was written with (Flux's `.sops.yaml` sets 2).
fn indent_of(text: &str) -> usize {
    text.lines()
        .find_map(|l| {
            let n = l.len() - l.trim_start().len();
            (n > 0 && !l.trim_start().starts_with('-')).then_some(n)
        })
        .unwrap_or(4)
}

#[test]
fn sops_written_yaml_round_trips_byte_for_byte() {
    let mut checked = 0;
    for entry in std::fs::read_dir(interop()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let text = std::fs::read_to_string(&path).unwrap();
            let tree =
                yaml::parse(text.as_bytes()).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let out = yaml::emit(
                &tree,
                &EmitOptions {
                    indent: indent_of(&text),
                },
            );
            assert_eq!(String::from_utf8(out).unwrap(), text, "{}", path.display());
            checked += 1;
        }
    }
    assert_eq!(checked, 8);
}
