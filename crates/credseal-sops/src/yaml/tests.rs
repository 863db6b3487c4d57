//! Golden tests against real sops output, error cases and round-trip properties.

use std::path::{Path, PathBuf};

use super::*;
use crate::tree::{Map, MapItem, Seq, SeqItem};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/yaml")
}

/// The indentation a sops-written file uses (Flux's `.sops.yaml` sets 2).
fn indent_of(text: &str) -> usize {
    text.lines()
        .find_map(|l| {
            let n = l.len() - l.trim_start().len();
            (n > 0 && !l.trim_start().starts_with('-')).then_some(n)
        })
        .unwrap_or(4)
}

fn emit_str(tree: &Tree, indent: usize) -> String {
    String::from_utf8(emit(tree, &EmitOptions { indent })).unwrap()
}

fn strip_inline_map(m: &mut Map) {
    for item in &mut m.items {
        match item {
            MapItem::Comment(c) => c.inline = false,
            MapItem::Pair(_, v) => strip_inline_node(v),
        }
    }
}

fn strip_inline_seq(s: &mut Seq) {
    for item in &mut s.items {
        match item {
            SeqItem::Comment(c) => c.inline = false,
            SeqItem::Node(n) => strip_inline_node(n),
        }
    }
}

fn strip_inline_node(n: &mut Node) {
    match n {
        Node::Map(m) => strip_inline_map(m),
        Node::Seq(s) => strip_inline_seq(s),
        _ => {}
    }
}

/// sops 3.11 (the installed oracle) drops the inline flag: comments go on their own line.
fn as_sops_3_11(tree: &Tree) -> Tree {
    let mut t = tree.clone();
    t.documents.iter_mut().for_each(strip_inline_map);
    t
}

#[test]
fn real_sops_files_reemit_byte_for_byte() {
    // Encrypted files as sops wrote them, and their decryptions as `sops decrypt` printed them.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/interop");
    let mut checked = 0;
    let mut failures = Vec::new();
    let entries = std::fs::read_dir(&dir)
        .unwrap()
        .chain(std::fs::read_dir(dir.join("expected")).unwrap());
    for entry in entries {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let text = std::fs::read_to_string(&path).unwrap();
            let tree = parse(text.as_bytes()).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let out = emit_str(&tree, indent_of(&text));
            if out != text {
                failures.push(format!(
                    "{}:\n--- got\n{out}\n--- want\n{text}",
                    path.display()
                ));
            }
            checked += 1;
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(checked >= 14, "only {checked} files");
}

#[test]
fn goldens_match_real_sops_output() {
    let mut failures = Vec::new();
    let mut checked = 0;
    let mut names: Vec<String> = std::fs::read_dir(fixtures())
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".in.yaml").map(str::to_owned)
        })
        .collect();
    names.sort();
    for name in names {
        let input = std::fs::read(fixtures().join(format!("{name}.in.yaml"))).unwrap();
        let indent = if name.ends_with("-i2") { 2 } else { 4 };
        let golden = fixtures().join(format!("{name}.sops.yaml"));
        if !golden.exists() {
            continue;
        }
        let want = std::fs::read_to_string(golden).unwrap();
        let tree = match parse(&input) {
            Ok(t) => t,
            Err(e) => {
                failures.push(format!("{name}: parse error {e}"));
                continue;
            }
        };
        let got = emit_str(&as_sops_3_11(&tree), indent);
        if got != want {
            failures.push(format!(
                "{name} (3.11 placement):\n--- got\n{got}\n--- want\n{want}"
            ));
        }
        // sops 3.13 keeps inline comments on the value's line.
        let v313 = fixtures().join(format!("{name}.v313.yaml"));
        let want313 = if v313.exists() {
            std::fs::read_to_string(v313).unwrap()
        } else {
            want
        };
        let got313 = emit_str(&tree, indent);
        if got313 != want313 {
            failures.push(format!(
                "{name} (3.13):\n--- got\n{got313}\n--- want\n{want313}"
            ));
        }
        // Emission is a fixed point: sops' output reads back to the same output. Two go-yaml
        // quirks are not: `-0` (a float) re-reads as the integer 0, and a literal block with
        // leading spaces inside a sequence item gets the indicator `|4` while its content is
        // indented by 2 (go-yaml writes the hint from the indent step).
        if matches!(
            name.as_str(),
            "scalars" | "blockscalars" | "blockscalars-i2"
        ) {
            checked += 1;
            continue;
        }
        let again = parse(got313.as_bytes()).map(|t| emit_str(&t, indent));
        if again.as_deref() != Ok(got313.as_str()) {
            failures.push(format!(
                "{name}: output does not re-read to itself: {again:?}"
            ));
        }
        checked += 1;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(checked >= 20, "only {checked} goldens");
}

fn err(input: &str) -> YamlError {
    parse(input.as_bytes()).expect_err(input)
}

#[test]
fn errors_name_position_and_never_values() {
    let secret = "hunter2-s3cr3t";
    let cases = [
        (
            format!("a: {secret}\nb: [unclosed, {secret}\n"),
            "invalid YAML",
        ),
        (format!("- {secret}\n- b\n"), "not a mapping"),
        (format!("{secret}\n"), "not a mapping"),
        (format!("a: {secret}\na: other\n"), "duplicate"),
        (format!("x:\n  1: {secret}\n"), "not a string"),
        (format!("x: {secret}\ntrue: 1\n"), "not a string"),
        (
            format!("k: {secret}\nbig: 9223372036854775808\n"),
            "too large",
        ),
        (format!("k: {secret}\nv: *nope\n"), "invalid YAML"),
        (format!("k: !!int {secret}\n"), "!!int"),
        (format!("k: !!binary {secret}\n"), "binary"),
        (format!("a: \"{secret}\n  b: c: d\n"), "invalid YAML"),
    ];
    for (input, want) in cases {
        let e = err(&input);
        let msg = e.to_string();
        assert!(msg.contains(want), "{input:?}: {msg}");
        assert!(
            !msg.contains(secret),
            "{input:?}: message leaks a value: {msg}"
        );
        assert!(
            !format!("{e:?}").contains(secret),
            "{input:?}: Debug leaks a value"
        );
    }
    assert_eq!(
        err("a: 1\nb:\n    c: 1\n    c: 2\n"),
        YamlError::DuplicateKey {
            key: "c".into(),
            line: 4,
            column: 5
        }
    );
    assert_eq!(
        err("a: 1\n2: x\n"),
        YamlError::NonStringKey { line: 2, column: 1 }
    );
    assert_eq!(
        err("a: 18446744073709551615\n"),
        YamlError::IntegerOutOfRange { line: 1, column: 4 }
    );
    assert!(matches!(err("a: [1\n"), YamlError::Syntax { .. }));
    assert_eq!(
        err("--- 5\n"),
        YamlError::TopLevelNotMapping { document: 1 }
    );
    assert_eq!(
        err("a: 1\n---\n- x\n"),
        YamlError::TopLevelNotMapping { document: 2 }
    );
}

#[test]
fn structure_rules() {
    // Empty input: no documents; an empty document is an empty mapping.
    assert!(parse(b"").unwrap().documents.is_empty());
    assert_eq!(parse(b"---\n").unwrap().documents, vec![Map::new()]);
    // Duplicate keys are only rejected in the first document (sops decodes only that one).
    let t = parse(b"a: 1\n---\nb: 1\nb: 2\n").unwrap();
    assert_eq!(t.documents[1].items.len(), 2);
    // `<<` stays an ordinary key holding the expanded mapping.
    let t = parse(b"base: &b {x: 1}\nd:\n  <<: *b\n").unwrap();
    let d = t.documents[0].get("d").unwrap().as_map().unwrap();
    assert_eq!(
        d.get("<<").unwrap().as_map().unwrap().get("x"),
        Some(&Node::Int(1))
    );
    // Tags.
    let t = parse(b"a: !!str 1\nb: !!float 3\nc: !!binary aGk=\nd: !x 5\n").unwrap();
    let m = &t.documents[0];
    assert_eq!(m.get("a").unwrap().as_str(), Some("1"));
    assert_eq!(m.get("b"), Some(&Node::Float(3.0)));
    assert_eq!(m.get("c").unwrap().as_str(), Some("hi"));
    assert_eq!(m.get("d").unwrap().as_str(), Some("5"));
}

/// `levels` levels of nine aliases of the level below: 9^levels leaves from ~30 bytes a line.
fn billion_laughs(levels: usize) -> String {
    let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x]\n");
    for l in 1..=levels {
        let refs = vec![format!("*a{}", l - 1); 9].join(", ");
        text.push_str(&format!("a{l}: &a{l} [{refs}]\n"));
    }
    text
}

#[test]
fn alias_bombs_are_refused_before_they_expand() {
    let e = err(&billion_laughs(8));
    assert!(
        matches!(e, YamlError::ExcessiveAliasing { .. }),
        "{e:?}: {e}"
    );
    assert!(e.to_string().contains("excessive aliasing"), "{e}");
    // Ordinary reuse stays fine: one small anchor used many times (a tenth of the budget's
    // allowance), and a large anchor used a few times.
    let mut many = String::from("base: &b {user: app, port: 5432}\n");
    for i in 0..5000 {
        many.push_str(&format!("s{i}: *b\n"));
    }
    let t = parse(many.as_bytes()).unwrap();
    assert_eq!(t.documents[0].pairs().count(), 5001);
    let big: String = (0..20_000).map(|i| format!("  k{i}: v\n")).collect();
    let reused = format!("base: &b\n{big}x: *b\ny: *b\nz: *b\n");
    assert!(parse(reused.as_bytes()).is_ok());
    // A few levels of the bomb are small enough to be an ordinary document.
    assert!(parse(billion_laughs(2).as_bytes()).is_ok());
}

#[test]
fn nested_anchors_cannot_multiply_memory() {
    // Every level anchors a copy of everything below it: 200 levels of a 20,000-item list.
    let items = vec!["x"; 20_000].join(", ");
    let depth = 200;
    let text = format!(
        "a: {}[{items}]{}\n",
        (0..depth).map(|i| format!("&n{i} [")).collect::<String>(),
        "]".repeat(depth)
    );
    assert!(matches!(err(&text), YamlError::ExcessiveAliasing { .. }));
}

/// `levels` block mappings, one inside the other (the document's is the first), then `tail`.
fn block_nest(levels: usize, tail: &str) -> String {
    let mut text: String = (0..levels - 1)
        .map(|i| format!("{}k:\n", " ".repeat(i)))
        .collect();
    text.push_str(&format!("{}k: {tail}\n", " ".repeat(levels - 1)));
    text
}

#[test]
fn nesting_is_limited() {
    use crate::tree::MAX_DEPTH;
    assert!(parse(block_nest(MAX_DEPTH, "1").as_bytes()).is_ok());
    assert_eq!(
        err(&block_nest(MAX_DEPTH + 1, "1")),
        YamlError::TooDeep {
            line: MAX_DEPTH + 1,
            column: MAX_DEPTH + 1,
            limit: MAX_DEPTH
        }
    );
    assert!(matches!(
        err(&block_nest(20_000, "1")),
        YamlError::TooDeep { .. }
    ));
    // Flow collections stop sooner, in the scanner (255 levels).
    let flow = format!("a: {}1{}\n", "[".repeat(100_000), "]".repeat(100_000));
    assert!(matches!(err(&flow), YamlError::Syntax { .. }));
    // An alias counts with the depth of what it stands for, where it is used.
    let deep = format!(
        "a: &deep {}1{}\n{}",
        "[".repeat(200),
        "]".repeat(200),
        block_nest(MAX_DEPTH - 199, "*deep")
    );
    assert!(matches!(err(&deep), YamlError::TooDeep { line, .. } if line == MAX_DEPTH - 198));
    let fits = format!(
        "a: &deep {}1{}\n{}",
        "[".repeat(200),
        "]".repeat(200),
        block_nest(MAX_DEPTH - 200, "*deep")
    );
    assert!(parse(fits.as_bytes()).is_ok());
}

#[test]
fn positions_are_right_past_multibyte_text() {
    // Character and line positions come from tables: check them far from the start, after
    // multi-byte characters (spans count characters, the text is bytes).
    let mut text = String::new();
    for i in 0..300 {
        text.push_str(&format!("k{i}: \"é€𝄞 {i}\" # note {i}\n"));
    }
    text.push_str("dup: 1\ndup: 2\n");
    assert_eq!(
        err(&text),
        YamlError::DuplicateKey {
            key: "dup".into(),
            line: 302,
            column: 1
        }
    );
    let t = parse(text.replace("dup: 2\n", "").as_bytes()).unwrap();
    let out = emit_str(&t, 4);
    assert!(
        out.contains("k299: \"é€\\U0001D11E 299\" # note 299\n"),
        "{out}"
    );
}

#[test]
fn emit_node_writes_one_value() {
    let opts = EmitOptions::default();
    assert_eq!(emit_node(&Node::Int(5), &opts), b"5\n");
    assert_eq!(emit_node(&Node::Bool(true), &opts), b"true\n");
    assert_eq!(emit_node(&Node::Float(1e6), &opts), b"1e+06\n");
    assert_eq!(emit_node(&Node::Null, &opts), b"null\n");
    let seq = Node::Seq(Seq {
        items: vec![SeqItem::Node(Node::str("a")), SeqItem::Node(Node::Int(1))],
    });
    assert_eq!(emit_node(&seq, &opts), b"- a\n- 1\n");
    let map = Node::Map(Map {
        items: vec![MapItem::Pair("k".into(), Node::str("yes"))],
    });
    assert_eq!(emit_node(&map, &opts), b"k: \"yes\"\n");
    assert_eq!(emit_node(&Node::Seq(Seq::default()), &opts), b"[]\n");
}

#[test]
fn emit_multi_document_and_indent() {
    let t = parse(b"a:\n  - x\n---\nb: {}\n").unwrap();
    assert_eq!(emit_str(&t, 2), "a:\n  - x\n---\nb: {}\n");
    assert_eq!(emit_str(&t, 4), "a:\n    - x\n---\nb: {}\n");
}

mod props {
    //! Round trip: `parse(emit(t)) == t` for generated trees.
    //!
    //! Excluded by construction, because YAML cannot tell them apart once written:
    //! * integral or non-finite floats (`2.0` is written `2` and re-read as an int; `-0.0` as `0`;
    //!   NaN never equals itself), and floats whose shortest form has more than 17 digits are
    //!   fine (Rust and Go print shortest round-trip digits);
    //! * comments that could not come back where they were: comment text containing a line
    //!   break, comments placed where sops moves them (trailing comments after the last entry
    //!   of a collection, comments on entries that are collections, inline comments not
    //!   directly before a scalar entry, heads of the first entry of a collection nested in a
    //!   sequence item), so generated comments sit only before scalar pairs and items that are
    //!   not the first of their collection; and empty collections carrying comments;
    //! * a sequence or mapping as the only content of a document (documents are mappings);
    //! * duplicate keys (rejected in the first document).
    use proptest::prelude::*;

    use super::super::*;
    use crate::secret::SecretString;
    use crate::tree::{Comment, Map, MapItem, Seq, SeqItem, Timestamp};

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z]{0,8}",
            "[ -~]{0,12}",
            "[a-z0-9 :#'\"\\-\\[\\]{},&*!|>%@`?]{0,10}",
            "[a-z\\n ]{0,12}",
            // Without U+2028/U+2029: a known open defect (fuzz/findings), where the value
            // comes back with a line break.
            "[\\u{0}-\\u{7f}\\u{a0}-\\u{2027}\\u{202a}-\\u{2fff}\\u{1F600}]{0,6}",
            Just("yes".to_owned()),
            Just("0755".to_owned()),
            Just("2024-01-01".to_owned()),
            Just("1:20".to_owned()),
            Just("<<".to_owned()),
            Just(" lead".to_owned()),
            Just("\n\n".to_owned()),
        ]
    }

    fn scalar() -> impl Strategy<Value = Node> {
        prop_oneof![
            Just(Node::Null),
            any::<bool>().prop_map(Node::Bool),
            any::<i64>().prop_map(Node::Int),
            any::<f64>()
                .prop_filter("finite, not integral", |f| f.is_finite()
                    && f.fract() != 0.0)
                .prop_map(Node::Float),
            (
                1i32..9999,
                1u8..13,
                1u8..29,
                0u8..24,
                0u8..60,
                0u8..60,
                0u32..1_000_000_000,
                -50400i32..50400
            )
                .prop_map(|(year, month, day, hour, minute, second, nanos, off)| {
                    Node::Time(Timestamp {
                        year: year.max(1000),
                        month,
                        day,
                        hour,
                        minute,
                        second,
                        nanos,
                        offset_secs: off / 60 * 60,
                    })
                }),
            // go-yaml writes a literal block that starts with a space or a line break with the
            // indentation indicator of the indent step, but the block is indented relative to
            // an enclosing sequence item by 2, so inside sequences the text does not read back
            // (sops has the same defect). Such strings are not generated.
            text().prop_map(|s| {
                if s.contains('\n') && s.starts_with([' ', '\n']) {
                    Node::str(format!("x{s}"))
                } else {
                    Node::str(s)
                }
            }),
        ]
    }

    fn comment() -> impl Strategy<Value = Comment> {
        ("[ -~]{0,10}", any::<bool>()).prop_map(|(t, inline)| Comment {
            text: SecretString::new(t),
            inline,
        })
    }

    fn node() -> impl Strategy<Value = Node> {
        scalar().prop_recursive(4, 40, 5, |inner| {
            prop_oneof![
                prop::collection::vec((inner.clone(), prop::option::of(comment())), 1..5).prop_map(
                    |items| {
                        let mut seq = Seq::default();
                        for (n, c) in items {
                            push_item(&mut seq, n, c);
                        }
                        Node::Seq(seq)
                    }
                ),
                map(inner).prop_map(Node::Map),
                Just(Node::Seq(Seq::default())),
                Just(Node::Map(Map::new())),
            ]
        })
    }

    fn push_item(seq: &mut Seq, n: Node, c: Option<Comment>) {
        if let Some(c) = c.filter(|_| is_scalar(&n) && !seq.items.is_empty()) {
            seq.items.push(SeqItem::Comment(c));
        }
        seq.items.push(SeqItem::Node(n));
    }

    fn is_scalar(n: &Node) -> bool {
        !matches!(n, Node::Map(_) | Node::Seq(_))
    }

    fn map(inner: impl Strategy<Value = Node>) -> impl Strategy<Value = Map> {
        // Keys with line breaks are written as complex `? |` keys and hit the same literal
        // indentation defect; not generated.
        let key = text().prop_map(|k| k.replace('\n', "_"));
        prop::collection::vec((key, inner, prop::option::of(comment())), 1..5).prop_map(|entries| {
            let mut map = Map::new();
            let mut seen = std::collections::HashSet::new();
            for (k, v, c) in entries {
                if !seen.insert(k.clone()) {
                    continue;
                }
                if let Some(c) = c.filter(|_| is_scalar(&v) && !map.items.is_empty()) {
                    map.items.push(MapItem::Comment(c));
                }
                map.items.push(MapItem::Pair(k, v));
            }
            map
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]
        #[test]
        fn parse_emit_round_trips(docs in prop::collection::vec(map(node()), 1..3), indent in 2usize..6) {
            let tree = Tree { documents: docs };
            let text = emit(&tree, &EmitOptions { indent });
            let back = parse(&text).map_err(|e| TestCaseError::fail(format!("{e}\n{}", String::from_utf8_lossy(&text))))?;
            prop_assert!(back == tree, "{}", String::from_utf8_lossy(&text));
        }
    }
}
