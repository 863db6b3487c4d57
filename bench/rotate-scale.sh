#!/usr/bin/env bash
# One Secret-target rotation (Redis dual, one consumer Deployment) against the in-process fake
# API server with many unrelated objects in the namespace: peak RSS of the credseal process
# (GNU time's %M), bytes the API served (counted by a TCP proxy in front of it, TLS included),
# requests, wall time. Default sizes: 1,000 Secrets + 500 Deployments, then 10,000 + 5,000.
# Needs redis-server and GNU time (apt-get install redis-server time).
# Usage: bash bench/rotate-scale.sh ["SECRETS:DEPLOYMENTS" ...]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q
export CREDSEAL_BIN=$PWD/target/release/credseal
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(0:0 1000:500 10000:5000)
for size in "${sizes[@]}"; do
  SCALE_SECRETS=${size%:*} SCALE_DEPLOYMENTS=${size#*:} cargo test -q --test it -- --ignored \
    --exact bench_rotate::scale_secret_target_rotation --nocapture 2>&1 | grep -E '^BENCH|panicked|FAILED' || true
done
