//! The wall clock, passed in rather than read where it is needed, so decisions that depend on
//! the time (a credential due again after `rotateAfter`, an old password retired after its
//! grace) are tested with a fixed clock instead of by sleeping.

use std::cell::Cell;

use crate::sops::tree::Timestamp;

/// Tells the time (UTC, whole seconds).
pub trait Clock {
    fn now(&self) -> Timestamp;
}

/// The system's clock: the only place credseal reads the wall-clock time.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        // Before 1970 only on a badly broken host; the epoch is as good a time as any there.
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Timestamp::from_unix(secs)
    }
}

/// A clock that stands still until it is moved: for tests.
#[derive(Debug)]
pub struct FixedClock(Cell<i64>);

impl FixedClock {
    /// Stopped at `unix` seconds.
    pub fn at(unix: i64) -> FixedClock {
        FixedClock(Cell::new(unix))
    }

    pub fn advance(&self, by: std::time::Duration) {
        let by = i64::try_from(by.as_secs()).unwrap_or(i64::MAX);
        self.0.set(self.0.get().saturating_add(by));
    }
}

impl Clock for FixedClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_unix(self.0.get())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fixed_clock_moves_only_when_told() {
        let clock = FixedClock::at(1_000);
        assert_eq!(clock.now().unix(), 1_000);
        clock.advance(std::time::Duration::from_secs(90));
        assert_eq!(clock.now().unix(), 1_090);
    }

    #[test]
    fn the_system_clock_is_after_2020() {
        assert!(SystemClock.now().unix() > 1_577_836_800);
    }
}
