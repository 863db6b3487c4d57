//! How an error reads as one line: its message, then each cause below it. Every error type of
//! credseal says only what it adds in its own message and returns what it wraps as its
//! `source`, so a cause is written once, here, and a caller walking the chain loses nothing.

use std::error::Error;

/// `outer: inner: …`, the error and every cause below it.
pub fn with_causes(e: &(dyn Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
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
}
