//! `.credsealignore`: the paths `check` never judges (test fixtures, documented plaintext
//! examples). gitignore syntax, read by the `ignore` crate, with one difference kept from the
//! file's first form: every pattern is anchored at the directory `check` runs in, so
//! `secret.yaml` means that file at the top only; `**/secret.yaml` means it at any depth. An
//! unanchored pattern would silently stop checking files of the same name anywhere below.

use std::path::{Path, PathBuf};

use ignore::gitignore::{Gitignore, GitignoreBuilder};

/// The file's name; it is read from the directory `check` runs in.
pub const IGNORE_FILE: &str = ".credsealignore";

/// An ignore file whose patterns cannot be compiled.
#[derive(Debug, thiserror::Error)]
pub enum IgnorePatternError {
    /// One line is not a valid pattern.
    #[error("{}, line {line}: pattern {pattern:?} is not a valid pattern; fix or remove it", file.display())]
    Pattern {
        file: PathBuf,
        line: usize,
        pattern: String,
        source: ignore::Error,
    },
    /// The patterns are valid one by one but too many or too large together.
    #[error("{}: the patterns cannot be compiled together; use fewer or simpler ones", file.display())]
    Set {
        file: PathBuf,
        source: ignore::Error,
    },
}

/// The compiled patterns of one ignore file.
pub struct IgnoreList(Gitignore);

impl IgnoreList {
    /// No pattern: nothing is ignored.
    pub fn empty() -> IgnoreList {
        IgnoreList(Gitignore::empty())
    }

    /// Compiles the text of the ignore file (`file` names it in errors). Lines are trimmed;
    /// blank lines and `#` comments are skipped; a leading `./` is dropped.
    pub fn parse(text: &str, file: &Path) -> Result<IgnoreList, IgnorePatternError> {
        // `.`: candidates are relative to it already (`is_ignored`), nothing to strip.
        let mut builder = GitignoreBuilder::new(".");
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (negated, pattern) = match line.strip_prefix('!') {
                Some(p) => ("!", p),
                None => ("", line),
            };
            let pattern = pattern.trim_start_matches("./");
            let anchor = if pattern.starts_with('/') { "" } else { "/" };
            builder
                .add_line(None, &format!("{negated}{anchor}{pattern}"))
                .map_err(|source| IgnorePatternError::Pattern {
                    file: file.to_owned(),
                    line: i + 1,
                    pattern: line.to_owned(),
                    source,
                })?;
        }
        let set = builder.build().map_err(|source| IgnorePatternError::Set {
            file: file.to_owned(),
            source,
        })?;
        Ok(IgnoreList(set))
    }

    /// Whether a file (a path relative to the directory the list was read in, with or
    /// without a leading `./`) is ignored, by a pattern for it or for a directory above it.
    /// An absolute path or one that leaves the directory is never ignored.
    pub fn is_ignored(&self, file: &Path) -> bool {
        let file = file.strip_prefix(".").unwrap_or(file);
        if file.has_root() || file.starts_with("..") {
            return false;
        }
        self.0.matched_path_or_any_parents(file, false).is_ignore()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(text: &str) -> IgnoreList {
        IgnoreList::parse(text, Path::new(IGNORE_FILE)).unwrap()
    }

    fn ignored(list: &IgnoreList, path: &str) -> bool {
        list.is_ignored(Path::new(path))
    }

    #[test]
    fn the_first_forms_patterns_keep_their_meaning() {
        let l = list(
            "# comment\n\n  fixtures/  \n./keys/example.yaml\n*.tmp\ndocs/?.yaml\ndeep/**/s.yaml\n**/gen/\n",
        );
        // A trailing slash: everything below the directory, at the top only.
        assert!(ignored(&l, "fixtures/s.yaml"));
        assert!(ignored(&l, "./fixtures/a/b.yaml"));
        assert!(!ignored(&l, "app/fixtures/s.yaml"));
        assert!(!ignored(&l, "fixtures"));
        // A path: that file, with or without ./ on either side.
        assert!(ignored(&l, "keys/example.yaml"));
        assert!(ignored(&l, "./keys/example.yaml"));
        assert!(!ignored(&l, "keys/other.yaml"));
        // `*` and `?` within a name, anchored: the top only.
        assert!(ignored(&l, "a.tmp"));
        assert!(!ignored(&l, "sub/a.tmp"));
        assert!(ignored(&l, "docs/x.yaml"));
        assert!(!ignored(&l, "docs/xy.yaml"));
        // `**` across directories.
        assert!(ignored(&l, "deep/s.yaml"));
        assert!(ignored(&l, "deep/a/b/s.yaml"));
        assert!(ignored(&l, "x/y/gen/s.yaml"));
        // Absolute paths and paths outside the directory are never ignored.
        assert!(!ignored(&l, "/fixtures/s.yaml"));
        assert!(!ignored(&l, "../fixtures/s.yaml"));
        // No file, no patterns.
        assert!(!ignored(&IgnoreList::empty(), "fixtures/s.yaml"));
    }

    #[test]
    fn gitignore_syntax_beyond_the_first_form() {
        let l = list("fixtures/\n!fixtures/real.yaml\n/top.yaml\nex[ab].yaml\nnamed\n");
        // Negation takes a file back.
        assert!(ignored(&l, "fixtures/s.yaml"));
        assert!(!ignored(&l, "fixtures/real.yaml"));
        // A leading slash anchors (as every pattern is anchored anyway).
        assert!(ignored(&l, "top.yaml"));
        assert!(!ignored(&l, "a/top.yaml"));
        // Character classes.
        assert!(ignored(&l, "exa.yaml"));
        assert!(!ignored(&l, "exc.yaml"));
        // A pattern naming a directory covers what is below it, as in git.
        assert!(ignored(&l, "named"));
        assert!(ignored(&l, "named/s.yaml"));
    }

    #[test]
    fn a_bad_pattern_names_the_file_and_line() {
        let e = IgnoreList::parse("ok/\n{a,\n", Path::new(IGNORE_FILE))
            .err()
            .expect("an unclosed alternation is refused");
        assert!(
            matches!(e, IgnorePatternError::Pattern { line: 2, .. }),
            "{e:?}"
        );
        assert!(
            e.to_string().starts_with(".credsealignore, line 2: "),
            "{e}"
        );
    }
}
