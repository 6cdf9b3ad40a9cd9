#!/usr/bin/env bash
# AWS SAM CLI, pinned (infra/requirements-sam.txt), installed into its own virtualenv (.venv-sam) on
# first use; runs `sam` on infra/template.yaml from the repository root, with cargo lambda (from
# .venv, infra/local-aws.sh setup) on PATH for `sam build`'s rust-cargolambda build method.
#
#   infra/sam.sh validate --lint
#   infra/sam.sh build                  # cargo lambda, release, arm64 (Architecture parameter)
#   infra/sam.sh deploy --guided
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$ROOT/.venv-sam"
REQUIREMENTS="$ROOT/infra/requirements-sam.txt"
cd "$ROOT"
. infra/common.sh

venv_install "$VENV" "$REQUIREMENTS"   # a few seconds the first time with uv, 80 s with pip
infra/local-aws.sh setup
export PATH="$ROOT/.venv/bin:$PATH" SAM_CLI_TELEMETRY=0
# `sam validate` without --lint needs a region even offline.
export AWS_REGION="${AWS_REGION:-us-east-1}" AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"
cmd="${1:-}"
# The template's default architecture is arm64: cargo lambda cross-compiles with zig for that target.
[ "$cmd" = build ] && rustup target add aarch64-unknown-linux-gnu >&2
case "$cmd" in
  # build reads the template meant for AWS; deploy and package then read what build wrote (.aws-sam/).
  validate|build) shift; exec "$VENV/bin/sam" "$cmd" --template-file infra/template.yaml "$@" ;;
  *) exec "$VENV/bin/sam" "$@" ;;
esac
