"""The benchmark's chart: the latency distribution of each measured path (make bench).

Reads .local/bench/orders.json (written by the bench binary) and writes a PNG: one box per path,
every order's figure drawn beside its box, on a log scale (single orders take milliseconds, a
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
series = [
    ("one order:\nPOST to its\nOrderPlaced", data["single_announced_ms"]),
    ("one order:\nPOST to\nReadyToShip", data["single_final_ms"]),
    (f"{len(data['load_final_ms'])} orders,\n{data.get('in_flight', '?')} in flight:\nthe POST alone", data["load_post_ms"]),
    (f"{len(data['load_final_ms'])} orders,\n{data.get('in_flight', '?')} in flight:\nPOST to final status", data["load_final_ms"]),
]
fig, ax = plt.subplots(figsize=(9, 5), dpi=110)
labels = [name for name, _ in series]
values = [v for _, v in series]
ax.boxplot(values, tick_labels=labels, whis=(0, 100), widths=0.45)
for i, v in enumerate(values, start=1):
    ax.scatter([i + 0.3] * len(v), v, s=6, alpha=0.4)
ax.set_yscale("log")
ax.set_ylabel("milliseconds (log scale)")
ax.set_title(f"Orderflow on the local emulator, release binaries ({data['orders']} orders)\n{machine}", fontsize=10)
ax.grid(axis="y", which="both", alpha=0.3)
fig.tight_layout()
fig.savefig(out)
print(f"chart: {out}")
