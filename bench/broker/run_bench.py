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
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

LINK_MBIT = 48            # h3 downlink: 6000 KB/s
TENANT_MBIT = 12          # 1500 KB/s steady tenant
CAPACITY_KBPS = LINK_MBIT * 1000 / 8
# Each image is larger than migratefs' 64 MiB in-flight window, so limits take effect.
VMS = [("vm1", "h1", 80, True), ("vm2", "h2", 96, False), ("vm3", "h1", 96, False)]
ALG2 = {"C": 300, "n": 3}  # the brokers' C (KB/s) and n; --C / --n
TENANT_S = 50            # the tenant runs this long from 2 s before the migrations
SUBNET = "10.78.%d" % (200 + os.getpid() % 50)


def sh(cmd, check=True):
    r = subprocess.run(cmd, shell=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if check and r.returncode != 0:
        raise RuntimeError("%s: %s" % (cmd, r.stdout))
    return r.stdout


def ask(path, request, timeout=5):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(timeout)
    s.connect(path)
    s.sendall((json.dumps(request) + "\n").encode())
    data = b""
    while not data.endswith(b"\n"):
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    return json.loads(data)


def wait(pred, timeout):
    end = time.time() + timeout
    while time.time() < end:
        try:
            if pred():
                return True
        except Exception:
            pass
        time.sleep(0.1)
    return False


class Testbed:
    def __init__(self, build):
        self.build = os.path.abspath(build)
        self.tag = "mbb%d" % os.getpid()
        self.dir = tempfile.mkdtemp(prefix="broker-bench-")
        self.procs = []
        self.hosts = {}
        self.key = os.path.join(self.dir, "key")
        sh("head -c 32 /dev/urandom | base64 > %s && chmod 600 %s" % (self.key, self.key))
        sw = self.sw = self.tag + "s"
        sh("ip netns add %s && ip -n %s link add br0 type bridge && ip -n %s link set br0 up && "
           "ip -n %s link set lo up && ip -n %s addr add %s.254/24 dev br0" % (sw, sw, sw, sw, sw, SUBNET))
        for i in (1, 2, 3):
            name, ns = "h%d" % i, "%sh%d" % (self.tag, i)
            a, b = "%sa%d" % (self.tag, i), "%sb%d" % (self.tag, i)
            addr = "%s.%d" % (SUBNET, i)
            d = os.path.join(self.dir, name)
            os.makedirs(d + "/src")
            os.makedirs(d + "/mnt")
            sh("ip netns add %s && ip link add %s type veth peer name %s && ip link set %s netns %s && "
               "ip link set %s netns %s" % (ns, a, b, a, ns, b, sw))
            sh("ip -n %s link set %s name eth0 && ip -n %s addr add %s/24 dev eth0 && ip -n %s link set eth0 up"
               " && ip -n %s link set lo up" % (ns, a, ns, addr, ns, ns))
            sh("ip -n %s link set %s master br0 && ip -n %s link set %s up" % (sw, b, sw, b))
            self.hosts[name] = {"ns": ns, "addr": addr, "dir": d, "port": b}
        sh("tc -n %s qdisc add dev %s root tbf rate %dmbit burst 32kb latency 400ms"
           % (sw, self.hosts["h3"]["port"], LINK_MBIT))
        wait(lambda: sh("bridge -n %s link show" % sw).count("state forwarding") == 3, 10)

    def spawn(self, argv, ns, log):
        if ns:
            argv = ["nsenter", "--net=/var/run/netns/" + ns, "--"] + argv
        p = subprocess.Popen(argv, stdout=open(log, "a"), stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(p)
        return p

    def stop(self, p, sig=signal.SIGTERM):
        if p.poll() is None:
            os.killpg(p.pid, sig)
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()

    def port_tx_bytes(self):
        out = sh("ip -j -s -n %s link show %s" % (self.sw, self.hosts["h3"]["port"]))
        return json.loads(out)[0]["stats64"]["tx"]["bytes"]

    def start_migratefs(self):
        for name, h in self.hosts.items():
            h["control"] = h["dir"] + "/control.sock"
            h["mfs"] = self.spawn([self.build + "/migratefs", h["dir"] + "/src", h["dir"] + "/mnt", "-f", "-o",
                                   "control=%s,listen=%s:7200,keyfile=%s" % (h["control"], h["addr"], self.key)],
                                  h["ns"], h["dir"] + "/migratefs.log")
            if not wait(lambda: ask(h["control"], {"op": "list"})["ok"], 15):
                raise RuntimeError(name + " migratefs did not start")

    def start_brokers(self):
        hook = self.dir + "/hooks.log"
        for name, h in self.hosts.items():
            h["bsock"] = h["dir"] + "/broker.sock"
            peers = "".join('[[peer]]\nname = "%s"\naddress = "%s:7100"\n' % (n, o["addr"])
                            for n, o in self.hosts.items() if n != name)
            with open(h["dir"] + "/broker.toml", "w") as f:
                f.write('host = "%s"\ncontrol_socket = "%s"\nlisten = "%s:7100"\nsocket = "%s"\nkeyfile = "%s"\n'
                        'period = 1\ndanger = 200\nwarning = 250\ndisk_target = 150\nC = %d\nn = %d\n'
                        'min_network_kbps = 100\nhypervisor_command = \'echo {vm} >> %s\'\n%s'
                        % (name, h["control"], h["addr"], h["bsock"], self.key, ALG2["C"], ALG2["n"], hook, peers))
            h["broker"] = self.spawn([self.build + "/migratefs-broker", "--config", h["dir"] + "/broker.toml"],
                                     h["ns"], h["dir"] + "/broker.log")
            if not wait(lambda: ask(h["bsock"], {"op": "status"})["ok"], 10):
                raise RuntimeError(name + " broker did not start")

    def cleanup(self):
        for p in reversed(self.procs):
            try:
                self.stop(p)
            except Exception:
                pass
        for h in self.hosts.values():
            sh("umount -l %s/mnt" % h["dir"], False)
            sh("ip netns del %s" % h["ns"], False)
        sh("ip netns del %s" % self.sw, False)
        shutil.rmtree(self.dir, ignore_errors=True)


def run(build, mode, factor):
    tb = Testbed(build)
    try:
        for vm, src, mib, _ in VMS:
            sh("head -c %dM /dev/urandom > %s/src/%s.img" % (mib, tb.hosts[src]["dir"], vm))
        tb.start_migratefs()
        if mode == "broker":
            tb.start_brokers()
        h2, h3 = tb.hosts["h2"], tb.hosts["h3"]
        tb.spawn(["iperf3", "-s", "-B", h3["addr"], "-p", "5201"], h3["ns"], tb.dir + "/iperf-s.log")
        time.sleep(0.5)
        ideal = sum(m for _, _, m, _ in VMS) * 1048.576 / (CAPACITY_KBPS - TENANT_MBIT * 125)
        deadline = factor * ideal
        tenant = tb.spawn(["iperf3", "-c", h3["addr"], "-p", "5201", "-b", "%dM" % TENANT_MBIT, "-t", str(TENANT_S),
                           "-J"], h2["ns"], tb.dir + "/iperf-c.json")
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
            ids = {}
            for vm, src, _, _ in VMS:
                a = ask(tb.hosts[src]["control"], {"op": "start", "images": [vm + ".img"], "target": h3["addr"] + ":7200"})
                ids[vm] = (src, a["id"])
            pending = dict(ids)
            while pending and time.time() - start < deadline + 120:
                for vm, (src, mid) in list(pending.items()):
                    if ask(tb.hosts[src]["control"], {"op": "query_completion", "id": mid}).get("completed"):
                        ask(tb.hosts[src]["control"], {"op": "finish", "id": mid}, timeout=60)
                        results[vm] = time.time() - start
                        del pending[vm]
                time.sleep(0.5)
        else:
            tasks = tb.dir + "/tasks.toml"
            with open(tasks, "w") as f:
                for vm, src, _, important in VMS:
                    f.write('[[task]]\nvm = "%s"\ndisks = ["%s.img"]\nsource = "%s"\ntarget = "h3"\n'
                            'deadline = %.1f\nimportant = %s\n' % (vm, vm, src, deadline, "true" if important else "false"))
            with open(tb.dir + "/topology.toml", "w") as f:
                f.write('[[switch]]\nname = "sw"\n')
                for n, h in tb.hosts.items():
                    f.write('[[host]]\nname = "%s"\nswitch = "sw"\nbroker = "%s:7100"\nmigratefs = "%s:7200"\n'
                            % (n, h["addr"], h["addr"]))
            report_path = tb.dir + "/report.json"
            p = tb.spawn([build + "/migratefs-scheduler", "submit", "--tasks", tasks, "--topology",
                          tb.dir + "/topology.toml", "--keyfile", tb.key, "--poll", "0.5", "--timeout",
                          str(deadline + 120), "-o", report_path], tb.sw, tb.dir + "/scheduler.log")
            p.wait()
            report = json.load(open(report_path))
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
