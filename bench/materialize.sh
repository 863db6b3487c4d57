#!/usr/bin/env bash
# materialize: time from start to the first complete render of 50 Secrets (--once), and the
# sidecar's idle RSS, for both images' binaries: the full build and the sidecar build
# (--no-default-features), each built the way the Dockerfile builds it (crt-static, non-PIE,
# size-optimised, panic=abort). Needs hyperfine (apt-get install hyperfine).
set -euo pipefail
cd "$(dirname "$0")/.."
build() { # target dir, extra cargo args
  RUSTFLAGS="-C target-feature=+crt-static -C relocation-model=static" \
  CARGO_PROFILE_RELEASE_OPT_LEVEL=s CARGO_PROFILE_RELEASE_PANIC=abort CARGO_TARGET_DIR=$1 \
    cargo build --release -q --locked --target x86_64-unknown-linux-gnu "${@:2}"
  echo "$1/x86_64-unknown-linux-gnu/release/credseal"
}
full=$(build target/static)
sidecar=$(build target/static-sidecar --no-default-features)
work=$(mktemp -d)
pid=
trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/source" "$work/keys" "$work/out"
r=$("$full" keygen -o "$work/keys/age.agekey")
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
  "$full" encrypt --age "$r" "$work/plain.yaml" > "$work/source/app-$i.enc.yaml"
done
args=(materialize --source "$work/source" --keys "$work/keys" --out "$work/out" --namespace bench
      --template "DATABASE_URL=postgresql://{{app-01/username}}:{{app-01/password}}@db:5432/app")
for bin in "$full" "$sidecar"; do
  echo "== $bin ($(stat -c %s "$bin") bytes)"
  hyperfine -N --warmup 5 --runs 100 "$bin ${args[*]} --once"
  "$bin" "${args[@]}" --listen 127.0.0.1:0 --interval 2 2>/dev/null &
  pid=$!
  sleep 3
  echo "sidecar idle RSS after first render: $(awk '/VmRSS/ {print $2, $3}' /proc/$pid/status) (50 Secrets, watching)"
  grep -E '^(Rss|Pss_Anon|Pss_File)' /proc/$pid/smaps_rollup
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  pid=
done
