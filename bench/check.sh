#!/usr/bin/env bash
# `credseal check` over a tree of 1,000 files: 500 SOPS-encrypted Secrets (MAC verified with
# the identity) and 500 plain manifests, in 10 directories. Needs hyperfine.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q
bin=$PWD/target/release/credseal
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
"$bin" keygen -o key.txt > recipient.txt
printf 'creation_rules:\n  - age: %s\n' "$(cat recipient.txt)" > .sops.yaml
cat > secret.yaml <<'YAML'
apiVersion: v1
kind: Secret
metadata:
    name: postgres-credentials
    namespace: platform-services
type: Opaque
stringData:
    username: app_user
    password: 8c1d6b0e7f3a4c29b5e1d07a6f2c9e34
    host: postgres.platform-services.svc.cluster.local
    port: "5432"
YAML
"$bin" encrypt secret.yaml > one.enc.yaml
rm secret.yaml
for d in $(seq 0 9); do
  mkdir -p "tree/d$d"
  for i in $(seq 0 49); do
    cp one.enc.yaml "tree/d$d/s$i.enc.yaml"
    printf 'apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app-%s\nspec:\n  replicas: 2\n  template:\n    spec:\n      containers:\n        - name: app\n          image: app:%s\n' "$i" "$i" > "tree/d$d/deploy$i.yaml"
  done
done
echo "files: $(find tree -type f | wc -l)"
export SOPS_AGE_KEY_FILE=$PWD/key.txt
hyperfine -N --warmup 2 --runs 10 --export-markdown times.md \
  "$bin check tree" \
  "env -u SOPS_AGE_KEY_FILE $bin check tree"
cat times.md
