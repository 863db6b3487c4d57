//! Rotation plans (src/rotate/plan.rs): any plan that parses and validates is consistent
//! (unique names, known strategies per engine, password length in range), and durations parse
//! without overflow.
#![no_main]

use credseal::rotate::plan::{MAX_DURATION_SECS, Plan, parse_duration};
use libfuzzer_sys::fuzz_target;

/// Alias expansion and deep nesting are known defects of the YAML parser (fuzzed by
/// yaml_store), not the subject here: skip inputs that use aliases or nest deeply.
fn yaml_hazard(data: &[u8]) -> bool {
    let mut depth = 0i32;
    for &b in data {
        match b {
            b'*' => return true,
            b'[' | b'{' => depth += 1,
            b']' | b'}' => depth -= 1,
            _ => {}
        }
        if depth > 64 {
            return true;
        }
    }
    false
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Some(d) = parse_duration(text)
    {
        // Durations are sums of whole units, never fractional, and bounded (they are added to
        // clocks).
        assert_eq!(d.subsec_nanos(), 0);
        assert!(d.as_secs() <= MAX_DURATION_SECS);
    }
    if yaml_hazard(data) {
        return;
    }
    let Ok(plan) = Plan::parse(data) else {
        return;
    };
    for (i, c) in plan.credentials.iter().enumerate() {
        assert!(plan.credentials[..i].iter().all(|o| o.name != c.name));
        assert!((16..=128).contains(&c.password.length));
    }
});
