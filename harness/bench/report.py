#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Tabulate the benchmark boots of harness/privmem bench.

Reads the serial logs in BENCH/runs/<lane>-<kernel>-<run>.log, prints the
table of each lane and writes BENCH/results.md, BENCH/results.csv and
BENCH/ratios.png (gnuplot).  Exits non-zero if a lane lacks privmem's
table, or the AMD lane lacks the anchor's.
"""

import argparse
import csv
import glob
import os
import re
import statistics
import subprocess
import sys

KERNELS = ("guest_memfd", "guest_memfd_lazy", "privmem", "privmem_huge")
PHASES = {
    "A": "first touch, shared",
    "B": "N pages to private, one hypercall",
    "C": "first touch, private",
    "D": "4 KiB round trip private, shared, private",
    "E": "N pages to shared, one hypercall",
    "F": "scattered single-page conversions to private",
    "G": "implicit conversions to private",
    "H": "host pages held for guest data, all private",
}
LANES = {
    "qemu": ("AMD lane (QEMU TCG -icount shift=0,sleep=off: SVM, NPT)",
             "virtual ns: 1 ns is 1 instruction"),
    "bochs": ("Intel lane (Bochs, clock sync=none: VMX, EPT)",
              "virtual ns: {ns} ns is 1 instruction (ips={ips})"),
}
COUNTERS = ("exits", "hypercalls", "pf_taken", "pf_fixed", "pages_4k",
            "pages_2m", "private_mem_faults", "private_mem_faults_2m",
            "private_mem_shared_faults", "private_mem_zapped_pages",
            "tlb_flush")
BATCH_WAYS = {
    "a": "one KVM_HC_MAP_GPA_RANGE per range (upstream)",
    "b": "KVM_HC_MAP_GPA_BATCH, applied entry by entry",
    "c": "KVM_HC_MAP_GPA_BATCH, one io_uring submission",
}
BATCH_SIZES = {"4k": "scattered 4 KiB pages", "2m": "scattered 2 MiB ranges"}
BATCH_KERNELS = ("guest_memfd", "privmem")
LINE = re.compile(r"bench: (guest_memfd_lazy|guest_memfd|privmem_huge|privmem) (.*)$")


def parse_run(path):
    """The phases, splits and workload of one boot's serial log."""
    run = {"phases": {}, "split": {}, "workload": None, "done": False, "clock": "?",
           "batch": {}, "batch_workload": None, "batch_done": False}
    with open(path, errors="replace") as f:
        for raw in f:
            m = re.match(r"privmem: bench clocksource (\S+)", raw)
            if m:
                run["clock"] = m.group(1)
            m = LINE.search(raw.rstrip("\n"))
            if not m:
                continue
            words = m.group(2).split()
            if words[0] == "batch" and len(words) >= 2:
                parse_batch(run, words[1:])
            elif words[0] == "workload":
                run["workload"] = " ".join(words[1:])
            elif words[0] == "done":
                run["done"] = True
            elif words[0].endswith("-split"):
                run["split"][words[0][0]] = dict(w.split("=") for w in words[1:])
            elif words[0] in PHASES and len(words) >= 3:
                value = None if words[1] == "-" else float(words[1])
                counters = dict(w.split("=") for w in words[3:] if "=" in w)
                run["phases"][words[0]] = (value, words[2], counters)
    return run if run["done"] else None


def parse_batch(run, words):
    """One line of the batch workload: its workload, a figure, or done."""
    if words[0] == "workload":
        run["batch_workload"] = " ".join(words[1:])
    elif words[0] == "done":
        run["batch_done"] = True
    elif re.fullmatch(r"[abc]-(4k|2m)", words[0]) and len(words) >= 3:
        counters = dict(w.split("=") for w in words[3:] if "=" in w)
        run["batch"][words[0]] = (float(words[1]), counters)


def load(bench):
    """{lane: {kernel: [run, ...]}} of the complete runs."""
    lanes = {}
    for path in sorted(glob.glob(os.path.join(bench, "runs", "*.log"))):
        lane, kernel, _ = os.path.basename(path)[:-4].split("-", 2)
        run = parse_run(path)
        if run:
            lanes.setdefault(lane, {}).setdefault(kernel, []).append(run)
    return lanes


def values(runs, phase):
    return [r["phases"][phase][0] for r in runs
            if phase in r["phases"] and r["phases"][phase][0] is not None]


def spread(vals):
    """Run-to-run spread: (max - min) / mean, in percent."""
    if len(vals) < 2 or not statistics.mean(vals):
        return None
    return 100.0 * (max(vals) - min(vals)) / statistics.mean(vals)


def fmt(v, digits=0):
    return "-" if v is None else f"{v:,.{digits}f}"


def fmt_spread(v):
    return "-" if v is None else f"{v:.2f}%"


def unit_of(runs, phase):
    for r in runs:
        if phase in r["phases"]:
            unit = r["phases"][phase][1]
            return "pages" if phase == "H" else f"ns/{unit}"
    return ""


def lane_rows(kernels):
    """One row per phase: what the table, the CSV and the chart show."""
    rows = []
    for phase, what in PHASES.items():
        anchor = values(kernels.get("guest_memfd", []), phase)
        lazy = values(kernels.get("guest_memfd_lazy", []), phase)
        ours = values(kernels.get("privmem", []), phase)
        huge = values(kernels.get("privmem_huge", []), phase)
        a = statistics.mean(anchor) if anchor else None
        lz = statistics.mean(lazy) if lazy else None
        p = statistics.mean(ours) if ours else None
        h = statistics.mean(huge) if huge else None
        rows.append({
            "phase": phase, "what": what,
            "unit": unit_of(kernels.get("privmem", []), phase),
            "anchor": a, "lazy": lz, "privmem": p, "huge": h,
            "ratio": p / a if a and p is not None else None,
            "lazy_ratio": p / lz if lz and p is not None else None,
            "huge_ratio": h / a if a and h is not None else None,
            "anchor_spread": spread(anchor), "lazy_spread": spread(lazy),
            "privmem_spread": spread(ours), "huge_spread": spread(huge),
            "anchor_runs": len(anchor), "lazy_runs": len(lazy),
            "privmem_runs": len(ours), "huge_runs": len(huge),
        })
    return rows


def fmt_ratio(v):
    return f"**{v:.2f}**" if v and v > 1.02 else fmt(v, 2)


def table(rows):
    out = ["| phase | unit | 6.12 guest_memfd | privmem | ratio | privmem, 2 MiB folios | "
           "ratio | guest_memfd, upstream policy | ratio of privmem to it | "
           "spread (anchor / privmem / 2 MiB / upstream policy) |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        out.append(f"| {r['phase']} {r['what']} | {r['unit']} | {fmt(r['anchor'])} | "
                   f"{fmt(r['privmem'])} | {fmt_ratio(r['ratio'])} | {fmt(r['huge'])} | "
                   f"{fmt_ratio(r['huge_ratio'])} | {fmt(r['lazy'])} | "
                   f"{fmt_ratio(r['lazy_ratio'])} | {fmt_spread(r['anchor_spread'])} / "
                   f"{fmt_spread(r['privmem_spread'])} / {fmt_spread(r['huge_spread'])} / "
                   f"{fmt_spread(r['lazy_spread'])} |")
    return out


def counter_table(kernels):
    """The kernels' own counters for each phase, from the first run."""
    out = ["| phase | kernel | " + " | ".join(COUNTERS) + " |",
           "|---|---|" + "---:|" * len(COUNTERS)]
    for phase in PHASES:
        for kernel in KERNELS:
            runs = kernels.get(kernel)
            if not runs or phase not in runs[0]["phases"]:
                continue
            c = runs[0]["phases"][phase][2]
            out.append(f"| {phase} | {kernel} | " +
                       " | ".join(c.get(k, "-") for k in COUNTERS) + " |")
    return out


def split_table(kernels):
    """Where phase B's time goes, as the VMM sees it, and what H holds."""
    out = ["| kernel | memory attributes | fallocate | MADV_DONTNEED | exit round trip and the rest |",
           "|---|---:|---:|---:|---:|"]
    for kernel in KERNELS:
        runs = [r for r in kernels.get(kernel, []) if "B" in r["split"]]
        if not runs:
            continue
        avg = {k: statistics.mean(float(r["split"]["B"][k]) for r in runs)
               for k in ("attributes", "fallocate", "madvise", "rest")}
        out.append(f"| {kernel} | {fmt(avg['attributes'])} | {fmt(avg['fallocate'])} | "
                   f"{fmt(avg['madvise'])} | {fmt(avg['rest'])} |")
    out += ["", "| kernel | shared pages held (pagemap) | private pages (Unevictable) |",
            "|---|---:|---:|"]
    for kernel in KERNELS:
        runs = [r for r in kernels.get(kernel, []) if "H" in r["split"]]
        if runs:
            h = runs[0]["split"]["H"]
            out.append(f"| {kernel} | {h['shared']} | {h['private']} |")
    return out


def batch_rows(kernels):
    """One row per way, size and kernel that ran it: means over the runs."""
    rows = []
    for size in BATCH_SIZES:
        for way in BATCH_WAYS:
            for kernel in BATCH_KERNELS:
                key = f"{way}-{size}"
                runs = [r for r in kernels.get(kernel, [])
                        if r["batch_done"] and key in r["batch"]]
                if not runs:
                    continue

                def per_page(counter):
                    vals = [r["batch"][key][1].get(counter, "-") for r in runs]
                    if "-" in vals:
                        return None
                    return statistics.mean(int(v) / int(r["batch"][key][1]["pages"])
                                           for v, r in zip(vals, runs))
                ns = [r["batch"][key][0] for r in runs]
                shootdowns = runs[0]["batch"][key][1].get("tlb_shootdowns", "-")
                rows.append({
                    "size": size, "way": way, "kernel": kernel,
                    "pages": int(runs[0]["batch"][key][1]["pages"]),
                    "ns": statistics.mean(ns), "spread": spread(ns), "runs": len(ns),
                    "vmm": statistics.mean(float(r["batch"][key][1]["vmm_ns"]) for r in runs),
                    "exits": per_page("vmm_exits"), "syscalls": per_page("syscalls"),
                    "flushes": per_page("tlb_flush"),
                    "shootdowns": None if shootdowns == "-" else int(shootdowns),
                })
    return rows


def batch_figure(rows, size, way, kernel="privmem", what="ns"):
    return next((r[what] for r in rows if r["size"] == size and r["way"] == way
                 and r["kernel"] == kernel), None)


def batch_units(r):
    """What a row converted: its pages, or its 2 MiB ranges."""
    n = r["pages"] if r["size"] == "4k" else r["pages"] // 512
    return f"{n} {BATCH_SIZES[r['size']]}"


def batch_table(rows):
    out = ["| converted | way | kernel | ns/page | ratio to privmem (a) | VMM ns/page | "
           "VMM exits/page | syscalls/page | KVM TLB flushes/page | TLB shootdown IPIs | "
           "spread |",
           "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        base = batch_figure(rows, r["size"], "a")
        ratio = r["ns"] / base if base else None
        out.append(f"| {batch_units(r)} | ({r['way']}) {BATCH_WAYS[r['way']]} | "
                   f"{r['kernel']} | {fmt(r['ns'])} | {fmt(ratio, 2)} | {fmt(r['vmm'])} | "
                   f"{fmt(r['exits'], 4)} | {fmt(r['syscalls'], 4)} | {fmt(r['flushes'], 4)} | "
                   f"{fmt(r['shootdowns'])} | {fmt_spread(r['spread'])} |")
    return out


def batch_targets(rows):
    """The issue's targets: (b) <= (a) / 5 and (c) <= (b), per size."""
    out = []
    for size, what in BATCH_SIZES.items():
        a, b, c = (batch_figure(rows, size, w) for w in "abc")
        if None in (a, b, c):
            continue
        vmm_b = batch_figure(rows, size, "b", what="vmm")
        out.append(f"- {what}: (b)/(a) = {b / a:.3f}, target at most 0.2: "
                   f"{'met' if b <= a / 5 else 'NOT met'}; (c)/(b) = {c / b:.3f}, "
                   f"target at most 1: {'met' if c <= b else 'NOT met'}. A batch removes "
                   f"exits, not the VMM's work on each entry: (b)'s VMM time alone is "
                   f"{vmm_b / a:.3f} of (a).")
    return out


BREAKDOWN_STEPS = (
    ("memlock", "RLIMIT_MEMLOCK charging (once per fallocate())"),
    ("clear", "zeroing (the store clears each page before it enters the page cache)"),
    ("invalidate", "invalidation and zap (memfile_notifier begin/end into KVM)"),
)


def breakdown(path):
    """Phase B of privmem step by step, from the throwaway build's boot."""
    by_skip, skip = {}, None
    with open(path, errors="replace") as f:
        for raw in f:
            m = re.search(r"bench: breakdown skip=(\w+)", raw)
            if m:
                skip = m.group(1)
                continue
            m = LINE.search(raw.rstrip("\n"))
            if not m or skip is None:
                continue
            words = m.group(2).split()
            if words[0] == "B" and len(words) > 1:
                by_skip.setdefault(skip, {}).setdefault("B", []).append(float(words[1]))
            elif words[0] == "B-split":
                for w in words[1:]:
                    k, v = w.split("=")
                    by_skip.setdefault(skip, {}).setdefault(k, []).append(float(v))
    if "none" not in by_skip:
        return ["The breakdown boot produced no phase B."]
    mean = {s: {k: statistics.mean(v) for k, v in d.items()} for s, d in by_skip.items()}
    full = mean["none"]
    rows, steps = [], 0.0
    for name, what in BREAKDOWN_STEPS:
        if name not in mean:
            continue
        cost = full["fallocate"] - mean[name]["fallocate"]
        steps += cost
        rows.append((what, cost, full["B"] - mean[name]["B"]))
    rows.insert(0, ("allocation: the rest of fallocate() (folio allocation, "
                    "page cache, accounting)", full["fallocate"] - steps, None))
    rows.append(("MADV_DONTNEED of the shared side (VMM)", full["madvise"], None))
    rows.append(("exit round trip and the rest (exit, VMM loop, guest)", full["rest"], None))
    out = ["| step of privmem's phase B | ns/page | share of B | B saves without it |",
           "|---|---:|---:|---:|"]
    out += [f"| {what} | {fmt(cost)} | {100 * cost / full['B']:.0f}% | {fmt(saved)} |"
            for what, cost, saved in rows]
    out.append(f"| **phase B in all** | {fmt(full['B'])} | 100% | |")
    return out


CHART_LABELS = {
    "A": "touch shared", "B": "N to private", "C": "touch private",
    "D": "round trip", "E": "N to shared", "F": "scattered", "G": "implicit",
    "H": "memory held",
}


def chart(bench, lanes_rows):
    """ratios.png: privmem/anchor per phase, one bar per lane."""
    data = os.path.join(bench, "ratios.dat")
    lanes = [lane for lane in LANES if lane in lanes_rows and
             any(r["ratio"] is not None for r in lanes_rows[lane])]
    if not lanes:
        return False
    with open(data, "w") as f:
        for phase in PHASES:
            ratios = []
            for lane in lanes:
                r = next(x for x in lanes_rows[lane] if x["phase"] == phase)
                ratios.append("NaN" if r["ratio"] is None else f"{r['ratio']:.4f}")
            if any(x != "NaN" for x in ratios):
                f.write(f'"{phase}: {CHART_LABELS[phase]}" ' + " ".join(ratios) + "\n")
    plot = "".join(
        f"{', ' if i else ''}'{data}' using {i + 2}:xtic(1) title '{LANES[lane][0].split(' (')[0]}'"
        for i, lane in enumerate(lanes))
    script = f"""set terminal pngcairo size 960,480 font ',11' noenhanced
set output '{os.path.join(bench, 'ratios.png')}'
set title 'privmem / 6.12 guest_memfd, same VMM policy (A-F: instructions, H: pages held; below 1: privmem needs fewer)'
set xtics rotate by -25 scale 0
set bmargin 6
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set yrange [0:*]
set ylabel 'ratio'
set key top left
set grid ytics
set arrow from graph 0, first 1 to graph 1, first 1 nohead dt 2 lw 2
plot {plot}
"""
    try:
        subprocess.run(["gnuplot"], input=script, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as e:
        print(f"privmem: bench: no chart: gnuplot failed: {e}", file=sys.stderr)
        return False
    finally:
        os.unlink(data)
    return True


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("bench", help="the benchmark directory, build/bench")
    ap.add_argument("--title", required=True)
    ap.add_argument("--about", required=True,
                    help="a file of markdown to put before the tables")
    ap.add_argument("--config-diff", required=True)
    ap.add_argument("--bochs-ips", type=int, required=True)
    args = ap.parse_args()

    lanes = load(args.bench)
    clocks_of = {lane: clock.format(ns=f"{1e9 / args.bochs_ips:g}", ips=args.bochs_ips)
                 for lane, (_, clock) in LANES.items()}
    failed = []
    md = [f"# {args.title}", ""]
    with open(args.about) as f:
        md += f.read().rstrip("\n").split("\n") + [""]
    lanes_rows, batches = {}, {}
    with open(os.path.join(args.bench, "results.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["lane", "phase", "description", "unit", "guest_memfd", "privmem",
                    "ratio", "guest_memfd_lazy", "ratio_lazy", "guest_memfd_spread_pct",
                    "privmem_spread_pct", "guest_memfd_lazy_spread_pct",
                    "guest_memfd_runs", "privmem_runs", "guest_memfd_lazy_runs",
                    "privmem_huge", "ratio_huge", "privmem_huge_spread_pct",
                    "privmem_huge_runs"])
        for lane, (label, _) in LANES.items():
            if lane not in lanes:
                continue
            clock = clocks_of[lane]
            kernels = lanes[lane]
            rows = lane_rows(kernels)
            lanes_rows[lane] = rows
            def num(v, digits):
                return "" if v is None else f"{v:.{digits}f}"
            for r in rows:
                w.writerow([lane, r["phase"], r["what"], r["unit"],
                            num(r["anchor"], 1), num(r["privmem"], 1), num(r["ratio"], 4),
                            num(r["lazy"], 1), num(r["lazy_ratio"], 4),
                            num(r["anchor_spread"], 2), num(r["privmem_spread"], 2),
                            num(r["lazy_spread"], 2), r["anchor_runs"], r["privmem_runs"],
                            r["lazy_runs"], num(r["huge"], 1), num(r["huge_ratio"], 4),
                            num(r["huge_spread"], 2), r["huge_runs"]])
            workload = next((r["workload"] for k in KERNELS for r in kernels.get(k, [])), "?")
            runs = ", ".join(f"{k} {len(kernels.get(k, []))}" for k in KERNELS)
            clockset = {r["clock"] for k in KERNELS for r in kernels.get(k, [])}
            clocks = ", ".join(sorted(clockset))
            if len(clockset) > 1:
                failed.append(f"{lane}: the boots ran on different clocksources ({clocks})")
            md += [f"## {label}", "", f"Time in {clock}, CLOCK_MONOTONIC on clocksource "
                   f"{clocks}. Workload: {workload}. Complete boots: {runs}.", ""]
            if not kernels.get("guest_memfd"):
                md += ["The anchor did not complete a run in this lane; "
                       f"see {args.bench}/runs/{lane}-guest_memfd-*.log.", ""]
            md += table(rows) + ["", "The kernels' counters (KVM_GET_STATS_FD, deltas over "
                                 "the phase; pages_4k and pages_2m are levels at its end; - where a "
                                 "kernel has no such counter):", ""]
            md += counter_table(kernels) + ["", "Phase B as the VMM sees it (ns/page), and "
                                            "phase H:", ""]
            md += split_table(kernels) + [""]
            brows = batch_rows(kernels)
            bworkload = next((r["batch_workload"] for k in BATCH_KERNELS
                              for r in kernels.get(k, []) if r["batch_workload"]), "?")
            md += ["### Batched conversions", "",
                   f"Workload: {bworkload}. Per page converted; ratio to privmem's "
                   "own (a) in the same lane. The anchor runs (a) only.", ""]
            md += batch_table(brows) + [""] + batch_targets(brows) + [""]
            batches[lane] = brows
            for kernel in ("privmem", "privmem_huge"):
                if not kernels.get(kernel):
                    failed.append(f"{lane}: no complete {kernel} run")
            if not any(r["kernel"] == "privmem" for r in brows):
                failed.append(f"{lane}: no batch figures from privmem")
            if lane == "qemu" and not kernels.get("guest_memfd"):
                failed.append(f"{lane}: no complete anchor run")
    png = os.path.join(args.bench, "ratios.png")
    if os.path.exists(png):
        os.unlink(png)
    if chart(args.bench, lanes_rows):
        md += ["![privmem / anchor per phase](ratios.png)", ""]
    bd = os.path.join(args.bench, "breakdown.log")
    if os.path.exists(bd):
        rows = breakdown(bd)
        md += ["## Where privmem's phase B goes", "",
               "A throwaway build (`harness/bench/breakdown.patch`, never part of the "
               "series) has knobs that skip one step of `fallocate()` on an inaccessible "
               "file. One boot in the AMD lane runs the benchmark twice with each step "
               "skipped in turn; a step's cost is how much `fallocate()` got cheaper "
               "without it. MADV_DONTNEED and the rest come from the VMM's own clock.", ""]
        md += rows + [""]
        print("==> phase B of privmem, step by step (AMD lane)")
        print("\n".join("    " + line for line in rows))
    problems = os.path.join(args.bench, "anchor-problems.txt")
    if os.path.exists(problems):
        with open(problems) as f:
            md += ["## What the anchor's kernel reported", "",
                   "Upstream 6.12's own reports in its benchmark boots; they are not "
                   "this series' and fail nothing. 6.12 warns at boot about the CPU "
                   "topology that Bochs's Haswell model describes.", "", "```"] + \
                f.read().rstrip("\n").split("\n") + ["```", ""]
    with open(args.config_diff) as f:
        md += ["## How the two kernels' configurations differ", "", "```"] + \
            f.read().rstrip("\n").split("\n") + ["```", ""]
    with open(os.path.join(args.bench, "results.md"), "w") as f:
        f.write("\n".join(md))
    for lane, rows in lanes_rows.items():
        print(f"==> {LANES[lane][0]}, {clocks_of[lane]}")
        print("\n".join("    " + line for line in table(rows)))
        if batches.get(lane):
            print(f"==> batched conversions, {LANES[lane][0]}")
            print("\n".join("    " + line for line in
                            batch_table(batches[lane]) + batch_targets(batches[lane])))
    if not lanes:
        failed.append("no benchmark boot completed")
    for msg in failed:
        print(f"privmem: bench: {msg}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
