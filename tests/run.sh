#!/usr/bin/env bash
# `make test`: everything, on a fresh machine too. Installs what it needs (infra/local-aws.sh), starts
# the local emulator, deploys the real template with the real binaries, runs every test including the
# emulator-backed ones, and stops the emulator again.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
: "${CARGO_TARGET_DIR:=$HOME/.cache/orderflow/target}"
export CARGO_TARGET_DIR
step() { printf '\n== %s\n' "$*"; }

step "formatting"
cargo fmt --all -- --check

step "lints (clippy, warnings are errors)"
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "tools (pinned, into .venv)"
infra/local-aws.sh setup

step "template lint (cfn-lint)"
.venv/bin/cfn-lint infra/template.yaml

step "local AWS up"
started_here=0
if ! infra/local-aws.sh status >/dev/null 2>&1; then
  infra/local-aws.sh up
  started_here=1
fi
cleanup() { [ "$started_here" = 1 ] && infra/local-aws.sh down || true; }
trap cleanup EXIT
eval "$(infra/local-aws.sh env)"

step "build and deploy infra/template.yaml to the emulator"
infra/deploy-local.sh

step "all tests (unit, adapters against the emulator, end to end)"
log="$ROOT/.local/test-output.log"
cargo test --workspace -- --include-ignored 2>&1 | tee "$log"
# One closing line for the whole run (cargo prints one per test binary, the last often a doc-test
# binary with nothing in it).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed/) p += $(i-1); if ($i ~ /^failed/) f += $(i-1); if ($i ~ /^ignored/) s += $(i-1) } }
     END { printf "\ntests: %d passed, %d failed, %d skipped\n", p, f, s }' "$log"
