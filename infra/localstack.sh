#!/usr/bin/env bash
# LocalStack on the host, without Docker: the checks `make test` runs against LocalStack as its users
# do (rules to queues, S3). Installed pinned from PyPI into its own virtualenv (.venv-localstack,
# infra/requirements-localstack.txt), started in its own process group on its own port, beside
# MiniStack. On the host it serves EventBridge, SQS, S3 and SES v1; Lambda and DynamoDB need Docker
# (docs/local-aws.md). With Docker, use infra/localstack/docker-compose.yml instead (README).
#
#   infra/localstack.sh setup    install the pinned LocalStack into .venv-localstack
#   infra/localstack.sh up       setup, then start it on 127.0.0.1:$ORDERFLOW_LOCALSTACK_PORT (4576)
#   infra/localstack.sh down     stop it and everything it started
#   infra/localstack.sh status   say whether it answers
#   infra/localstack.sh endpoint print its endpoint URL
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$ROOT/infra/common.sh"
VENV="$ROOT/.venv-localstack"
STATE="$ROOT/.local/localstack"
PORT="${ORDERFLOW_LOCALSTACK_PORT:-4576}"
ENDPOINT="http://127.0.0.1:$PORT"
PIDFILE="$STATE/localstack.pid"
LOG="$STATE/localstack.log"
REQUIREMENTS="$ROOT/infra/requirements-localstack.txt"

LOG_PREFIX=localstack

# LocalStack 4.14 needs Python 3.13: python3.13 on the PATH, or pyenv's (these machines have it).
python313() {
  if [ -n "${ORDERFLOW_PYTHON313:-}" ]; then echo "$ORDERFLOW_PYTHON313"; return; fi
  # (pyenv's shim answers `command -v` even where 3.13 is not the selected version: ask it to run.)
  if python3.13 -V >/dev/null 2>&1; then command -v python3.13; return; fi
  local pyenv_root; pyenv_root=$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")
  local found; found=$(ls -d "$pyenv_root"/versions/3.13*/bin/python 2>/dev/null | sort -V | tail -1)
  [ -n "$found" ] || { log "LocalStack 4.14 needs Python 3.13: install it (pyenv install 3.13) or set ORDERFLOW_PYTHON313"; exit 1; }
  echo "$found"
}

setup() {
  venv_install "$VENV" "$REQUIREMENTS" "$(python313)"   # 8 s the first time with uv, 90 s with pip
}

healthy() {
  curl -fsS --max-time 2 "$ENDPOINT/_localstack/health" 2>/dev/null | grep -q '"sqs": "\(available\|running\)"'
}

up() {
  setup
  mkdir -p "$STATE/volume"
  if healthy; then
    log "LocalStack already answers on $ENDPOINT"
    return 0
  fi
  log "starting LocalStack on $ENDPOINT (log: $LOG)"
  start_in_group "$PIDFILE" "$LOG" 120 healthy \
    env GATEWAY_LISTEN="127.0.0.1:$PORT" DNS_ADDRESS=0 SKIP_SSL_CERT_DOWNLOAD=1 DISABLE_EVENTS=1 \
    SERVICES=sqs,events,s3,sts,iam LOCALSTACK_VOLUME_DIR="$STATE/volume" \
    "$VENV/bin/python" -m localstack.runtime.main || { log "LocalStack did not start"; return 1; }
  log "LocalStack ready"
}

down() {
  stop_group "$PIDFILE"
}

case "${1:-}" in
  setup) setup ;;
  up) up ;;
  down) down ;;
  status) if healthy; then echo "up at $ENDPOINT"; else echo "down"; exit 1; fi ;;
  endpoint) echo "$ENDPOINT" ;;
  *) sed -n '2,14p' "$0"; exit 2 ;;
esac
