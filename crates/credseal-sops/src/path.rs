//! sops tree paths: `["stringData"]["password"]`, `['a'][0]` (docs/sops-format.md §14.1).

use crate::tree::{MAX_DEPTH, Map, Node, SeqItem};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    Key(String),
    Index(usize),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PathError {
    /// Syntax error (sops exit 91).
    #[error("invalid tree path {0:?}: expected components like [\"key\"] or [0]")]
    Syntax(String),
    #[error("{0}: not found in the file")]
    NotFound(String),
    #[error("{0}: cannot set a value below a scalar")]
    NotACollection(String),
    /// The path, with the value set there, would nest past what the stores read back.
    #[error(
        "the tree path and its value would be nested more than {limit} levels deep (the limit)"
    )]
    TooDeep { limit: usize },
}

/// Parses sops' syntax: split at `[`, each piece ends in `]`; quoted pieces lose their first
/// and last character (no escapes); anything unquoted must be a decimal index.
pub fn parse(text: &str) -> Result<Vec<Step>, PathError> {
    let err = || PathError::Syntax(text.to_owned());
    let mut steps = Vec::new();
    let mut pieces = text.split('[');
    if pieces.next() != Some("") {
        return Err(err());
    }
    for piece in pieces {
        if steps.len() == MAX_DEPTH {
            return Err(PathError::TooDeep { limit: MAX_DEPTH });
        }
        let inner = piece.strip_suffix(']').ok_or_else(err)?;
        if inner.starts_with('"') || inner.starts_with('\'') {
            // sops drops the first and the last character without looking at them; the last
            // one may be multi-byte (slicing off one byte would split it and panic).
            let mut chars = inner[1..].chars();
            if chars.next_back().is_none() {
                return Err(err());
            }
            steps.push(Step::Key(chars.as_str().to_owned()));
        } else {
            steps.push(Step::Index(inner.parse().map_err(|_| err())?));
        }
    }
    if steps.is_empty() {
        return Err(err());
    }
    Ok(steps)
}

pub fn display(steps: &[Step]) -> String {
    steps
        .iter()
        .map(|s| match s {
            Step::Key(k) => format!("[{k:?}]"),
            Step::Index(i) => format!("[{i}]"),
        })
        .collect()
}

/// Finds the value at `steps` in a document.
pub fn get<'a>(doc: &'a Map, steps: &[Step]) -> Result<&'a Node, PathError> {
    let not_found = || PathError::NotFound(display(steps));
    let (first, rest) = steps.split_first().ok_or_else(not_found)?;
    let Step::Key(k) = first else {
        return Err(not_found());
    };
    let mut node = doc.get(k).ok_or_else(not_found)?;
    for step in rest {
        node = match (step, node) {
            (Step::Key(k), Node::Map(m)) => m.get(k),
            (Step::Index(i), Node::Seq(s)) => s.nodes().nth(*i),
            _ => None,
        }
        .ok_or_else(not_found)?;
    }
    Ok(node)
}

/// Sets the value at `steps`, creating missing mapping keys (appended at the end) like
/// `sops set`. Returns whether anything changed.
pub fn set(doc: &mut Map, steps: &[Step], value: Node) -> Result<bool, PathError> {
    // The document is the first level; the value sits below the path's last step.
    if steps.len() + value.depth() > MAX_DEPTH {
        return Err(PathError::TooDeep { limit: MAX_DEPTH });
    }
    let (first, rest) = steps
        .split_first()
        .ok_or_else(|| PathError::NotFound(String::new()))?;
    let Step::Key(k) = first else {
        return Err(PathError::NotACollection("(top level)".into()));
    };
    set_in_map(doc, k, rest, value, steps)
}

fn set_in_map(
    m: &mut Map,
    key: &str,
    rest: &[Step],
    value: Node,
    all: &[Step],
) -> Result<bool, PathError> {
    if m.get(key).is_none() {
        let fresh = match rest.first() {
            None => {
                m.insert(key, value);
                return Ok(true);
            }
            Some(Step::Key(_)) => Node::Map(Map::new()),
            Some(Step::Index(_)) => return Err(PathError::NotFound(display(all))),
        };
        m.insert(key, fresh);
    }
    let slot = m.get_mut(key).expect("present");
    set_in_node(slot, rest, value, all)
}

fn set_in_node(
    node: &mut Node,
    rest: &[Step],
    value: Node,
    all: &[Step],
) -> Result<bool, PathError> {
    let Some((step, tail)) = rest.split_first() else {
        if *node == value {
            return Ok(false);
        }
        *node = value;
        return Ok(true);
    };
    match (step, node) {
        (Step::Key(k), Node::Map(m)) => set_in_map(m, k, tail, value, all),
        (Step::Index(i), Node::Seq(s)) => {
            let slot = s
                .items
                .iter_mut()
                .filter_map(|it| match it {
                    SeqItem::Node(n) => Some(n),
                    SeqItem::Comment(_) => None,
                })
                .nth(*i)
                .ok_or_else(|| PathError::NotFound(display(all)))?;
            set_in_node(slot, tail, value, all)
        }
        _ => Err(PathError::NotACollection(display(all))),
    }
}

/// Removes the value at `steps`.
pub fn unset(doc: &mut Map, steps: &[Step]) -> Result<(), PathError> {
    let not_found = || PathError::NotFound(display(steps));
    let Some((Step::Key(k), rest)) = steps.split_first() else {
        return Err(not_found());
    };
    let removed = if rest.is_empty() {
        doc.remove(k).is_some()
    } else {
        doc.get_mut(k).is_some_and(|n| unset_in(n, rest))
    };
    removed.then_some(()).ok_or_else(not_found)
}

fn unset_in(node: &mut Node, steps: &[Step]) -> bool {
    let Some((step, tail)) = steps.split_first() else {
        return false;
    };
    match (step, node) {
        (Step::Key(k), Node::Map(m)) if tail.is_empty() => m.remove(k).is_some(),
        (Step::Key(k), Node::Map(m)) => m.get_mut(k).is_some_and(|n| unset_in(n, tail)),
        (Step::Index(i), Node::Seq(s)) => {
            let Some(pos) = s
                .items
                .iter()
                .enumerate()
                .filter(|(_, it)| matches!(it, SeqItem::Node(_)))
                .nth(*i)
                .map(|(p, _)| p)
            else {
                return false;
            };
            if tail.is_empty() {
                s.items.remove(pos);
                true
            } else {
                match &mut s.items[pos] {
                    SeqItem::Node(n) => unset_in(n, tail),
                    SeqItem::Comment(_) => false,
                }
            }
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::Seq;

    #[test]
    fn parses_sops_syntax() {
        assert_eq!(
            parse(r#"["stringData"]['password'][3]"#).unwrap(),
            vec![
                Step::Key("stringData".into()),
                Step::Key("password".into()),
                Step::Index(3)
            ]
        );
        for bad in ["", "stringData", r#"["a"]x"#, "[a]", r#"["a""#] {
            assert!(matches!(parse(bad), Err(PathError::Syntax(_))), "{bad}");
        }
    }

    #[test]
    fn a_multibyte_last_character_is_dropped_whole() {
        // Found by the extract_path fuzz target: `['ؓ]` split the two-byte character and
        // panicked. Like sops, the piece loses its first and last character, whatever they are.
        assert_eq!(parse("['\u{613}]").unwrap(), vec![Step::Key(String::new())]);
        assert_eq!(
            parse("[\"pässwörd\"]['é]").unwrap(),
            vec![Step::Key("pässwörd".into()), Step::Key(String::new())]
        );
        assert_eq!(parse("['abé]").unwrap(), vec![Step::Key("ab".into())]);
        assert!(matches!(parse("[']"), Err(PathError::Syntax(_))));
    }

    #[test]
    fn get_set_unset() {
        let mut doc = Map::new();
        doc.insert(
            "list",
            Node::Seq(Seq {
                items: vec![SeqItem::Node(Node::Int(1))],
            }),
        );
        let p = parse(r#"["a"]["b"]"#).unwrap();
        assert!(set(&mut doc, &p, Node::str("v")).unwrap());
        assert!(!set(&mut doc, &p, Node::str("v")).unwrap());
        assert_eq!(get(&doc, &p).unwrap(), &Node::str("v"));
        assert!(set(&mut doc, &parse(r#"["list"][0]"#).unwrap(), Node::Int(2)).unwrap());
        assert_eq!(
            get(&doc, &parse(r#"["list"][0]"#).unwrap()).unwrap(),
            &Node::Int(2)
        );
        unset(&mut doc, &p).unwrap();
        assert!(matches!(get(&doc, &p), Err(PathError::NotFound(_))));
        unset(&mut doc, &parse(r#"["list"]"#).unwrap()).unwrap();
        assert_eq!(doc.pairs().count(), 1, "only a remains");
    }

    #[test]
    fn paths_cannot_build_trees_deeper_than_the_stores_read() {
        let path = |steps: usize| r#"["a"]"#.repeat(steps);
        assert_eq!(
            parse(&path(100_000)).unwrap_err(),
            PathError::TooDeep { limit: MAX_DEPTH }
        );
        let at_limit = parse(&path(MAX_DEPTH)).unwrap();
        let mut doc = Map::new();
        assert!(set(&mut doc, &at_limit, Node::str("v")).unwrap());
        assert_eq!(Node::Map(doc.clone()).depth(), MAX_DEPTH);
        // A collection value counts with its own depth.
        let list = Node::Seq(Seq {
            items: vec![SeqItem::Node(Node::Int(1))],
        });
        assert_eq!(
            set(&mut Map::new(), &at_limit, list.clone()),
            Err(PathError::TooDeep { limit: MAX_DEPTH })
        );
        let below = parse(&path(MAX_DEPTH - 1)).unwrap();
        assert!(set(&mut Map::new(), &below, list).unwrap());
    }
}
