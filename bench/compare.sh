#!/usr/bin/env bash
# Two credseal binaries side by side on one machine: `check` over the bench/check.sh tree
# (500 encrypted Secrets, MAC verified, and 500 Deployments) and `decrypt` of one Secret, with
# peak RSS. Usage: bash bench/compare.sh OLD_BINARY [NEW_BINARY]. Needs hyperfine and time.
set -euo pipefail
old=$(realpath "$1")
new=$(realpath "${2:-target/release/credseal}")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
"$new" keygen -o key.txt > recipient.txt
printf 'creation_rules:\n  - age: %s\n' "$(cat recipient.txt)" > .sops.yaml
printf 'apiVersion: v1\nkind: Secret\nmetadata:\n    name: pg\n    namespace: ns\ntype: Opaque\nstringData:\n    a: "1"\n    b: "2"\n    c: "3"\n    d: "4"\n    password: 8c1d6b0e7f3a4c29b5e1d07a6f2c9e34\n' > secret.yaml
SOPS_AGE_KEY_FILE=key.txt "$new" encrypt secret.yaml > one.enc.yaml
rm secret.yaml
for d in $(seq 0 9); do
  mkdir -p "tree/d$d"
  for i in $(seq 0 49); do
    cp one.enc.yaml "tree/d$d/s$i.enc.yaml"
    printf 'apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d%s\nspec:\n  replicas: 1\n' "$i" > "tree/d$d/dep$i.yaml"
  done
done
export SOPS_AGE_KEY_FILE=key.txt
hyperfine -N -w 3 -r 15 "$old check tree" "$new check tree"
hyperfine -N -w 5 -r 50 "$old decrypt one.enc.yaml" "$new decrypt one.enc.yaml"
for b in "$old" "$new"; do
  /usr/bin/time -f "$b decrypt: peak RSS %M kB" "$b" decrypt one.enc.yaml > /dev/null
done
ls -l "$old" "$new"
