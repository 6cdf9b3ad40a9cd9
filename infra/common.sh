# Sourced by the scripts in infra/ and tests/ (and read by the Makefile): what they share, in one place.
# Expects ROOT to be the repository root.

# Cargo's build cache lives outside the checkout, so fresh clones (and CI) build incrementally, and
# every script (tests, local deploy, release deploy, benchmark) shares the one cache.
: "${CARGO_TARGET_DIR:=$HOME/.cache/orderflow/target}"
export CARGO_TARGET_DIR

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

# Installs the pinned requirements file $2 into the virtualenv $1, unless it already holds exactly
# that file's pins (a hash of the file is kept beside them). Every Python tool the project uses is
# installed this way, into the project's own folders.
venv_install() {
  local venv="$1" requirements="$2" stamp want
  stamp="$venv/.orderflow-requirements.sha256"
  want=$(sha256sum "$requirements" | cut -d' ' -f1)
  if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    return 0
  fi
  echo "installing the pins of ${requirements#"$ROOT"/} into ${venv#"$ROOT"/}" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
  echo "$want" > "$stamp"
}
