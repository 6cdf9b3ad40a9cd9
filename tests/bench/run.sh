#!/usr/bin/env bash
# `make bench`: the figures of the README's "Performance", in one run.
#  1. the harness on a 10-record SQS batch beside its serde floor and Powertools (Python);
#  2. release binaries deployed to the local emulator, and beside them the floor (the same hops with
#     no logic, tests/bench/floor.yaml); then the order flow and the floor, each one at a time and
#     ORDERFLOW_BENCH_ORDERS (200) at once, every latency beside the floor's and their ratio, the
#     AWS requests each order made and what a million orders cost (tests/src/bin/bench.rs);
#  3. cold start (init, first invoke, peak RSS) of every function beside hello-world
#     (tests/bench/hello, the same profile; tests/src/bin/coldstart.rs), then over a local TLS
#     endpoint, with and without the connections opened at init;
#  4. a PNG chart of the latency distributions (tests/bench/chart.py), in docs/bench/.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
. infra/common.sh

machine="$(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
echo "machine: $machine"

echo "== harness"
shared/harness/benches/run.sh

echo "== order flow: release binaries on the local emulator"
ORDERFLOW_PROFILE=release infra/deploy-local.sh
echo "== the floor: the same hops with no logic (tests/bench/floor.yaml), deployed beside it"
# Built with the functions' profile, whatever ORDERFLOW_PROFILE the shell has.
ORDERFLOW_PROFILE=release tests/bench/deploy-floor.sh
eval "$(infra/local-aws.sh env)"
case "$(uname -m)" in x86_64) arch=--x86-64 ;; *) arch=--arm64 ;; esac
cargo lambda build --quiet --compiler cargo "$arch" --release --output-format zip --bin hello
# The deployed functions, the floor and hello-world: what this run built, not what an earlier
# build (a debug one) left in the same folder.
binaries="$(template_binaries | sort -u) floor hello"
echo "== zips (release, $(uname -m)), beside the 4 MB goal"
for fn in $binaries; do
  zip="$CARGO_TARGET_DIR/lambda/$fn/bootstrap.zip"
  printf '%-22s %6.2f MB%s\n' "$fn" "$(stat -c %s "$zip" | awk '{print $1/1048576}')" \
    "$([ "$(stat -c %s "$zip")" -gt 4194304 ] && echo '  over 4 MB' || true)"
done
cargo run --quiet -p orderflow-e2e --bin bench -- --orders "${ORDERFLOW_BENCH_ORDERS:-200}"

echo "== cold start: every function beside hello-world, same profile"
# Each function as Lambda runs it: the bootstrap out of its zip.
unpacked="$ROOT/.local/bench/bootstraps"
rm -rf "$unpacked"
for fn in $binaries; do
  [ "$fn" = floor ] && continue
  mkdir -p "$unpacked/$fn"
  python3 -m zipfile -e "$CARGO_TARGET_DIR/lambda/$fn/bootstrap.zip" "$unpacked/$fn"
  chmod +x "$unpacked/$fn/bootstrap"
done
# Then over TLS, as AWS is reached: a local TLS endpoint in front of the emulator, its certificate
# signed by a CA of this run's that the functions trust beside the system's roots (SSL_CERT_FILE).
tls="$ROOT/.local/bench/tls"
rm -rf "$tls" && mkdir -p "$tls"
localhost_certificate "$tls" DNS:localhost,IP:127.0.0.1
# The system's roots (Debian's bundle, or Amazon Linux's as on Lambda), so loading them costs what it
# costs there.
# (`ls` of the one that is not there fails: under pipefail the pipeline would, and stop the run.)
system_roots=$( (ls /etc/ssl/certs/ca-certificates.crt /etc/pki/tls/certs/ca-bundle.crt 2>/dev/null || true) | head -1)
cat $system_roots "$tls/ca.pem" > "$tls/roots.pem"
cargo run --quiet -p orderflow-e2e --bin coldstart -- "$unpacked" --runs "${ORDERFLOW_BENCH_COLD_RUNS:-7}" --tls "$tls"

venv_install .venv-bench infra/requirements-bench.txt
mkdir -p docs/bench
.venv-bench/bin/python tests/bench/chart.py .local/bench/orders.json docs/bench/latency.png "$machine"
