#!/usr/bin/env bash
# Runs the fuzz targets (shared/fuzz/fuzz_targets/) at once for FUZZ_SECONDS each (default 300; `make test`
# runs 20). Needs the machine's nightly toolchain; cargo-fuzz is installed, pinned, by the script (infra/common.sh, cargo_tool).
#
#   make fuzz                          every target, 5 minutes each
#   FUZZ_SECONDS=3600 make fuzz        longer
#   FUZZ_TARGETS=api_request make fuzz one target
#   FUZZ_BUILD_ONLY=1 shared/fuzz/run.sh  build the targets, run none (`make test` builds them
#                                      in the background while it does the rest)
#
# Corpora start from events-samples/ (the API samples' bodies, every SQS sample's record bodies)
# and grow in .local/fuzz/corpus/<target>/ from run to run. A crash stops its target (the others
# fuzz on for their time) and fails the run, leaves its input in .local/fuzz/artifacts/<target>/
# and prints how to replay it; make it a regression test in the
# crate it concerns (README, "Security").
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
. infra/common.sh
LOG_PREFIX=fuzz
SECONDS_EACH="${FUZZ_SECONDS:-300}"
TARGETS="${FUZZ_TARGETS:-api_request sqs_record}"
FUZZ=$(cargo_tool cargo-fuzz)
STATE="$ROOT/.local/fuzz"
export CARGO_TARGET_DIR="$CARGO_TARGET_DIR/fuzz"
# libFuzzer needs nightly (the machine has it; rustup picks it for this script only).
export RUSTUP_TOOLCHAIN=nightly

# The seeds, written fresh from events-samples/ at every run (the corpora keep what libFuzzer adds).
python3 - "$STATE/corpus" <<'PY'
import glob, hashlib, json, os, sys
out = sys.argv[1]
def seed(target, data):
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    name = "seed-" + hashlib.sha256(data).hexdigest()[:16]
    open(os.path.join(d, name), "wb").write(data)
# api_request's input: a key length byte, the key (Idempotency-Key), the body.
for path in sorted(glob.glob("events-samples/sales-api/*.http.json")):
    event = json.load(open(path))
    body = (event.get("body") or "").encode()
    if body:
        key = (event.get("headers", {}).get("idempotency-key") or "").encode()[:255]
        seed("api_request", bytes([0]) + body)
        seed("api_request", bytes([len(key)]) + key + body)
for path in sorted(glob.glob("events-samples/**/*.sqs.json", recursive=True)):
    for record in json.load(open(path)).get("Records", []):
        seed("sqs_record", record["body"].encode())
PY

# cargo fuzz build has no --locked: a lockfile that no longer fits the manifests (a crate under test
# gained a dependency) would be rewritten silently, on every fresh clone. Said here instead.
if ! cargo metadata --locked --offline --format-version 1 --manifest-path shared/fuzz/Cargo.toml > /dev/null 2>&1 \
    && ! cargo metadata --locked --format-version 1 --manifest-path shared/fuzz/Cargo.toml > /dev/null; then
  log "shared/fuzz/Cargo.lock does not fit the manifests: (cd shared/fuzz && cargo +nightly metadata --format-version 1 >/dev/null), then commit it"
  exit 1
fi
log "building the targets (nightly, libFuzzer; the first build takes minutes)"
"$FUZZ" fuzz build --fuzz-dir shared/fuzz -s none -O -a
if [ "${FUZZ_BUILD_ONLY:-0}" = 1 ]; then
  log "built; FUZZ_BUILD_ONLY=1: no target run"
  exit 0
fi
# TARGET: runs it for SECONDS_EACH; on a crash, says where the input is and how to replay it.
fuzz_one() {
  local target=$1
  mkdir -p "$STATE/corpus/$target" "$STATE/artifacts/$target"
  log "$target: $SECONDS_EACH s from $(ls "$STATE/corpus/$target" | wc -l) inputs"
  if ! "$FUZZ" fuzz run --fuzz-dir shared/fuzz -s none -O -a "$target" "$STATE/corpus/$target" -- \
      -max_total_time="$SECONDS_EACH" -max_len=20000 -timeout=10 -rss_limit_mb=2048 \
      -artifact_prefix="$STATE/artifacts/$target/" -print_final_stats=1 2>"$STATE/$target.log"; then
    tail -40 "$STATE/$target.log" >&2
    log "$target crashed: the input is in $STATE/artifacts/$target/; replay it with"
    log "  RUSTUP_TOOLCHAIN=nightly $FUZZ fuzz run --fuzz-dir shared/fuzz -s none -O -a $target <that file>"
    return 1
  fi
  grep -E "^stat::number_of_executed_units|^stat::peak_rss_mb" "$STATE/$target.log" | sed "s/^/[fuzz] $target /" >&2
  log "$target: no crash in $SECONDS_EACH s ($(ls "$STATE/corpus/$target" | wc -l) inputs in the corpus)"
}
# The targets at once, a process each (libFuzzer's runs are single-threaded): every target's
# SECONDS_EACH in the time of one. Each is waited for; one that crashed fails the run.
pids=()
for target in $TARGETS; do
  fuzz_one "$target" &
  pids+=($!)
done
wait_all "${pids[@]}"
