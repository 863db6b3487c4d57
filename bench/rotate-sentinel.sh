#!/usr/bin/env bash
# Rotation of the `default` user across a Redis master, one replica and three Sentinels
# (dual strategy: every node, masterauth, Sentinel auth-pass, link and Sentinel checks, retire),
# file target, no rollout waits. Needs redis-server and hyperfine.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q
bin=$PWD/target/release/credseal
work=$(mktemp -d /tmp/credseal-bench-sentinel.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
hash() { printf %s "$1" | sha256sum | cut -d' ' -f1; }
m=$(port); r=$(port); s1=$(port); s2=$(port); s3=$(port)
for n in master replica; do
  mkdir -p "$work/$n"
  printf 'user default on #%s ~* &* +@all\n' "$(hash old)" > "$work/$n/users.acl"
done
printf 'port %s\nbind 127.0.0.1\ndir %s\naclfile %s\nsave ""\n' "$m" "$work/master" "$work/master/users.acl" > "$work/master/redis.conf"
printf 'port %s\nbind 127.0.0.1\ndir %s\naclfile %s\nsave ""\nreplicaof 127.0.0.1 %s\nmasterauth old\n' "$r" "$work/replica" "$work/replica/users.acl" "$m" > "$work/replica/redis.conf"
redis-server "$work/master/redis.conf" >/dev/null & pids+=($!)
redis-server "$work/replica/redis.conf" >/dev/null & pids+=($!)
for s in $s1 $s2 $s3; do
  mkdir -p "$work/s$s"
  printf 'port %s\nbind 127.0.0.1\ndir %s\nsentinel monitor mymaster 127.0.0.1 %s 2\nsentinel auth-pass mymaster old\nsentinel down-after-milliseconds mymaster 3000\n' "$s" "$work/s$s" "$m" > "$work/s$s/sentinel.conf"
  redis-server "$work/s$s/sentinel.conf" --sentinel >/dev/null & pids+=($!)
done
until redis-cli -p "$s1" SENTINEL REPLICAS mymaster 2>/dev/null | grep -q "$r" \
   && redis-cli -p "$s3" SENTINEL REPLICAS mymaster 2>/dev/null | grep -q "$r"; do sleep 0.5; done
cd "$work"
key=$("$bin" keygen -o key.txt)
printf 'apiVersion: v1\nkind: Secret\nmetadata:\n    name: cache\n    namespace: bench\nstringData:\n    password: old\n' > p.yaml
"$bin" encrypt --age "$key" p.yaml > cache.enc.yaml
cat > plan.yaml <<YAML
apiVersion: credseal.dev/v1alpha1
kind: RotationPlan
credentials:
  - name: cache
    engine: redis
    strategy: dual
    role: default
    target: {file: {path: cache.enc.yaml, key: '["stringData"]["password"]'}}
    admin: {url: "redis://default@127.0.0.1:$m/0", password: {target: true}}
    topology: {kind: sentinel, masterName: mymaster, sentinels: ["127.0.0.1:$s1", "127.0.0.1:$s2", "127.0.0.1:$s3"]}
YAML
export SOPS_AGE_KEY_FILE=$work/key.txt
hyperfine -N --warmup 2 --runs 20 "$bin rotate --plan plan.yaml"
