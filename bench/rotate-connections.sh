#!/usr/bin/env bash
# Database connections one `credseal rotate --plan` opens for N credentials on one PostgreSQL
# (in-place) and N on one Redis (dual), counted by the servers (PostgreSQL log_connections,
# Redis INFO stats total_connections_received), admin with its own password and with
# `{target: true}`. OLD (default /work/main/target/debug/credseal, the binary before admin
# sessions were reused) against this tree's build.
# Usage: bash bench/rotate-connections.sh [N] [OLD]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-5}
old=${2:-/work/main/target/debug/credseal}
cargo build -q
for bin in "$old" "$PWD/target/debug/credseal"; do
  echo "# $bin"
  CREDSEAL_BIN=$bin CONN_CREDENTIALS=$n cargo test -q --test it -- --ignored --exact \
    bench_rotate::connections_per_admin_url --nocapture 2>&1 | grep -E '^BENCH|panicked|FAILED' || true
done
