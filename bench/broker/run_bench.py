#!/usr/bin/env python3
"""Broker policy vs no scheduling on the namespace testbed (needs root, /dev/fuse).

Three hosts in network namespaces on one bridge; h3's downlink (the bridge port towards
h3) is shaped with tc tbf to LINK_MBIT. A tenant (iperf3, h2 -> h3) sends a steady
TENANT_MBIT across that link. Three VMs migrate to h3 at once (vm1 from h1, important;
vm2 from h2; vm3 from h1), each with deadline = factor x the time the three need at the
link's spare capacity.

  none    migratefs only: start all three unlimited, finish each when completed.
  broker  one migratefs-broker per host (period 1 s) and migratefs-scheduler; a
          monitor reads the h3 port counters every second and pushes an SLA-failure
          report for section h3-sw to every broker while the link is above 90 %.

Per run: deadlines met, seconds during which h3's downlink carried more than 90 % of
its capacity (the tenant's SLA is at risk), the tenant's average throughput, makespan.

  sudo bench/broker/run_bench.py --build build-broker [--factors 1.5,2,3] [--out bench/broker/RESULTS.md]
"""
import argparse
import json
import os
import sys
import threading
import time

import testbed
from testbed import ask

LINK_MBIT = 48            # h3 downlink: 6000 KB/s
TENANT_MBIT = 12          # 1500 KB/s steady tenant
CAPACITY_KBPS = LINK_MBIT * 1000 / 8
# Each image is larger than migratefs' 64 MiB in-flight window, so limits take effect.
VMS = [("vm1", "h1", 80, True), ("vm2", "h2", 96, False), ("vm3", "h1", 96, False)]
ALG2 = {"C": 300, "n": 3}  # the brokers' C (KB/s) and n; --C / --n
TENANT_S = 50            # the tenant runs this long from 2 s before the migrations
SUBNET = "10.78.%d" % (200 + os.getpid() % 50)


class Testbed(testbed.Testbed):
    """The shared testbed (testbed.py) with this benchmark's link and broker settings."""

    def __init__(self, build):
        super().__init__(build, "mbb%d" % os.getpid(), SUBNET, "broker-bench-", [("down", "h3", "tbf", LINK_MBIT)])

    def port_tx_bytes(self):
        return self.tx_bytes("down", "h3")

    def start_brokers(self):
        hook = self.dir + "/hooks.log"
        super().start_brokers({"period": "1", "danger": "200", "warning": "250", "disk_target": "150",
                               "C": str(ALG2["C"]), "n": str(ALG2["n"]), "min_network_kbps": "100",
                               "hypervisor_command": "'echo {vm} >> %s'" % hook})


def run(build, mode, factor):
    tb = Testbed(build)
    try:
        for vm, src, mib, _ in VMS:
            testbed.sh("head -c %dM /dev/urandom > %s/src/%s.img" % (mib, tb.hosts[src]["dir"], vm))
        tb.start_migratefs()
        if mode == "broker":
            tb.start_brokers()
        tb.iperf_server("h3", 5201, tb.dir + "/iperf-s.log")
        time.sleep(0.5)
        ideal = sum(m for _, _, m, _ in VMS) * 1048.576 / (CAPACITY_KBPS - TENANT_MBIT * 125)
        deadline = factor * ideal
        tenant = tb.iperf_client("h2", "h3", 5201, "%dM" % TENANT_MBIT, TENANT_S, tb.dir + "/iperf-c.json")
        time.sleep(2)
        samples, stop = [], threading.Event()

        def sample():
            last, t0 = tb.port_tx_bytes(), time.time()
            while not stop.wait(1.0):
                now, t1 = tb.port_tx_bytes(), time.time()
                kbps = (now - last) / (t1 - t0) / 1000
                samples.append(kbps)
                last, t0 = now, t1
                if mode == "broker" and kbps > 0.9 * CAPACITY_KBPS:
                    for h in tb.hosts.values():
                        try:
                            ask(h["bsock"], {"op": "sla_failure", "link": "h3-sw", "for_s": 1.5})
                        except Exception:
                            pass
        sampler = threading.Thread(target=sample)
        sampler.start()
        start = time.time()
        results = {}
        if mode == "none":
            results, _ = tb.migrate_direct([(vm, src, [vm + ".img"], {}) for vm, src, _, _ in VMS], "h3",
                                           deadline + 120)
        else:
            report = tb.submit([{"vm": vm, "disks": [vm + ".img"], "source": src, "target": "h3",
                                 "deadline": round(deadline, 1), "important": important}
                                for vm, src, _, important in VMS], deadline + 120)
            for t in report["tasks"]:
                if t.get("state") == "finished":
                    results[t["vm"]] = t["finished"] - report["submitted_at"]
        makespan = time.time() - start
        stop.set()
        sampler.join()
        tenant.wait(TENANT_S + 30)
        try:
            tenant_kbps = json.load(open(tb.dir + "/iperf-c.json"))["end"]["sum_received"]["bits_per_second"] / 8000
        except Exception:
            tenant_kbps = float("nan")
        return {
            "mode": mode, "factor": factor, "deadline_s": deadline,
            "met": sum(1 for vm, _, _, _ in VMS if vm in results and results[vm] <= deadline),
            "total": len(VMS),
            "saturated_s": sum(1 for k in samples if k > 0.9 * CAPACITY_KBPS),
            "tenant_kbps": tenant_kbps, "makespan_s": max(results.values()) if results else makespan,
        }
    finally:
        tb.cleanup()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--factors", default="1.25,2.5,4")
    ap.add_argument("--out", default="")
    ap.add_argument("--C", type=int, default=300, help="brokers' C, KB/s")
    ap.add_argument("--n", type=int, default=3, help="brokers' n")
    ap.add_argument("--modes", default="none,broker")
    args = ap.parse_args()
    ALG2["C"], ALG2["n"] = args.C, args.n
    rows = []
    for factor in [float(f) for f in args.factors.split(",")]:
        for mode in args.modes.split(","):
            r = run(args.build, mode, factor)
            r["C"], r["n"] = ALG2["C"], ALG2["n"]
            print(json.dumps(r), flush=True)
            rows.append(r)
    lines = ["| deadline (x ideal) | deadline s | mode (C KB/s, n) | deadlines met | s with h3 link > 90 %% | tenant KB/s (asks %d) | makespan s |"
             % (TENANT_MBIT * 125),
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        mode = r["mode"] if r["mode"] == "none" else "broker (%d, %d)" % (r["C"], r["n"])
        lines.append("| %.2f | %.0f | %s | %d/%d | %d | %.0f | %.1f |" % (
            r["factor"], r["deadline_s"], mode, r["met"], r["total"], r["saturated_s"], r["tenant_kbps"],
            r["makespan_s"]))
    table = "\n".join(lines)
    print(table)
    if args.out:
        with open(args.out, "a") as f:
            f.write("\n" + table + "\n")


if __name__ == "__main__":
    if os.geteuid() != 0:
        sys.exit("needs root (namespaces, FUSE)")
    main()
