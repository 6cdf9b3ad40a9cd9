#!/usr/bin/env bash
# Builds the functions with cargo lambda and deploys infra/template.yaml to the local emulator
# (starting it if needed). Writes the stack's outputs to .local/stack-outputs.json, where the demo,
# the end-to-end tests and the steps below read them.
#
#   infra/deploy-local.sh            build (debug profile) + deploy to MiniStack (started if needed)
#   ORDERFLOW_PROFILE=release infra/deploy-local.sh   deploy release binaries (slower to build)
#   LOCAL_AWS=localstack infra/deploy-local.sh        deploy to LocalStack in Docker instead
#       (infra/localstack/docker-compose.yml, started by you; no HTTP API there: no Cognito to sign in with)
#
# The steps, in the order the end of this file runs them: the emulator, the read models' stores,
# the build, the emulator's copy of the template, the deployment, the stack's outputs, the bus
# archive, the catalogue and its stock, one env file per function, the smoke check.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
. infra/common.sh
LOG_PREFIX=deploy-local
STACK="${ORDERFLOW_STACK:-orderflow}"
STATE="$ROOT/.local"
OUTPUTS="$STATE/stack-outputs.json"
LOCAL_AWS="${LOCAL_AWS:-ministack}"
# Locally, texts go to a stand-in for Twilio's API on this port: the HTTP server the SMS end-to-end
# tests (and the demo) run. Nothing listening there means texts wait in the SMS queue, retried.
TWILIO_STAND_IN="${ORDERFLOW_TWILIO_STAND_IN:-http://127.0.0.1:4590}"
overlay_flags=()
read_model_params=()

# The one reader of the stack's outputs: the value of output $1, from $OUTPUTS.
output() {
  python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$OUTPUTS" "$1"
}

# MiniStack, started here; or LocalStack in Docker, which must be up already.
target_emulator() {
  case "$LOCAL_AWS" in
    ministack)
      infra/local-aws.sh up
      eval "$(infra/local-aws.sh env)"
      ;;
    localstack)
      infra/local-aws.sh setup   # the AWS CLI and cargo lambda
      eval "$(infra/local-aws.sh env)"
      export AWS_ENDPOINT_URL="${LOCALSTACK_ENDPOINT:-http://127.0.0.1:4566}"
      if curl -fsS --max-time 3 "$AWS_ENDPOINT_URL/_ministack/health" >/dev/null 2>&1; then
        log "$AWS_ENDPOINT_URL is MiniStack, not LocalStack: stop it first (make down)."
        exit 1
      fi
      if ! curl -fsS --max-time 3 "$AWS_ENDPOINT_URL/_localstack/health" | grep -q '"lambda"'; then
        log "LocalStack does not answer on $AWS_ENDPOINT_URL with Lambda enabled."
        log "Start it first: docker compose -f infra/localstack/docker-compose.yml up -d"
        exit 1
      fi
      overlay_flags=(--localstack)
      ;;
    *) log "LOCAL_AWS must be ministack or localstack, not $LOCAL_AWS"; exit 1 ;;
  esac
  log "target: $LOCAL_AWS at $AWS_ENDPOINT_URL"
  mkdir -p "$STATE"
}

# The read models' stores. MiniStack runs the Lambdas as local processes: they reach the machine's
# PostgreSQL and Redis on loopback (infra/local-services.sh starts or installs them). LocalStack runs
# them in containers on the compose network, beside the compose file's PostgreSQL and Redis.
read_model_stores() {
  if [ "$LOCAL_AWS" = ministack ]; then
    infra/local-services.sh up
    read_model_params=(RedisUrl=redis://127.0.0.1:6379 ReportingDbHost=127.0.0.1 ReportingDbPort=5432
      ReportingDbName=orderflow ReportingDbUser=postgres ReportingDbSsl=disable)
  else
    if ! aws secretsmanager describe-secret --secret-id "${STACK}-reporting-db" >/dev/null 2>&1; then
      aws secretsmanager create-secret --name "${STACK}-reporting-db" \
        --secret-string '{"username":"orderflow","password":"orderflow"}' >/dev/null
    fi
    local secret
    secret=$(aws secretsmanager describe-secret --secret-id "${STACK}-reporting-db" --query ARN --output text)
    read_model_params=(RedisUrl=redis://redis:6379 ReportingDbHost=postgres ReportingDbPort=5432
      ReportingDbName=orderflow "ReportingDbSecretArn=$secret" ReportingDbSsl=disable)
  fi
}

# The emulator runs the bootstrap binaries as local processes, so build for this machine's
# architecture with the plain cargo backend (no zig needed). AWS gets arm64 through `sam build`.
build_functions() {
  case "$(uname -m)" in
    x86_64) target_flag=--x86-64; template_arch=x86_64 ;;
    aarch64) target_flag=--arm64; template_arch=arm64 ;;
    *) log "unsupported machine architecture $(uname -m)"; exit 1 ;;
  esac
  local bin_flags=() binary
  log "building the functions with cargo lambda (${ORDERFLOW_PROFILE:-debug}, $(uname -m))"
  for binary in $(template_binaries); do bin_flags+=(--bin "$binary"); done
  if [ "${ORDERFLOW_PROFILE:-debug}" = release ]; then
    # cargo lambda's own zips: `make bench` reports their size.
    cargo lambda build --compiler cargo "$target_flag" --release --output-format zip "${bin_flags[@]}"
  else
    # The debug binaries (about 45 MB each) zipped only when changed, quickly, at once
    # (infra/zip-functions.py says why): cargo lambda zipped every one at every deploy.
    cargo lambda build --compiler cargo "$target_flag" --output-format binary "${bin_flags[@]}"
    python3 infra/zip-functions.py "$CARGO_TARGET_DIR/lambda" $(template_binaries)
  fi
}

# The emulator's copy of the template (infra/local-overlay.py): the zips built above.
local_template() {
  python3 infra/local-overlay.py infra/template.yaml "$CARGO_TARGET_DIR/lambda" "$STATE/template.local.yaml" \
    "${overlay_flags[@]}"
}

deploy_stack() {
  deploy_template "$STATE/template.local.yaml" "$STACK" \
    "Architecture=$template_arch" "TwilioApiBaseUrl=$TWILIO_STAND_IN" WebhooksAllowLocal=true \
    OrdersPerCallerPerHour="${ORDERFLOW_ORDERS_PER_CALLER_PER_HOUR:-1000}" \
    BackorderDeadlineSeconds="${ORDERFLOW_BACKORDER_DEADLINE_SECONDS:-30}" \
    "${read_model_params[@]}"
}

# The stack's outputs, with where the API answers locally and the emulator's endpoint, in $OUTPUTS.
write_outputs() {
  write_stack_outputs "$STACK" "$OUTPUTS"
}

# The archive the AWS template declares, made through the EventBridge API (see local-overlay.py).
bus_archive() {
  local archive
  archive=$(output EventArchiveName)
  if ! aws events describe-archive --archive-name "$archive" >/dev/null 2>&1; then
    local bus_arn
    bus_arn=$(output EventBusArn)
    aws events create-archive --archive-name "$archive" --event-source-arn "$bus_arn" --retention-days 30 >/dev/null
    # New emulator state: the read models start empty too, so that what they hold is exactly what the
    # archive can replay (orderflow-ops replay rebuilds them from it).
    if [ "$LOCAL_AWS" = ministack ]; then infra/local-services.sh reset; fi
  fi
}

# The shop's catalogue: the products the samples, the demo and a first curl can order
# (infra/seed/catalogue.json; the table name is filled in here).
seed_catalogue() {
  local table
  table=$(output CatalogueTableName)
  sed "s/CATALOGUE_TABLE/$table/" infra/seed/catalogue.json > "$STATE/catalogue-seed.json"
  aws dynamodb batch-write-item --request-items "file://$STATE/catalogue-seed.json" >/dev/null
  log "catalogue seeded ($table)"
}

# Stock on the shelf for every catalogue item (STOCK_PER_ITEM units, 100 unless set), so the
# README's first order ships. Only where the table has no level for it yet: a redeploy never resets
# what orders took or POST /stock brought.
seed_stock() {
  local table sku pids=()
  table=$(output StockTableName)
  for sku in $(python3 -c 'import json, sys; [print(r["PutRequest"]["Item"]["sku"]["S"]) for r in json.load(open(sys.argv[1]))["CATALOGUE_TABLE"]]' infra/seed/catalogue.json); do
    stock_one "$table" "$sku" &
    pids+=($!)
  done
  # The puts at once (the AWS CLI's start is most of each): a failed one fails the deploy.
  wait_all "${pids[@]}"
  log "stock seeded for every catalogue item ($table)"
}

# TABLE SKU: STOCK_PER_ITEM units of SKU in TABLE, unless it has a level already.
stock_one() {
  local err
  if ! err=$(aws dynamodb put-item --table-name "$1" \
    --item "{\"sku\": {\"S\": \"$2\"}, \"available\": {\"N\": \"${STOCK_PER_ITEM:-100}\"}}" \
    --condition-expression 'attribute_not_exists(sku)' 2>&1 >/dev/null); then
    # Already stocked (a redeploy) is fine; anything else is a failed deploy.
    case "$err" in *ConditionalCheckFailed*) ;; *) log "seeding $2 failed: $err"; exit 1 ;; esac
  fi
}

# One env file per function, read back from the deployed functions themselves, for
# `cargo lambda watch --env-file .local/env/<function>.env` (see the README).
env_files() {
  mkdir -p "$STATE/env"
  local logical physical pids=()
  while read -r logical physical; do
    env_file "$(binary_of "$logical")" "$physical" &
    pids+=($!)
  done < <(aws cloudformation describe-stack-resources --stack-name "$STACK" \
    --query 'StackResources[?ResourceType==`AWS::Lambda::Function`].[LogicalResourceId,PhysicalResourceId]' --output text)
  # The 14 reads at once (the AWS CLI's start is most of each): a failed one fails the deploy.
  [ "${#pids[@]}" -gt 0 ] || { log "no function in stack $STACK"; exit 1; }
  wait_all "${pids[@]}"
}

# BINARY FUNCTION: .local/env/BINARY.env, from the deployed FUNCTION's environment.
env_file() {
  aws lambda get-function-configuration --function-name "$2" --query 'Environment.Variables' --output json |
    python3 -c 'import json,sys; [print(f"{k}={v}") for k, v in sorted(json.load(sys.stdin).items())]' > "$STATE/env/$1.env"
  printf 'AWS_ENDPOINT_URL=%s\nAWS_REGION=%s\nAWS_ACCESS_KEY_ID=test\nAWS_SECRET_ACCESS_KEY=test\n' \
    "$AWS_ENDPOINT_URL" "$AWS_REGION" >> "$STATE/env/$1.env"
}

# The Sales API answers through the deployed route (its own 404 for an unknown order, not the
# emulator's). The first calls of a function the emulator has just created can be answered by the
# emulator itself while it unpacks the code; this waits that out, so whoever comes next (the demo,
# the tests, a user's curl) meets a warm, working API, and a deploy that never answers fails here.
# The check signs in (every route needs a caller) as a user of its own, made in the stack's user
# pool, and asks for an order that does not exist: the function's own 404 (`"errors"`) means the
# authorizer and the function both answer; no token must be the authorizer's 401.
smoke_check() {
  local api_url pool client token user=deploy-check@orderflow.example password=Orderflow-deploy-Check1
  if ! python3 -c 'import json, sys; sys.exit("ApiId" not in json.load(open(sys.argv[1])))' "$OUTPUTS"; then
    log "deployed; outputs in $OUTPUTS (no HTTP API on $LOCAL_AWS)"
    return
  fi
  api_url=$(output LocalApiUrl)
  pool=$(output UserPoolId)
  client=$(output UserPoolClientId)
  aws cognito-idp admin-create-user --user-pool-id "$pool" --username "$user" --message-action SUPPRESS \
    --user-attributes Name=email,Value="$user" Name=email_verified,Value=true >/dev/null 2>&1 || true
  aws cognito-idp admin-set-user-password --user-pool-id "$pool" --username "$user" --password "$password" \
    --permanent >/dev/null
  token=$(aws cognito-idp admin-initiate-auth --user-pool-id "$pool" --client-id "$client" \
    --auth-flow ADMIN_USER_PASSWORD_AUTH --auth-parameters "USERNAME=$user,PASSWORD=$password" \
    --query AuthenticationResult.IdToken --output text)
  local order="$api_url/orders/00000000-0000-4000-8000-000000000000"
  api_answers() { curl -sS --max-time 5 -H "Authorization: Bearer $token" "$order" 2>/dev/null | grep -q '"errors"'; }
  await_check api_answers 30 || { log "the Sales API at $api_url does not answer after 30 s"; exit 1; }
  local anonymous
  anonymous=$(curl -sS --max-time 5 -o /dev/null -w '%{http_code}' "$order")
  [ "$anonymous" = 401 ] || { log "GET without a token answered $anonymous, not 401: is the authorizer there?"; exit 1; }
  log "deployed; outputs in $OUTPUTS (API: $api_url, every route behind the JWT authorizer)"
}

target_emulator
read_model_stores
build_functions
local_template
deploy_stack
write_outputs
bus_archive
seed_catalogue
seed_stock
env_files
smoke_check
