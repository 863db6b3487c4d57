//! The rotation of one credential as a durable state machine. The pending record's phase says
//! where a rotation stands; each phase's step is idempotent and saves the next phase before
//! returning, so a rerun after a crash anywhere resumes from what it reads:
//!
//! ```text
//! (none) --stage--> Staged --apply, verify, commit--> Committed --roll--> Rolled --retire--> (none)
//! ```
//!
//! Every step that changes something first checks that the run still holds the lock.
//! Failpoints `rotate::after-stage`, `-apply`, `-verify`, `-commit`, `-roll` (the `fail`
//! crate, set by `FAILPOINTS`) are compiled into release builds so operators can rehearse
//! recovery.

use crate::rotate::engine::{Engine, Unverified};
use crate::rotate::lock::RunLock;
use crate::rotate::password;
use crate::rotate::plan::Credential;
use crate::rotate::store::{Current, Pending, Phase, Store, StoreError};
use crate::rotate::{Outcome, RotateError, Runner};
use crate::secret::SecretString;
use crate::sops::tree::Timestamp;

/// One credential's rotation, for one run.
pub(crate) struct Rotation<'r, 'a, S, E> {
    pub runner: &'r mut Runner<'a>,
    pub cred: &'r Credential,
    pub store: &'r S,
    pub engine: E,
    /// `None` for a dry run, which changes nothing.
    pub lock: Option<&'r RunLock>,
}

impl<S: Store, E: Engine> Rotation<'_, '_, S, E> {
    /// Starts a rotation when one is due, or resumes the one `pending` records, and takes it
    /// through every phase.
    pub async fn run(
        mut self,
        current: Current,
        pending: Option<Pending>,
    ) -> Result<Outcome, RotateError> {
        let mut p = match pending {
            Some(_) if self.runner.dry_run => {
                self.audit("check", "would-resume");
                return Ok(Outcome::WouldRotate);
            }
            Some(p) => p,
            None if !self.is_due(&current) => {
                self.audit("check", "not-due");
                return Ok(Outcome::NotDue);
            }
            None if self.runner.dry_run => {
                self.audit("check", "would-rotate");
                return Ok(Outcome::WouldRotate);
            }
            None => self.stage(&current).await?,
        };
        let admin = (self.runner)
            .admin_passwords(self.cred, &current, Some(&p))
            .await?;
        loop {
            match p.phase {
                Phase::Staged => {
                    self.apply(&admin, &p).await?;
                    self.verify(&admin, &p).await?;
                    self.commit(&mut p).await?;
                }
                Phase::Committed => self.roll(&mut p).await?,
                Phase::Rolled => return self.retire(&admin, &p).await,
            }
        }
    }

    fn is_due(&self, current: &Current) -> bool {
        let now = self.runner.clock.now().unix();
        self.cred.is_due(current.rotated_at.as_ref(), now)
    }

    /// Checks the engine as the admin, then makes the new password durable before anything
    /// else changes.
    async fn stage(&mut self, current: &Current) -> Result<Pending, RotateError> {
        let admin = (self.runner)
            .admin_passwords(self.cred, current, None)
            .await?;
        let engine = &self.engine;
        engine
            .preflight(&mut self.runner.connections, &refs(&admin), current)
            .await?;
        let p = Pending {
            credential: self.cred.name.clone(),
            phase: Phase::Staged,
            password: password::generate(&self.cred.password),
            username: engine.next_username(current.username.as_deref()),
            previous_username: current.username.clone(),
            previous_password: engine
                .applied_by_operator()
                .then(|| current.password.clone()),
            generation: current.generation + 1,
            retire_after: None,
        };
        self.held()?;
        self.save(&p).await?;
        self.audit("stage", "ok");
        fail::fail_point!("rotate::after-stage");
        Ok(p)
    }

    /// Gives the database the new password: credseal sets it, or, with an operator, writes it
    /// to the target the operator applies it from.
    async fn apply(&mut self, admin: &[SecretString], p: &Pending) -> Result<(), RotateError> {
        self.held()?;
        if self.engine.applied_by_operator() {
            self.store_commit(p).await?;
            self.audit("apply", "ok (written to the Secret the operator applies)");
        } else {
            let engine = &self.engine;
            let notes = engine
                .apply(&mut self.runner.connections, &refs(admin), p)
                .await?;
            for n in notes {
                self.audit("persist", &n);
            }
            self.audit("apply", "ok");
        }
        fail::fail_point!("rotate::after-apply");
        Ok(())
    }

    /// Proves the new password logs in before the target takes it. A password an operator
    /// never applied is taken back out of the target, so nothing is rolled to it.
    async fn verify(&mut self, admin: &[SecretString], p: &Pending) -> Result<(), RotateError> {
        let engine = &self.engine;
        let verified = engine
            .verify(&mut self.runner.connections, &refs(admin), p)
            .await;
        let operator = engine.applied_by_operator();
        match verified {
            Ok(()) if operator => self.audit("verify", "ok (the operator applied it)"),
            Ok(()) => self.audit("verify", "ok"),
            Err(Unverified::Rejected(reason)) => {
                self.audit("verify", "failed");
                return Err(RotateError::Verify {
                    credential: self.cred.name.clone(),
                    reason,
                });
            }
            Err(Unverified::NotApplied { timeout }) => {
                self.audit("verify", "failed (operator did not apply the password)");
                self.undo(p).await?;
                return Err(RotateError::OperatorTimeout {
                    credential: self.cred.name.clone(),
                    timeout_secs: timeout.as_secs(),
                });
            }
        }
        fail::fail_point!("rotate::after-verify");
        Ok(())
    }

    /// Operator strategy: the target gets the previous password (and generation) back and
    /// the rotation is dropped; the old password still works.
    async fn undo(&mut self, p: &Pending) -> Result<(), RotateError> {
        if let Some(old) = &p.previous_password {
            let restore = Pending {
                credential: p.credential.clone(),
                phase: Phase::Staged,
                password: old.clone(),
                username: p.previous_username.clone(),
                previous_username: None,
                previous_password: None,
                generation: p.generation.saturating_sub(1),
                retire_after: None,
            };
            self.store_commit(&restore).await?;
            self.audit("undo", "ok (the Secret holds the previous password again)");
        }
        self.clear().await
    }

    /// The target holds the new password, under the next generation.
    async fn commit(&mut self, p: &mut Pending) -> Result<(), RotateError> {
        self.held()?;
        // With an operator the target took the password at apply.
        let operator = self.engine.applied_by_operator();
        if !operator {
            self.store_commit(p).await?;
        }
        p.phase = Phase::Committed;
        self.save(p).await?;
        self.runner
            .audit(self.cred, "commit", "ok", Some(p.generation));
        if !operator {
            let message = format!("credseal committed generation {}", p.generation);
            (self.runner)
                .event_on_secret(self.cred, "CredentialRotated", &message, "Normal")
                .await;
        }
        fail::fail_point!("rotate::after-commit");
        Ok(())
    }

    /// Consumers restart onto the new password; with a grace, the old one stays valid until
    /// it ends.
    async fn roll(&mut self, p: &mut Pending) -> Result<(), RotateError> {
        self.held()?;
        self.runner.roll(self.cred, p.generation).await?;
        p.phase = Phase::Rolled;
        p.retire_after = retire_after(self.cred, self.now());
        self.save(p).await?;
        fail::fail_point!("rotate::after-roll");
        Ok(())
    }

    /// The old password goes (unless its grace has not ended: then a later run does it), and
    /// the pending record with it.
    async fn retire(
        &mut self,
        admin: &[SecretString],
        p: &Pending,
    ) -> Result<Outcome, RotateError> {
        if let Some(until) = p.retire_deferred(self.now()) {
            let until = until.to_rfc3339();
            self.audit("retire", &format!("deferred until {until}"));
            return Ok(Outcome::Retiring {
                generation: p.generation,
                until,
            });
        }
        self.held()?;
        let mut candidates = refs(admin);
        candidates.push(&p.password);
        let engine = &self.engine;
        let now = self.runner.clock.now();
        let outcome = engine
            .retire(&mut self.runner.connections, &candidates, p, now)
            .await?;
        self.audit("retire", &outcome);
        self.clear().await?;
        let generation = p.generation;
        Ok(match p.retire_after {
            Some(_) => Outcome::Retired { generation },
            None => Outcome::Rotated { generation },
        })
    }

    fn now(&self) -> Timestamp {
        self.runner.clock.now()
    }

    /// Errs when the lock was lost (a Lease not renewed in time): stop before changing more.
    fn held(&self) -> Result<(), RotateError> {
        self.lock.map_or(Ok(()), |l| {
            l.ensure_held().map_err(|source| RotateError::Locked {
                credential: self.cred.name.clone(),
                source: Box::new(source),
            })
        })
    }

    fn audit(&self, step: &str, outcome: &str) {
        self.runner.audit(self.cred, step, outcome, None);
    }

    fn failed(&self) -> impl Fn(StoreError) -> RotateError + '_ {
        |e| e.for_credential(&self.cred.name)
    }

    async fn save(&self, p: &Pending) -> Result<(), RotateError> {
        let now = self.now();
        self.store.save_pending(p, now).await.map_err(self.failed())
    }

    async fn store_commit(&self, p: &Pending) -> Result<(), RotateError> {
        let now = self.now();
        self.store.commit(p, now).await.map_err(self.failed())
    }

    async fn clear(&self) -> Result<(), RotateError> {
        self.store.clear_pending().await.map_err(self.failed())
    }
}

/// When a just-rolled rotation's old password is retired: after the dual strategy's grace,
/// or at once.
pub(crate) fn retire_after(cred: &Credential, now: Timestamp) -> Option<Timestamp> {
    let grace = i64::try_from(cred.retire_grace()?.as_secs()).unwrap_or(i64::MAX);
    Some(Timestamp::from_unix(now.unix().saturating_add(grace)))
}

fn refs(passwords: &[SecretString]) -> Vec<&SecretString> {
    passwords.iter().collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::clock::{Clock, FixedClock};
    use crate::rotate::plan::Plan;

    fn credential(engine: &str, strategy: &str, extra: &str) -> Credential {
        let plan = format!(
            "apiVersion: credseal.dev/v1alpha1\nkind: RotationPlan\ncredentials:\n  - name: x\n    engine: {engine}\n    strategy: {strategy}\n    role: app\n{extra}    target:\n      file: {{path: s.enc.yaml, key: '[\"p\"]', usernameKey: '[\"u\"]'}}\n    admin:\n      url: redis://127.0.0.1/\n"
        );
        Plan::parse(plan.as_bytes()).unwrap().credentials.remove(0)
    }

    fn rolled(retire_after: Option<Timestamp>) -> Pending {
        Pending {
            credential: "x".into(),
            phase: Phase::Rolled,
            password: SecretString::new("new".into()),
            username: None,
            previous_username: None,
            previous_password: None,
            generation: 1,
            retire_after,
        }
    }

    #[test]
    fn dual_with_a_grace_retires_on_the_first_run_after_it() {
        let cred = credential("redis", "dual", "    grace: 1h\n");
        let clock = FixedClock::at(1_000_000);
        let p = rolled(retire_after(&cred, clock.now()));
        assert_eq!(p.retire_after, Some(Timestamp::from_unix(1_003_600)));
        clock.advance(Duration::from_secs(3599));
        assert_eq!(
            p.retire_deferred(clock.now()),
            Some(Timestamp::from_unix(1_003_600)),
            "a run within the grace defers"
        );
        clock.advance(Duration::from_secs(1));
        assert_eq!(p.retire_deferred(clock.now()), None, "the next run retires");
    }

    #[test]
    fn without_a_grace_the_old_password_goes_at_once() {
        let now = Timestamp::from_unix(1_000_000);
        for cred in [
            credential("redis", "dual", ""),
            credential("redis", "dual", "    grace: 0s\n"),
            credential("redis", "in-place", "    grace: 1h\n"),
            // Alternating's grace is how long the retired role still logs in, not a wait.
            credential("postgres", "alternating", "    grace: 1h\n"),
        ] {
            assert_eq!(retire_after(&cred, now), None, "{:?}", cred.method);
            assert_eq!(rolled(None).retire_deferred(now), None);
        }
    }

    #[test]
    fn a_credential_is_due_again_rotate_after_its_last_rotation() {
        let cred = credential("postgres", "in-place", "    rotateAfter: 20h\n");
        let clock = FixedClock::at(2_000_000);
        let rotated_at = clock.now();
        assert!(!cred.is_due(Some(&rotated_at), clock.now().unix()));
        clock.advance(Duration::from_secs(20 * 3600 - 1));
        assert!(!cred.is_due(Some(&rotated_at), clock.now().unix()));
        clock.advance(Duration::from_secs(1));
        assert!(cred.is_due(Some(&rotated_at), clock.now().unix()));
    }
}
