#!/usr/bin/env bash
# Deploys the latency floors of `make bench` (tests/bench/floor.yaml: an order's hops with no logic)
# to the local emulator, beside the stack: stack <stack>-floor, and with Calls=same the same-calls
# floor (the same hops making an order's AWS requests) as <stack>-floor-calls; one binary built as the
# functions are (cargo lambda; release unless ORDERFLOW_PROFILE=debug, for a quick check). Writes
# their outputs to .local/floor-outputs.json and .local/floor-calls-outputs.json, where the
# benchmark (tests/src/bin/bench.rs) reads them.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
. infra/common.sh
LOG_PREFIX=floor
STACK="${ORDERFLOW_STACK:-orderflow}-floor"

infra/local-aws.sh up
eval "$(infra/local-aws.sh env)"
case "$(uname -m)" in
  x86_64) target_flag=--x86-64; arch=x86_64 ;;
  aarch64) target_flag=--arm64; arch=arm64 ;;
  *) log "unsupported machine architecture $(uname -m)"; exit 1 ;;
esac
profile_flag=(--release)
[ "${ORDERFLOW_PROFILE:-release}" = debug ] && profile_flag=()
log "building the floor (${ORDERFLOW_PROFILE:-release}, $(uname -m))"
cargo lambda build --quiet --compiler cargo "$target_flag" "${profile_flag[@]}" --output-format zip --bin floor
python3 infra/local-overlay.py tests/bench/floor.yaml "$CARGO_TARGET_DIR/lambda" "$ROOT/.local/floor.local.yaml"
deploy_template "$ROOT/.local/floor.local.yaml" "$STACK" "Architecture=$arch" "Calls=none"
write_stack_outputs "$STACK" "$ROOT/.local/floor-outputs.json"
deploy_template "$ROOT/.local/floor.local.yaml" "$STACK-calls" "Architecture=$arch" "Calls=same"
write_stack_outputs "$STACK-calls" "$ROOT/.local/floor-calls-outputs.json"
log "deployed; outputs in .local/floor-outputs.json and .local/floor-calls-outputs.json"
