"""The benchmark's chart: the latency distribution of each measured path (make bench).

Reads .local/bench/orders.json (written by the bench binary) and writes a PNG: for each measured
path a box of Orderflow's latencies and, beside it in grey, the floor's (the same hops with no
logic), every figure drawn beside its box, on a log scale (single orders take milliseconds, a
200-order load seconds).
Usage: chart.py ORDERS_JSON OUT_PNG "MACHINE"
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

src, out, machine = sys.argv[1], sys.argv[2], sys.argv[3]
data = json.load(open(src))
n, in_flight = len(data["load_final_ms"]), data.get("in_flight", "?")
paths = [
    ("one order:\nPOST to its\nOrderPlaced", "single_announced_ms"),
    ("one order:\nPOST to\nReadyToShip", "single_final_ms"),
    (f"{n} orders,\n{in_flight} in flight:\nthe POST alone", "load_post_ms"),
    (f"{n} orders,\n{in_flight} in flight:\nPOST to final status", "load_final_ms"),
]
floor = data.get("floor") or {}
fig, ax = plt.subplots(figsize=(10, 5.5), dpi=110)
# Each path: Orderflow's box, and beside it (grey) the floor's, the same hops with no logic.
for i, (_, key) in enumerate(paths):
    for offset, values, colour in ((-0.18, data[key], "C0"), (0.18, floor.get(key, []), "grey")):
        if not values:
            continue
        x = i + 1 + offset
        ax.boxplot([values], positions=[x], widths=0.3, whis=(0, 100),
                   boxprops={"color": colour}, medianprops={"color": colour})
        ax.scatter([x + 0.12] * len(values), values, s=5, alpha=0.35, color=colour)
ax.set_xticks(range(1, len(paths) + 1), [name for name, _ in paths])
ax.set_xlim(0.5, len(paths) + 0.5)
ax.plot([], [], color="C0", label="Orderflow")
ax.plot([], [], color="grey", label="floor: the same hops, no logic (tests/bench/floor)")
ax.legend(loc="upper left", fontsize=8)
ax.set_yscale("log")
ax.set_ylabel("milliseconds (log scale)")
ax.set_title(f"Orderflow on the local emulator, release binaries ({data['orders']} orders)\n{machine}", fontsize=10)
ax.grid(axis="y", which="both", alpha=0.3)
fig.tight_layout()
fig.savefig(out)
print(f"chart: {out}")
