"""The benchmark's chart: the latency distribution of each measured path (make bench).

Reads .local/bench/orders.json (written by the bench binary) and writes a PNG: for each measured
path a box of Orderflow's latencies and, beside it, the floor's (the same hops with no logic, grey)
and the same-calls floor's (the same hops making an order's AWS requests, orange), every figure
drawn beside its box, on a log scale (single orders take milliseconds, a
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
calls = data.get("floor_calls") or {}
fig, ax = plt.subplots(figsize=(10, 5.5), dpi=110)
# Each path: Orderflow's box, and beside it the floor's (grey) and the same-calls floor's (orange).
for i, (_, key) in enumerate(paths):
    for offset, values, colour in ((-0.25, data[key], "C0"), (0.0, floor.get(key, []), "grey"),
                                   (0.25, calls.get(key, []), "C1")):
        if not values:
            continue
        x = i + 1 + offset
        ax.boxplot([values], positions=[x], widths=0.2, whis=(0, 100),
                   boxprops={"color": colour}, medianprops={"color": colour})
        ax.scatter([x + 0.08] * len(values), values, s=5, alpha=0.35, color=colour)
ax.set_xticks(range(1, len(paths) + 1), [name for name, _ in paths])
ax.set_xlim(0.5, len(paths) + 0.5)
ax.plot([], [], color="C0", label="Orderflow")
ax.plot([], [], color="grey", label="floor: the same hops, no logic (tests/bench/floor)")
ax.plot([], [], color="C1", label="same-calls floor: the same hops and AWS requests, no logic")
ax.legend(loc="upper left", fontsize=8)
ax.set_yscale("log")
ax.set_ylabel("milliseconds (log scale)")
ax.set_title(f"Orderflow on the local emulator, release binaries ({data['orders']} orders)\n{machine}", fontsize=10)
ax.grid(axis="y", which="both", alpha=0.3)
fig.tight_layout()
fig.savefig(out)
print(f"chart: {out}")
