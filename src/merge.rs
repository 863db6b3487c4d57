//! Three-way merge of decrypted SOPS trees, key path by key path, for git's merge driver.
//! Lists and scalars merge as whole values; two sides changing one value differently is a
//! conflict reported by path (never by value).

use crate::sops::tree::{Map, MapItem, Node, Tree};

/// Merges `ours` and `theirs` against their common `base` (`None` when the file was added on
/// both sides). Returns the merged tree, or the `--extract`-style paths in conflict.
pub fn merge(base: Option<&Tree>, ours: &Tree, theirs: &Tree) -> Result<Tree, Vec<String>> {
    let mut conflicts = Vec::new();
    let n = ours.documents.len();
    let same_shape = theirs.documents.len() == n && base.is_none_or(|b| b.documents.len() == n);
    let tree = if same_shape {
        let documents = (0..n)
            .map(|i| {
                let prefix = if n > 1 {
                    format!("document {}: ", i + 1)
                } else {
                    String::new()
                };
                merge_map(
                    base.map(|b| &b.documents[i]),
                    &ours.documents[i],
                    &theirs.documents[i],
                    &prefix,
                    &mut conflicts,
                )
            })
            .collect();
        Tree { documents }
    } else if base == Some(ours) {
        theirs.clone()
    } else if base == Some(theirs) {
        ours.clone()
    } else {
        conflicts.push("(the number of documents)".into());
        ours.clone()
    };
    if conflicts.is_empty() {
        Ok(tree)
    } else {
        Err(conflicts)
    }
}

fn merge_map(
    base: Option<&Map>,
    ours: &Map,
    theirs: &Map,
    path: &str,
    conflicts: &mut Vec<String>,
) -> Map {
    let mut out = Map::new();
    // Comments travel with the pair that follows them: dropped if it is dropped.
    let mut pending = Vec::new();
    for item in &ours.items {
        match item {
            MapItem::Comment(_) => pending.push(item.clone()),
            MapItem::Pair(k, a) => {
                let here = format!("{path}[{k:?}]");
                let o = base.and_then(|m| m.get(k));
                if let Some(v) = merge_value(o, Some(a), theirs.get(k), &here, conflicts) {
                    out.items.append(&mut pending);
                    out.items.push(MapItem::Pair(k.clone(), v));
                } else {
                    pending.clear();
                }
            }
        }
    }
    out.items.append(&mut pending);
    for item in &theirs.items {
        match item {
            MapItem::Comment(_) => pending.push(item.clone()),
            MapItem::Pair(k, b) if ours.get(k).is_none() => {
                let here = format!("{path}[{k:?}]");
                let o = base.and_then(|m| m.get(k));
                if let Some(v) = merge_value(o, None, Some(b), &here, conflicts) {
                    out.items.append(&mut pending);
                    out.items.push(MapItem::Pair(k.clone(), v));
                }
                pending.clear();
            }
            MapItem::Pair(..) => pending.clear(),
        }
    }
    out
}

fn merge_value(
    base: Option<&Node>,
    ours: Option<&Node>,
    theirs: Option<&Node>,
    path: &str,
    conflicts: &mut Vec<String>,
) -> Option<Node> {
    if ours == theirs || theirs == base {
        return ours.cloned();
    }
    if ours == base {
        return theirs.cloned();
    }
    match (base, ours, theirs) {
        (None | Some(Node::Map(_)), Some(Node::Map(a)), Some(Node::Map(b))) => {
            let o = match base {
                Some(Node::Map(m)) => Some(m),
                _ => None,
            };
            Some(Node::Map(merge_map(o, a, b, path, conflicts)))
        }
        _ => {
            conflicts.push(path.to_owned());
            ours.cloned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sops::store::{self, Format};

    fn tree(yaml: &str) -> Tree {
        store::parse(yaml.as_bytes(), Format::Yaml).unwrap()
    }

    fn yaml(t: &Tree) -> String {
        let out = store::emit_plain(t, Format::Yaml, &store::EmitOptions::default()).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn changes_to_different_keys_combine() {
        let base = tree("a: 1\nb: {p: 1, q: 2}\nc: 3\n");
        let ours = tree("a: 2\nb: {p: 1, q: 2}\n# new\nd: 4\n");
        let theirs = tree("a: 1\nb: {p: 1, q: 9}\nc: 3\ne: 5\n");
        let merged = merge(Some(&base), &ours, &theirs).unwrap();
        assert_eq!(
            yaml(&merged),
            "a: 2\nb:\n    p: 1\n    q: 9\n# new\nd: 4\ne: 5\n"
        );
    }

    #[test]
    fn the_same_change_on_both_sides_is_not_a_conflict() {
        let base = tree("a: 1\n");
        let both = tree("a: 2\n");
        assert_eq!(merge(Some(&base), &both, &both).unwrap(), both);
    }

    #[test]
    fn different_changes_to_one_value_conflict_by_path() {
        let base = tree("s: {p: one, q: x}\nl: [1, 2]\n");
        let ours = tree("s: {p: two, q: x}\nl: [1, 3]\n");
        let theirs = tree("s: {p: three, q: y}\nl: [1, 4]\n");
        assert_eq!(
            merge(Some(&base), &ours, &theirs).unwrap_err(),
            ["[\"s\"][\"p\"]", "[\"l\"]"]
        );
        // A deletion against a change is a conflict too.
        let theirs = tree("l: [1, 2]\n");
        assert_eq!(merge(Some(&base), &ours, &theirs).unwrap_err(), ["[\"s\"]"]);
    }

    #[test]
    fn added_on_both_sides_without_a_base() {
        let ours = tree("a: 1\nb: 2\n");
        let theirs = tree("a: 1\nc: 3\n");
        assert_eq!(
            yaml(&merge(None, &ours, &theirs).unwrap()),
            "a: 1\nb: 2\nc: 3\n"
        );
        let theirs = tree("a: 5\n");
        assert_eq!(merge(None, &ours, &theirs).unwrap_err(), ["[\"a\"]"]);
    }
}
