#!/usr/bin/env bash
# Harness records/s beside its serde floor and Powertools (Python) BatchProcessor, on the same batch
# file, in one run. Usage: make bench   (or shared/harness/benches/run.sh)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
cd "$ROOT"
. infra/common.sh
BATCH=events-samples/harness/batch-of-10-order-placed.sqs.json

infra/local-aws.sh setup
cargo bench -p orderflow-harness --bench harness -- --noplot sqs_batch >&2
PY=$(.venv/bin/python shared/harness/benches/powertools_batch.py "$BATCH")

.venv/bin/python - "$CARGO_TARGET_DIR" "$BATCH" "$PY" <<'PYEOF'
import json, sys, os
target, batch, py = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
n = len(json.load(open(batch))["Records"])
def rps(name):
    est = json.load(open(os.path.join(target, "criterion", "sqs_batch", name, "new", "estimates.json")))
    return n / (est["mean"]["point_estimate"] * 1e-9)
rows = [("serde_json decode only (floor)", rps("serde_floor")),
        ("orderflow harness (decode, validate, idempotency, ack)", rps("harness")),
        ("Powertools Python BatchProcessor (json decode, ack)", py["records_per_second"])]
print(f"\nbatch: {batch} ({n} records)")
print(f"{'':56} {'records/s':>12}")
for name, v in rows:
    print(f"{name:56} {v:12,.0f}")
PYEOF
