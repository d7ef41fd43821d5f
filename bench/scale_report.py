"""Rewrites the scale table in bench/README.md and the plot bench/scale.png from
bench/results/scale-*.json (written by scale-bench; see bench/run-scale.sh)."""

import glob
import json
import os
import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

BENCH = os.path.dirname(os.path.abspath(__file__))
START, END = "<!-- scale-table:start -->", "<!-- scale-table:end -->"


def load():
    runs = []
    for path in glob.glob(os.path.join(BENCH, "results", "scale-*.json")):
        with open(path) as f:
            runs.append(json.load(f))
    return sorted(runs, key=lambda r: r["nodes"])


def table(runs):
    rows = [
        ("pods scheduled per second (target ≥ 3,000)",
         lambda r: f'{r["fill"]["pods"]["scheduling_pods_per_second"]:,.0f}'),
        ("pod startup p50 / p90 / p99, s (target p99 ≤ 5)",
         lambda r: "{p50:.2f} / {p90:.2f} / {p99:.2f}".format(**r["fill"]["pods"]["startup_seconds"])),
        ("mutating API p99 in fill / churn, ms (target ≤ 1,000)",
         lambda r: f'{r["fill"]["api"]["mutating_p99_ms"]:,.0f} / {r["churn"]["api"]["mutating_p99_ms"]:,.0f}'),
        ("API p99 by verb in fill, ms",
         lambda r: ", ".join(f'{v} {d["p99_ms"]:,.0f}' for v, d in sorted(r["fill"]["api"]["verbs"].items()))),
        ("server RSS peak, MiB (target ≤ 2,048)", lambda r: f'{r["server_rss_mib_peak"]:,.0f}'),
        ("server CPU: fill / full and idle, cores",
         lambda r: f'{r["fill"]["server"]["cpu_cores"]:.2f} / {r["steady"]["server"]["cpu_cores"]:.2f}'),
        ("hollow nodes' process: RSS MiB, CPU cores in fill",
         lambda r: f'{r["fill"]["sim"]["rss_mib_peak"]:,.0f}, {r["fill"]["sim"]["cpu_cores"]:.2f}'),
        ("store on disk, MiB", lambda r: f'{r["store_mib"]:,.0f}'),
        ("time to fill, s", lambda r: f'{r["fill"]["seconds"]:,.1f}'),
        ("churn: pods deleted and replaced, s",
         lambda r: f'{r["churn"]["deleted"]:,} in {r["churn"]["seconds"]:,.1f}'),
        ("churn startup p99, s", lambda r: f'{r["churn"]["startup_seconds"].get("p99", 0):.2f}'),
        ("pods listed = expected, watch = store",
         lambda r: "yes" if r["check"]["ok"] else f'NO: {r["check"]}'),
    ]
    head = "| figure | " + " | ".join(f'{r["nodes"]:,} nodes / {r["pods"]:,} pods' for r in runs) + " |"
    lines = [head, "|---" * (len(runs) + 1) + "|"]
    for name, cell in rows:
        lines.append(f"| {name} | " + " | ".join(cell(r) for r in runs) + " |")
    return "\n".join(lines)


def plot(runs):
    nodes = [r["nodes"] for r in runs]
    fig, (lat, mem) = plt.subplots(1, 2, figsize=(11, 4.2))
    for key, style in (("p50", "o-"), ("p99", "s-")):
        lat.plot(nodes, [r["fill"]["pods"]["startup_seconds"][key] for r in runs], style,
                 label=f"pod startup {key}")
    lat.plot(nodes, [r["fill"]["api"]["mutating_p99_ms"] / 1000 for r in runs], "^-",
             label="mutating API p99")
    lat.axhline(5, color="grey", linestyle="--", linewidth=1, label="startup SLO (5 s)")
    lat.set_xscale("log")
    lat.set_ylim(bottom=0)
    lat.set_xlabel("hollow nodes (30 pods each)")
    lat.set_ylabel("seconds")
    lat.set_title("Latency while filling the cluster")
    lat.legend(fontsize=8)
    mem.plot(nodes, [r["server_rss_mib_peak"] for r in runs], "o-", label="server RSS peak")
    mem.axhline(2048, color="grey", linestyle="--", linewidth=1, label="target (2 GiB)")
    mem.set_xscale("log")
    mem.set_ylim(bottom=0)
    mem.set_xlabel("hollow nodes (30 pods each)")
    mem.set_ylabel("MiB")
    mem.set_title("API server memory")
    mem.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(BENCH, "scale.png"), dpi=110)


def main():
    runs = load()
    if not runs:
        raise SystemExit("no bench/results/scale-*.json: run bench/run-scale.sh")
    readme = os.path.join(BENCH, "README.md")
    with open(readme) as f:
        text = f.read()
    if START not in text or END not in text:
        raise SystemExit(f"bench/README.md has no {START} … {END} markers")
    block = f"{START}\n{table(runs)}\n{END}"
    text = re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: block, text, flags=re.S)
    with open(readme, "w") as f:
        f.write(text)
    plot(runs)
    print(f"rewrote the scale table in {readme} and {os.path.join(BENCH, 'scale.png')}")


if __name__ == "__main__":
    main()
