#!/usr/bin/env bash
# End-to-end rotation time for one PostgreSQL role and one Redis user against local servers,
# file targets (no rollout waits): `credseal rotate` as a process, hyperfine, 20 runs each.
# Needs postgresql, redis-server and hyperfine (apt-get install postgresql redis-server hyperfine).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q
bin=$PWD/target/release/credseal
work=$(mktemp -d /tmp/credseal-bench.XXXXXX)
chmod 755 "$work"
pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort | tail -1)
run_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup() { run_pg "$pgbin/pg_ctl" -D "$work/pg" -m immediate stop >/dev/null 2>&1 || true; kill "$rpid" 2>/dev/null || true; rm -rf "$work"; }
rpid=
trap cleanup EXIT
mkdir "$work/pg"; echo admin-pw > "$work/pw"
[ "$(id -u)" = 0 ] && chown -R postgres "$work/pg" "$work/pw"
run_pg "$pgbin/initdb" -D "$work/pg" -U postgres --auth=scram-sha-256 --pwfile="$work/pw" >/dev/null
pgport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
rport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
run_pg "$pgbin/pg_ctl" -D "$work/pg" -o "-p $pgport -c listen_addresses=127.0.0.1 -k $work/pg" -l "$work/pg/log" -w start >/dev/null
hash() { printf %s "$1" | sha256sum | cut -d' ' -f1; }
printf 'user default on #%s ~* &* +@all\nuser app on #%s ~* &* +@all\n' "$(hash redis-admin)" "$(hash old)" > "$work/users.acl"
redis-server --port "$rport" --bind 127.0.0.1 --save "" --dir "$work" --aclfile "$work/users.acl" >/dev/null &
rpid=$!
sleep 1
PGPASSWORD=admin-pw psql -h 127.0.0.1 -p "$pgport" -U postgres -XAtqc "CREATE ROLE app_user LOGIN PASSWORD 'old'" postgres
cd "$work"
r=$("$bin" keygen -o key.txt)
for name in pg redis; do
  printf 'apiVersion: v1\nkind: Secret\nmetadata:\n    name: %s\n    namespace: bench\nstringData:\n    username: x\n    password: old\n' "$name" > p.yaml
  "$bin" encrypt --age "$r" p.yaml > "$name.enc.yaml"
done
cat > plan.yaml <<YAML
apiVersion: credseal.dev/v1alpha1
kind: RotationPlan
credentials:
  - name: pg
    engine: postgres
    strategy: in-place
    role: app_user
    target: {file: {path: pg.enc.yaml, key: '["stringData"]["password"]'}}
    admin: {url: "postgresql://postgres@127.0.0.1:$pgport/postgres", password: {env: PGADMIN}}
  - name: redis
    engine: redis
    strategy: dual
    role: app
    target: {file: {path: redis.enc.yaml, key: '["stringData"]["password"]'}}
    admin: {url: "redis://default@127.0.0.1:$rport/0", password: {env: REDISADMIN}}
YAML
export SOPS_AGE_KEY_FILE=$work/key.txt PGADMIN=admin-pw REDISADMIN=redis-admin
hyperfine -N --warmup 2 --runs 20 \
  "$bin rotate --plan plan.yaml --only pg" \
  "$bin rotate --plan plan.yaml --only redis"
