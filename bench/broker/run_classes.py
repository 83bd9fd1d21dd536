#!/usr/bin/env python3
"""Priority classes, the workload's lower limit and seed 000's allocation on one htb link
(issue 11, item 7). Needs root, /dev/fuse, iproute2, iperf3.

Testbed (testbed.py): three hosts in network namespaces on one bridge; h1's uplink (eth0
egress in h1) is shaped with `tc htb` (root qdisc, one class at LINK_MBIT, pfifo below).
Every migration goes h1 -> h3 and the tenant (iperf3, TCP, asks TENANT_KBPS) goes h1 -> h2,
so all of them share that one link. h1's broker watches eth0 (sys_root = a sysfs mounted
from inside h1) with capacity_kbps = the link's TCP goodput (CAPACITY_KBPS: 1448 payload
bytes per 1514-byte frame; the reservation counts payload, the tenant's throughput too).

Three runs, each on a fresh testbed:

  classes  three VMs of different sizes, one per class (high the largest, low the
           smallest, so without classes the order would be reversed), submitted
           together (--strategy gang) to brokers whose h1 link reserves
           workload_min_kbps / workload_max_kbps for the workload; default broker
           settings otherwise (rate_allocation = true). Checks: finish order
           high < medium < low; the tenant's throughput in every 1 s window
           (iperf3 -i 1 --json, receiver side) that lies while a medium or low migration
           runs is >= 90 % of workload_min_kbps; every copy identical (cmp).
  alloc    three medium VMs of different sizes, brokers without reservation
           (rate_allocation = true, allocation_rounds = 3): on the saturated link the
           broker splits what the migrations get by seed 000 (Alg. 2 recovers after).
  equal    the same VMs without brokers: each started with a fixed network limit of
           (CAPACITY_KBPS - TENANT_KBPS) / M, the seed's equal shares (rates fixed for a
           migration's life). migratefs-broker has no "equal shares" switch:
           rate_allocation = false means Alg. 2 alone (its halving), measured as
  alg2     (bench mode only) the alloc run with rate_allocation = false.

Makespan = first start to last finish. The bench mode appends a table (ratios against
the equal-shares run of the same invocation, uptime before and after) to RESULTS.md.

  sudo bench/broker/run_classes.py --build /work/snap/bin [--out bench/broker/RESULTS.md]
  sudo bench/broker/run_classes.py --build /work/snap/bin --check      # ~2 min, exit 1 on failure
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time

import testbed
from testbed import ask, sh

LINK_MBIT = 80                                   # htb rate of h1's uplink: 10000 KB/s on the wire
CAPACITY_KBPS = int(LINK_MBIT * 125 * 1448 / 1514)   # 9563 KB/s of TCP payload
TENANT_KBPS = 3000                               # the workload asks this much (iperf3 -b)
WORKLOAD_MIN_KBPS = 2500                         # its lower limit
WORKLOAD_MAX_KBPS = 4000                         # its upper limit
TOLERANCE = 0.10                                 # a window may be this far below the lower limit
DEADLINE_S = 100000                              # far away: no task is ever in danger (served as high)
BROKER = {"period": "1", "danger": "200", "warning": "250", "C": "2000", "n": "3",
          "min_network_kbps": "30", "allocation_rounds": "3"}
SUBNET = "10.79.%d" % (100 + os.getpid() % 100)
# (vm, class, MiB); bench and --check sizes. Each migration gets ~20 MiB onto the wire before any
# limit can act (migratefs queues its in-flight window before the broker's first period), so the
# images are several times that.
CLASS_VMS = {"bench": [("vmh", "high", 128), ("vmm", "medium", 96), ("vml", "low", 64)],
             "check": [("vmh", "high", 96), ("vmm", "medium", 64), ("vml", "low", 48)]}
ALLOC_VMS = {"bench": [("va", "medium", 32), ("vb", "medium", 64), ("vc", "medium", 128)],
             "check": [("va", "medium", 16), ("vb", "medium", 32), ("vc", "medium", 64)]}
SECTION = "Priority classes and seed-000 allocation on an htb link (issue 11)"
RUN_TIMEOUT_S = 240                              # sanity bound on one run's migrations


def uptime():
    return sh("uptime").strip()


class Run:
    """One scenario on a fresh testbed: images on h1, tenant h1 -> h2, migrations h1 -> h3."""

    def __init__(self, build, vms):
        self.vms = vms
        self.tb = testbed.Testbed(build, "cls%d" % os.getpid(), SUBNET, "broker-classes-",
                                  [("up", "h1", "htb", LINK_MBIT)])
        self.trace = []
        for vm, _, mib in vms:
            sh("head -c %dM /dev/urandom > %s/src/%s.img" % (mib, self.tb.hosts["h1"]["dir"], vm))
        self.tb.start_migratefs()

    def start_brokers(self, reservation, allocation):
        link = {"iface": "eth0", "capacity_kbps": CAPACITY_KBPS, "section": "h1-sw"}
        if reservation:
            link.update(workload_min_kbps=WORKLOAD_MIN_KBPS, workload_max_kbps=WORKLOAD_MAX_KBPS)
        settings = dict(BROKER, rate_allocation="true" if allocation else "false",
                        sys_root=testbed.toml_value(self.tb.sysfs("h1")))
        self.tb.start_brokers(settings, {"h1": [link]})

    def start_tenant(self):
        tb = self.tb
        self.iperf_json = tb.dir + "/iperf-s.json"
        self.server = tb.iperf_server("h2", 5201, self.iperf_json, once=True, as_json=True)
        time.sleep(0.5)
        self.tenant_t0 = time.time()
        self.client = tb.iperf_client("h1", "h2", 5201, "%dK" % (TENANT_KBPS * 8), 900, tb.dir + "/iperf-c.json",
                                      interval=1)
        time.sleep(3)  # the tenant is steady and the brokers measured it before anything starts

    def stop_tenant(self):
        """Receiver-side 1 s windows: [(start, end, KB/s)] in epoch seconds."""
        self.tb.stop(self.client, sig=2)  # SIGINT: iperf3 ends the test and both sides report
        try:
            self.server.wait(10)
        except subprocess.TimeoutExpired:
            self.tb.stop(self.server)
        d = json.load(open(self.iperf_json))
        return [(self.tenant_t0 + i["sum"]["start"], self.tenant_t0 + i["sum"]["end"],
                 i["sum"]["bytes"] / (i["sum"]["end"] - i["sum"]["start"]) / 1000)
                for i in d["intervals"] if i["sum"]["end"] - i["sum"]["start"] > 0.5]

    def watch_broker(self):
        """Samples h1's broker every second (limits, ceilings, rates per task) for the log."""
        stop = threading.Event()

        def sample():
            while not stop.wait(1.0):
                try:
                    st = ask(self.tb.hosts["h1"]["bsock"], {"op": "status"})
                    self.trace.append({"t": time.time(), "links": st.get("links"), "tasks": [
                        {k: t.get(k) for k in ("vm", "priority", "state", "phase", "network_kbps", "network_limit_kbps",
                                               "ceiling_kbps", "allocation_section", "slack", "bytes_left")}
                        for t in st.get("tasks", [])]})
                except Exception as e:
                    self.trace.append({"t": time.time(), "error": str(e)})
        th = threading.Thread(target=sample, daemon=True)
        th.start()
        return lambda: (stop.set(), th.join())

    def submit(self):
        tasks = [{"vm": vm, "disks": [vm + ".img"], "source": "h1", "target": "h3", "deadline": DEADLINE_S,
                  "priority": cls, "size_mb": round(mib * 1.048576, 1)} for vm, cls, mib in self.vms]
        report = self.tb.submit(tasks, RUN_TIMEOUT_S, extra=["--strategy", "gang"])
        out = {}
        for t in report["tasks"]:
            out[t["vm"]] = t
        return report, out

    def identical(self):
        res = {}
        for vm, _, _ in self.vms:
            a = "%s/src/%s.img" % (self.tb.hosts["h1"]["dir"], vm)
            b = "%s/src/%s.img" % (self.tb.hosts["h3"]["dir"], vm)
            res[vm] = subprocess.run(["cmp", "-s", a, b]).returncode == 0
        return res

    def close(self):
        keep = os.environ.get("CLS_KEEP")
        if keep:  # the daemons' logs, for diagnosis (not the images, sockets or the sysfs)
            dest = os.path.join(keep, "%s-%d" % (self.vms[0][0], int(time.time())))
            for root, dirs, files in os.walk(self.tb.dir):
                dirs[:] = [d for d in dirs if d not in ("src", "mnt", "sys")]
                for f in files:
                    if f.endswith((".log", ".json", ".toml")):
                        rel = os.path.relpath(os.path.join(root, f), self.tb.dir)
                        os.makedirs(os.path.dirname(os.path.join(dest, rel)), exist_ok=True)
                        shutil.copy(os.path.join(root, f), os.path.join(dest, rel))
        self.tb.cleanup()


def broker_times(report, vms):
    """{vm: (start, finish)} in epoch seconds from the scheduler's report (finished tasks)."""
    out = {}
    for t in report["tasks"]:
        if t.get("state") == "finished" and t["vm"] in vms:
            fin = t["finished"]
            start = fin - t["duration_s"] if t.get("duration_s") is not None else report["submitted_at"]
            out[t["vm"]] = (start, fin)
    return out


def run_classes(build, size):
    vms = CLASS_VMS[size]
    r = Run(build, vms)
    try:
        r.start_brokers(reservation=True, allocation=True)
        r.start_tenant()
        stop_watch = r.watch_broker()
        report, tasks = r.submit()
        stop_watch()
        windows = r.stop_tenant()
        times = broker_times(report, [v for v, _, _ in vms])
        ident = r.identical()
        cls_of = {vm: cls for vm, cls, _ in vms}
        order = sorted(times, key=lambda vm: times[vm][1])
        ml = [times[vm] for vm in times if cls_of[vm] in ("medium", "low")]
        lo, hi = (min(s for s, _ in ml), max(f for _, f in ml)) if ml else (0, 0)
        inside = [w for w in windows if w[0] >= lo - 0.05 and w[1] <= hi + 0.05]
        bound = (1 - TOLERANCE) * WORKLOAD_MIN_KBPS
        low = [w for w in inside if w[2] < bound]
        t0 = min(s for s, _ in times.values()) if times else 0
        res = {
            "run": "classes", "uptime": uptime(),
            "states": {vm: tasks.get(vm, {}).get("state") for vm, _, _ in vms},
            "finish_s": {vm: round(times[vm][1] - t0, 1) for vm in times},
            "order": [cls_of[vm] for vm in order],
            "order_ok": [cls_of[vm] for vm in order] == ["high", "medium", "low"],
            "windows": len(inside), "tenant_min_kbps": round(min((w[2] for w in inside), default=0)),
            "tenant_mean_kbps": round(sum(w[2] for w in inside) / len(inside)) if inside else 0,
            "below_bound": [(round(w[0] - t0, 1), round(w[2])) for w in low],
            "limit_ok": bool(inside) and not low,
            "identical": ident, "identical_ok": all(ident.values()) and len(ident) == len(vms),
            "makespan_s": round(max(f for _, f in times.values()) - t0, 1) if times else None,
        }
        res["tenant_windows"] = [(round(w[0] - t0, 1), round(w[2])) for w in windows]
        res["trace"] = summarize_trace(r.trace, t0)
        return res
    finally:
        r.close()


def summarize_trace(trace, t0):
    """Per second: vm -> (KB/s sent, network limit, ceiling) of h1's broker."""
    rows = []
    for s in trace:
        if "tasks" not in s:
            continue
        row = {"t": round(s["t"] - t0, 1)}
        for t in s["tasks"]:
            if t.get("state") in ("running", "completing"):
                row[t["vm"]] = (round(t.get("network_kbps") or 0), t.get("network_limit_kbps"), t.get("ceiling_kbps"),
                                t.get("allocation_section") or "", t.get("phase"),
                                None if t.get("slack") is None else round(t["slack"], 2),
                                round((t.get("bytes_left") or 0) / 1048576, 1))
        for l in s.get("links") or []:
            row["link_tx"] = l.get("tx_kbps")
        rows.append(row)
    return rows


def run_batch(build, size, mode):
    """alloc / alg2: brokers without reservation; equal: fixed equal shares, no brokers."""
    vms = ALLOC_VMS[size]
    r = Run(build, vms)
    try:
        if mode != "equal":
            r.start_brokers(reservation=False, allocation=(mode == "alloc"))
        r.start_tenant()
        if mode == "equal":
            share = (CAPACITY_KBPS - TENANT_KBPS) // len(vms)
            t0 = time.time()
            results, _ = r.tb.migrate_direct([(vm, "h1", [vm + ".img"], {"network_kbps": share})
                                              for vm, _, _ in vms], "h3", RUN_TIMEOUT_S)
            times = {vm: (t0, t0 + s) for vm, s in results.items()}
            states = {vm: "finished" if vm in results else "unfinished" for vm, _, _ in vms}
        else:
            stop_watch = r.watch_broker()
            report, tasks = r.submit()
            stop_watch()
            times = broker_times(report, [v for v, _, _ in vms])
            states = {vm: tasks.get(vm, {}).get("state") for vm, _, _ in vms}
        windows = r.stop_tenant()
        ident = r.identical()
        t0 = min(s for s, _ in times.values()) if times else 0
        end = max(f for _, f in times.values()) if times else 0
        inside = [w for w in windows if w[0] >= t0 - 0.05 and w[1] <= end + 0.05]
        total_mb = sum(m for _, _, m in vms) * 1.048576
        res = {
            "run": mode, "uptime": uptime(), "states": states,
            "finish_s": {vm: round(times[vm][1] - t0, 1) for vm in times},
            "makespan_s": round(end - t0, 1) if times else None,
            "migration_kbps": round(total_mb * 1000 / (end - t0)) if times else None,
            "tenant_mean_kbps": round(sum(w[2] for w in inside) / len(inside)) if inside else 0,
            "tenant_min_kbps": round(min((w[2] for w in inside), default=0)),
            "identical": ident, "identical_ok": all(ident.values()) and len(ident) == len(vms),
            "all_finished": len(times) == len(vms),
        }
        if mode != "equal":
            res["trace"] = summarize_trace(r.trace, t0)
        return res
    finally:
        r.close()


def table(rows, before, after, size):
    cls = next(r for r in rows if r["run"] == "classes")
    eq = next((r for r in rows if r["run"] == "equal"), None)
    vms = {v: (c, m) for v, c, m in CLASS_VMS[size]}
    out = ["Run %s (`%s`): uptime before `%s`, after `%s`." % (
        time.strftime("%Y-%m-%d %H:%M"), size, before, after), "",
        "Classes: link %d Mbit/s htb (goodput %d KB/s), tenant asks %d KB/s, workload_min %d / max %d KB/s."
        % (LINK_MBIT, CAPACITY_KBPS, TENANT_KBPS, WORKLOAD_MIN_KBPS, WORKLOAD_MAX_KBPS), "",
        "| VM | class | MiB | finished at s | identical |", "|---|---|---|---|---|"]
    for vm in sorted(cls["finish_s"], key=cls["finish_s"].get):
        out.append("| %s | %s | %d | %.1f | %s |" % (vm, vms[vm][0], vms[vm][1], cls["finish_s"][vm],
                                                   "yes" if cls["identical"].get(vm) else "NO"))
    out += ["", "Completion order %s (%s); tenant while medium/low ran: %d windows of 1 s, min %d KB/s, mean %d KB/s,"
            " bound %d KB/s (90 %% of the lower limit): %s." % (
                " < ".join(cls["order"]), "as required" if cls["order_ok"] else "WRONG", cls["windows"],
                cls["tenant_min_kbps"], cls["tenant_mean_kbps"], (1 - TOLERANCE) * WORKLOAD_MIN_KBPS,
                "held" if cls["limit_ok"] else "VIOLATED in %s" % cls["below_bound"]), ""]
    sizes = ", ".join("%d" % m for _, _, m in ALLOC_VMS[size])
    out += ["Batch of three medium VMs (%s MiB), same link and tenant, no reservation:" % sizes, "",
            "| run | finish times s | makespan s | / equal shares | migrations KB/s | tenant mean / min KB/s | identical |",
            "|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["run"] == "classes":
            continue
        ratio = r["makespan_s"] / eq["makespan_s"] if eq and eq.get("makespan_s") and r.get("makespan_s") else float("nan")
        out.append("| %s | %s | %s | %.2f | %s | %d / %d | %s |" % (
            r["run"], ", ".join("%s %.1f" % kv for kv in sorted(r["finish_s"].items())), r["makespan_s"], ratio,
            r["migration_kbps"], r["tenant_mean_kbps"], r["tenant_min_kbps"],
            "yes" if r["identical_ok"] else "NO"))
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build", help="directory with migratefs, migratefs-broker, migratefs-scheduler")
    ap.add_argument("--check", action="store_true", help="small sizes; exit 1 unless order, lower limit, identity hold")
    ap.add_argument("--out", default="", help="append the table to this file (bench mode)")
    ap.add_argument("--runs", default="", help="comma list of classes,alloc,equal,alg2 (default: all of the mode)")
    ap.add_argument("--log", default="", help="write every run's result (with traces) as JSON lines here")
    args = ap.parse_args()
    size = "check" if args.check else "bench"
    runs = args.runs.split(",") if args.runs else (["classes", "alloc", "equal"] if args.check
                                                    else ["classes", "alloc", "equal", "alg2"])
    before = uptime()
    t_start = time.time()
    rows = []
    for name in runs:
        r = run_classes(args.build, size) if name == "classes" else run_batch(args.build, size, name)
        brief = {k: v for k, v in r.items() if k not in ("trace", "tenant_windows")}
        print(json.dumps(brief), flush=True)
        if args.log:
            with open(args.log, "a") as f:
                f.write(json.dumps(r) + "\n")
        rows.append(r)
    after = uptime()
    print("uptime before: %s\nuptime after:  %s\nwhole run %.0f s" % (before, after, time.time() - t_start))
    failures = []
    for r in rows:
        if r["run"] == "classes":
            if not r["order_ok"]:
                failures.append("classes: completion order %s, want high, medium, low (states %s)" % (
                    r["order"], r["states"]))
            if not r["limit_ok"]:
                failures.append("classes: tenant below %.0f KB/s in %s (of %d windows)" % (
                    (1 - TOLERANCE) * WORKLOAD_MIN_KBPS, r["below_bound"], r["windows"]))
        elif not r["all_finished"]:
            failures.append("%s: not every migration finished within %d s: %s" % (r["run"], RUN_TIMEOUT_S, r["states"]))
        if not r["identical_ok"]:
            failures.append("%s: copies differ: %s" % (r["run"], r["identical"]))
        if r.get("makespan_s") is None or r["makespan_s"] > RUN_TIMEOUT_S:
            failures.append("%s: makespan %s s beyond the sanity bound %d s" % (r["run"], r.get("makespan_s"),
                                                                                 RUN_TIMEOUT_S))
    if "classes" in runs and (not args.runs or {"equal"} <= set(runs)):
        text = table(rows, before, after, size)
        print(text)
        if args.out and not args.check:
            head = "## " + SECTION
            have = os.path.exists(args.out) and head in open(args.out).read()
            with open(args.out, "a") as f:
                if not have:
                    f.write("\n%s\n\n`sudo bench/broker/run_classes.py --build BUILD --out bench/broker/RESULTS.md`"
                            " (setup: the script's docstring; `--check` is the ctest).\n" % head)
                f.write("\n" + text + "\n")
    for f in failures:
        print("FAIL: " + f, file=sys.stderr)
    if args.check:
        print("check: %s" % ("FAILED" if failures else "passed"))
        sys.exit(1 if failures else 0)


if __name__ == "__main__":
    if os.geteuid() != 0:
        sys.exit("needs root (namespaces, FUSE)")
    main()
