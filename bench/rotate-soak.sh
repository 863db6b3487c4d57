#!/usr/bin/env bash
# Concurrency soak: PAIRS (default 100) pairs of `credseal rotate` on one credential started
# together, one of each pair held between verify and commit (FAILPOINTS
# rotate::after-verify=sleep(400)), for PostgreSQL (in-place) and Redis (dual), the admin with
# its own password and with `admin.password: {target: true}`, file target. Run twice: with
# --wait-for-lock 0 (the loser exits 221) and 10 (the loser waits, then rotates again). After
# every pair the target's password must log in (lost=0). The release binary is the one
# measured; the servers and the checks come from the integration tests' support code.
# Needs postgresql and redis-server (apt-get install postgresql redis-server).
# Usage: bash bench/rotate-soak.sh [PAIRS]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q
export CREDSEAL_BIN=$PWD/target/release/credseal SOAK_PAIRS=${1:-100}
for wait in 0 10; do
  SOAK_WAIT=$wait cargo test -q --test it -- --ignored --exact \
    bench_rotate::soak_concurrent_pairs --nocapture 2>&1 | grep -E '^BENCH|panicked|FAILED' || true
done
