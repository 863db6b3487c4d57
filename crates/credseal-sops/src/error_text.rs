//! How an error reads as one line: its message, then each cause below it. Every error type of
//! credseal says only what it adds in its own message and returns what it wraps as its
//! `source`, so a cause is written once, here, and a caller walking the chain loses nothing.

use std::error::Error;

/// `outer: inner: …`, the error and every cause below it. A cause the text already ends with
/// is left out: some libraries' errors (hyper's) print their source and return it too.
pub fn with_causes(e: &(dyn Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let c_text = c.to_string();
        if !text.ends_with(&c_text) {
            text.push_str(": ");
            text.push_str(&c_text);
        }
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("reading db.enc.yaml")]
    struct Outer {
        source: std::io::Error,
    }

    #[test]
    fn each_cause_once_outermost_first() {
        let e = Outer {
            source: std::io::Error::other("permission denied"),
        };
        assert_eq!(with_causes(&e), "reading db.enc.yaml: permission denied");
    }

    #[derive(Debug, thiserror::Error)]
    #[error("client error (Connect): {source}")]
    struct SaysItsSource {
        source: std::io::Error,
    }

    #[test]
    fn a_cause_printed_by_the_error_above_it_is_not_repeated() {
        let e = Outer {
            source: std::io::Error::other(SaysItsSource {
                source: std::io::Error::other("connection refused"),
            }),
        };
        assert_eq!(
            with_causes(&e),
            "reading db.enc.yaml: client error (Connect): connection refused"
        );
    }
}
