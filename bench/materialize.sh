#!/usr/bin/env bash
# materialize: time from start to the first complete render of 50 Secrets (--once), and the
# sidecar's idle RSS, measured on the static build the container image ships (crt-static,
# non-PIE, size-optimised, panic=abort). Needs hyperfine (apt-get install hyperfine).
set -euo pipefail
cd "$(dirname "$0")/.."
RUSTFLAGS="-C target-feature=+crt-static -C relocation-model=static" \
CARGO_PROFILE_RELEASE_OPT_LEVEL=s CARGO_PROFILE_RELEASE_PANIC=abort CARGO_TARGET_DIR=target/static \
  cargo build --release -q --target x86_64-unknown-linux-gnu
bin=$PWD/target/static/x86_64-unknown-linux-gnu/release/credseal
work=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT
pid=
mkdir -p "$work/source" "$work/keys" "$work/out"
r=$("$bin" keygen -o "$work/keys/age.agekey")
for i in $(seq -w 1 50); do
  cat > "$work/plain.yaml" <<YAML
apiVersion: v1
kind: Secret
metadata:
    name: app-$i
    namespace: bench
stringData:
    username: user_$i
    password: 8c1d6b0e7f3a4c29b5e1d07a6f2c9e$i
    database: db_$i
YAML
  "$bin" encrypt --age "$r" "$work/plain.yaml" > "$work/source/app-$i.enc.yaml"
done
args=(materialize --source "$work/source" --keys "$work/keys" --out "$work/out" --namespace bench
      --template "DATABASE_URL=postgresql://{{app-01/username}}:{{app-01/password}}@db:5432/app")
hyperfine -N --warmup 3 --runs 30 "$bin ${args[*]} --once"
"$bin" "${args[@]}" --listen 127.0.0.1:0 --interval 2 2>/dev/null &
pid=$!
sleep 3
echo "sidecar idle RSS after first render: $(awk '/VmRSS/ {print $2, $3}' /proc/$pid/status) (50 Secrets, watching)"
grep -E '^(Rss|Pss_Anon|Pss_File)' /proc/$pid/smaps_rollup
