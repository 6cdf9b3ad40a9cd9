#!/usr/bin/env bash
# The local AWS: MiniStack (a LocalStack-compatible emulator that runs Lambdas without Docker),
# installed pinned from PyPI into the project's own .venv, started in its own process group.
#
#   infra/local-aws.sh setup    install the pinned Python tools (infra/requirements.txt) into .venv
#   infra/local-aws.sh up       setup, then start the emulator on 127.0.0.1:$ORDERFLOW_AWS_PORT (4566)
#   infra/local-aws.sh down     stop the emulator and everything it started (its Lambda processes too)
#   infra/local-aws.sh status   say whether it answers
#   infra/local-aws.sh reset    wipe all emulated state
#   eval "$(infra/local-aws.sh env)"   point the AWS CLI and SDKs at it
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$ROOT/infra/common.sh"
VENV="$ROOT/.venv"
STATE="$ROOT/.local"
PORT="${ORDERFLOW_AWS_PORT:-4566}"
ENDPOINT="http://127.0.0.1:$PORT"
PIDFILE="$STATE/ministack.pid"
LOG="$STATE/ministack.log"

LOG_PREFIX=local-aws

print_env() {
  cat <<ENV
export AWS_ENDPOINT_URL=$ENDPOINT
export AWS_ACCESS_KEY_ID=test
export AWS_SECRET_ACCESS_KEY=test
export AWS_REGION=us-east-1
export AWS_DEFAULT_REGION=us-east-1
export PATH="$VENV/bin:\$PATH"
ENV
}

setup() {
  # Compiled at install: every deployment starts a score of AWS CLI processes (venv_install says why).
  venv_install "$VENV" "$ROOT/infra/requirements.txt" python3 compile
}

healthy() {
  curl -fsS --max-time 2 "$ENDPOINT/_ministack/health" >/dev/null 2>&1
}

up() {
  setup
  mkdir -p "$STATE"
  if healthy; then
    log "emulator already answers on $ENDPOINT"
    return 0
  fi
  log "starting MiniStack on $ENDPOINT (log: $LOG)"
  # Own session and process group (setsid), so `down` can stop the emulator and every Lambda
  # bootstrap process it spawned, without killing anything by name. The launcher disables Nagle's
  # algorithm on the emulator's Lambda Runtime API server: with it, each event hop costs ~42 ms more
  # (docs/local-aws.md).
  # AWS_ENDPOINT_URL in its environment is what MiniStack hands to the Lambda processes it starts,
  # so the functions call back into it instead of real AWS.
  start_in_group "$PIDFILE" "$LOG" 60 healthy \
    env AWS_ENDPOINT_URL="$ENDPOINT" BIND_HOST=127.0.0.1 GATEWAY_PORT="$PORT" LOG_LEVEL="${MINISTACK_LOG_LEVEL:-info}" \
    "$VENV/bin/python" -c '
import socketserver, sys
socketserver.StreamRequestHandler.disable_nagle_algorithm = True
sys.argv = ["ministack"]
from ministack.app import main
sys.exit(main())
' || { log "emulator did not start"; return 1; }
  log "emulator ready"
}

down() {
  stop_group "$PIDFILE"
}

case "${1:-}" in
  setup) setup ;;
  up) up ;;
  down) down ;;
  status) if healthy; then echo "up at $ENDPOINT"; else echo "down"; exit 1; fi ;;
  reset) curl -fsS -X POST "$ENDPOINT/_ministack/reset" >/dev/null && log "state wiped" ;;
  env) print_env ;;
  *) sed -n '2,12p' "$0"; exit 2 ;;
esac
