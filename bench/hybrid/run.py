#!/usr/bin/env python3
"""Hybrid copy over an emulated WAN (issue 10): predicted vs measured T and U.

Testbed (needs root, /dev/fuse, iproute2 with tc tbf; no netem needed):

  ns A (source)  eth0 10.79.X.1 --veth-- eth0 10.79.X.2  ns B (target)
  migratefs (control, key)          delay proxy :7400 -> 127.0.0.1:7300 migratefs (listen)
  tc tbf 40 mbit on both ends of the veth (A->B carries the image, B->A acks/fetches).

The 5 ms RTT is made in user space: a TCP proxy in ns B (this script, `proxy`
subcommand, its own process) in front of the target's peer port holds every chunk
2.5 ms in each direction. The migration's target address is the proxy's.

The "VM" (this script, `vm` subcommand) is an open-loop Poisson generator with a pool
of threads: 4 KiB O_DIRECT random writes at W writes/s over the whole image (on the
source: random bytes; on the target: a fixed pattern whose offsets are logged), plus
on the target 4 KiB O_DIRECT random reads at R reads/s, each read's latency measured
from its scheduled arrival (so a read queued behind stalled ones counts its wait).
W = 15 writes/s over a 256 MiB image (512 blocks of 512 KiB) is seed 002's own
Monte-Carlo writer (broker/policy/README.md): while most blocks are clean it dirties
15 blocks/s = 7.9 MB/s of the daemon's dirty-tracking blocks, 1.6x the 40 Mbit/s
link (~4.8 MB/s of goodput): a "30 MB/s-class" writer scaled to the link, which makes
pure pre-copy fail to converge by iteration.

Sequence:
  1. goodput through shaper + proxy with iperf3 (ns A -> ns B), RTT with a ping-pong;
  2. profile: source daemon, VM writing, `profile` for --profile-s seconds, then
     `predict` with net_kbps = measured goodput and rtt_ms = 5 (and with the nominal
     5000 KB/s, kept in the log); also migratefs-scheduler predict on the same profile
     plus the target reader's reads, for the fetch count the VM will really cause;
  3. per S in --s-list (hybrid) and one pure pre-copy run: fresh image (same bytes),
     fresh daemons, VM writing on the source from 2 s before `start`; on
     query_completion the VM stops, `finish` (switch-over), the VM (writer + reader)
     starts on the target mount; T = start -> source phase `finished`, U = finish
     call -> `finished`; then the VM stops, the source is released and the target
     file is compared byte for byte with the source file plus the target VM's writes.

  sudo bench/hybrid/run.py --build /work/snap/bin [--quick] [--record]

--record appends the section to bench/RESULTS.md; the table and the raw log always go
to bench/hybrid/RESULTS.md and bench/hybrid/last_run.json.
"""
import argparse
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
BLOCK = 512 * 1024
IO = 4096
TARGET_PORT = 7300       # target daemon, 127.0.0.1 in ns B
PROXY_PORT = 7400        # the delay proxy in ns B: what the source connects to
IPERF_PROXY_PORT = 7401  # proxy -> iperf3 -s (goodput through the same path)
ECHO_PORT = 7402         # proxy -> its own echo (RTT probe)
IPERF_PORT = 5201


# ------------------------------------------------------------------------- testbed
# sh, ask, wait: the shared bench helpers (bench/broker/testbed.py); the subcommands
# live in delay_proxy.py and vm_load.py.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "broker"))
from testbed import sh, ask as _ask, wait  # noqa: E402
from delay_proxy import proxy_main, rtt_main  # noqa: E402
from vm_load import vm_main  # noqa: E402


def ask(path, request, timeout=10):
    return _ask(path, request, timeout)


def pct(values, p):
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, int(math.ceil(p / 100.0 * len(v))) - 1)]


class Testbed:
    def __init__(self, args):
        self.args = args
        self.build = os.path.abspath(args.build)
        self.tag = "mhb%d" % (os.getpid() % 100000)
        self.subnet = "10.79.%d" % (1 + os.getpid() % 250)
        self.a_ip, self.b_ip = self.subnet + ".1", self.subnet + ".2"
        self.ns_a, self.ns_b = self.tag + "a", self.tag + "b"
        self.dir = tempfile.mkdtemp(prefix="hybrid-bench-")
        self.procs = []
        self.mounts = []
        self.netns = []
        self.key = os.path.join(self.dir, "key")
        sh("head -c 32 /dev/urandom | base64 > %s && chmod 600 %s" % (self.key, self.key))

    def setup_net(self):
        a, b = self.ns_a, self.ns_b
        sh("ip netns add %s" % a)
        self.netns.append(a)
        sh("ip netns add %s" % b)
        self.netns.append(b)
        sh("ip link add %sx type veth peer name %sy" % (self.tag, self.tag))
        sh("ip link set %sx netns %s && ip link set %sy netns %s" % (self.tag, a, self.tag, b))
        for ns, dev, ip in ((a, self.tag + "x", self.a_ip), (b, self.tag + "y", self.b_ip)):
            sh("ip -n %s link set %s name eth0 && ip -n %s addr add %s/24 dev eth0 && "
               "ip -n %s link set eth0 up && ip -n %s link set lo up" % (ns, dev, ns, ip, ns, ns))
            sh("tc -n %s qdisc add dev eth0 root tbf rate %dmbit burst 32kb latency %dms"
               % (ns, self.args.rate_mbit, self.args.tbf_latency_ms))
        half = self.args.rtt_ms / 2.0
        self.proxy = self.spawn([sys.executable, os.path.abspath(__file__), "proxy", "--delay-ms", str(half),
                                 "--map", "%s:%d=127.0.0.1:%d" % (self.b_ip, PROXY_PORT, TARGET_PORT),
                                 "--map", "%s:%d=127.0.0.1:%d" % (self.b_ip, IPERF_PROXY_PORT, IPERF_PORT),
                                 "--map", "%s:%d=echo" % (self.b_ip, ECHO_PORT)],
                                b, self.dir + "/proxy.log")
        if not wait(lambda: "proxy ready" in open(self.dir + "/proxy.log").read(), 10):
            raise RuntimeError("proxy did not start: " + open(self.dir + "/proxy.log").read())

    def nsexec(self, ns):
        return ["nsenter", "--net=/var/run/netns/" + ns, "--"]

    def spawn(self, argv, ns, log):
        if ns:
            argv = self.nsexec(ns) + argv
        p = subprocess.Popen(argv, stdout=open(log, "a"), stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(p)
        return p

    def stop(self, p, sig=signal.SIGTERM, timeout=10):
        if p.poll() is None:
            try:
                os.killpg(p.pid, sig)
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
            except ProcessLookupError:
                pass
        if p in self.procs:
            self.procs.remove(p)

    def measure_link(self):
        srv = self.spawn(["iperf3", "-s", "-B", "127.0.0.1", "-p", str(IPERF_PORT)], self.ns_b,
                         self.dir + "/iperf-s.log")
        time.sleep(0.5)
        out = sh(" ".join(self.nsexec(self.ns_a)) + " iperf3 -c %s -p %d -t %d -J"
                 % (self.b_ip, IPERF_PROXY_PORT, 4 if self.args.quick else 8))
        self.stop(srv)
        j = json.loads(out)
        goodput = j["end"]["sum_received"]["bits_per_second"] / 8000.0
        rtt = json.loads(sh(" ".join(self.nsexec(self.ns_a)) + " %s %s rtt --to %s:%d --n 50"
                            % (sys.executable, os.path.abspath(__file__), self.b_ip, ECHO_PORT)))
        return goodput, rtt

    def host(self, name):
        d = os.path.join(self.dir, name)
        os.makedirs(d + "/src", exist_ok=True)
        os.makedirs(d + "/mnt", exist_ok=True)
        return d

    def start_daemon(self, name, ns, listen=None):
        d = self.host(name)
        ctl = d + "/control.sock"
        opts = "control=%s,keyfile=%s" % (ctl, self.key)
        if listen:
            opts += ",listen=" + listen
        p = self.spawn([self.build + "/migratefs", d + "/src", d + "/mnt", "-f", "-o", opts], ns,
                       d + "/migratefs.log")
        self.mounts.append(d + "/mnt")
        if not wait(lambda: ask(ctl, {"op": "list"})["ok"], 15):
            raise RuntimeError(name + " migratefs did not start: " + open(d + "/migratefs.log").read()[-2000:])
        return {"dir": d, "ctl": ctl, "proc": p, "mnt": d + "/mnt", "src": d + "/src"}

    def stop_daemon(self, h):
        self.stop(h["proc"])
        sh("fusermount3 -u -z %s" % h["mnt"], False)
        if h["mnt"] in self.mounts:
            self.mounts.remove(h["mnt"])

    def vm(self, name, path, writes, reads, pattern, seed):
        log = os.path.join(self.dir, name + ".json")
        ready = os.path.join(self.dir, name + ".ready")
        for f in (log, ready):
            if os.path.exists(f):
                os.unlink(f)
        argv = [sys.executable, os.path.abspath(__file__), "vm", "--file", path, "--writes-per-s", str(writes),
                "--reads-per-s", str(reads), "--threads", "8", "--log", log, "--ready", ready,
                "--seed", str(seed)]
        if pattern:
            argv.append("--pattern")
        p = self.spawn(argv, None, os.path.join(self.dir, name + ".out"))
        if not wait(lambda: os.path.exists(ready) or p.poll() is not None, 10, 0.01) or p.poll() is not None:
            raise RuntimeError("vm %s did not start: %s" % (name, open(os.path.join(self.dir, name + ".out")).read()))
        return {"proc": p, "log": log}

    def stop_vm(self, v):
        p = v["proc"]
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(120)
            except subprocess.TimeoutExpired:
                self.stop(p, signal.SIGKILL)
                raise RuntimeError("vm did not stop within 120 s (a write or read hangs)")
        if p in self.procs:
            self.procs.remove(p)
        if p.returncode != 0:
            raise RuntimeError("vm exited %d" % p.returncode)
        return json.load(open(v["log"]))

    def cleanup(self):
        for p in reversed(list(self.procs)):
            try:
                self.stop(p)
            except Exception:
                pass
        for m in list(self.mounts):
            sh("fusermount3 -u -z %s" % m, False)
        for ns in self.netns:
            sh("ip netns del %s" % ns, False)
        if not self.args.keep:
            shutil.rmtree(self.dir, ignore_errors=True)
        else:
            print("kept", self.dir)


# ----------------------------------------------------------------------------- runs
def profile_and_predict(tb, args, pristine, goodput_kbps):
    src = tb.start_daemon("prof", tb.ns_a)
    try:
        shutil.copyfile(pristine, src["src"] + "/vm.img")
        v = tb.vm("prof-vm", src["mnt"] + "/vm.img", args.writes_per_s, 0, False, 11)
        time.sleep(1)
        prof = ask(src["ctl"], {"op": "profile", "images": ["vm.img"], "seconds": args.profile_s},
                   timeout=args.profile_s + 60)
        tb.stop_vm(v)
        if not prof.get("ok"):
            raise RuntimeError("profile: %s" % prof)
        preds = {}
        for label, kbps in (("goodput", int(round(goodput_kbps))), ("nominal", args.rate_mbit * 125)):
            p = ask(src["ctl"], {"op": "predict", "images": ["vm.img"], "net_kbps": kbps,
                                 "rtt_ms": args.rtt_ms, "step": 25}, timeout=120)
            if not p.get("ok"):
                raise RuntimeError("predict: %s" % p)
            preds[label] = p
    finally:
        tb.stop_daemon(src)
    # The same profile plus the target reader's reads (the daemon profiles writes only):
    # what the VM on the target really accesses, for the fetch count.
    im = dict(prof["profile"]["images"][0])
    nblocks = (im["image_bytes"] + im["block_bytes"] - 1) // im["block_bytes"]
    per_block = args.reads_per_s * im["window_s"] / nblocks
    im["reads"] = [per_block] * nblocks
    pf = os.path.join(tb.dir, "profile-reads.json")
    with open(pf, "w") as f:
        json.dump(im, f)
    r = subprocess.run([tb.build + "/migratefs-scheduler", "predict", "--profile", pf, "--net-kbps",
                        str(int(round(goodput_kbps))), "--rtt-ms", str(args.rtt_ms), "--step", "25", "--json"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        preds["with_reads"] = json.loads(r.stdout)
    except ValueError:
        preds["with_reads"] = {"error": r.stdout.strip()}
    return prof["profile"], preds


def verify(tb, src_file, dst_file, target_writes):
    expected = os.path.join(tb.dir, "expected.img")
    shutil.copyfile(src_file, expected)
    pattern = (b"HYBRID-TARGET-WRITE-" * 205)[:IO]
    with open(expected, "r+b") as f:
        for off in target_writes:
            f.seek(off)
            f.write(pattern)
    r = subprocess.run(["cmp", expected, dst_file], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    os.unlink(expected)
    return r.returncode == 0, r.stdout.strip()


def cpu_times():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return sum(v), v[3] + v[4]  # total, idle + iowait


def one_run(tb, args, pristine, mode, s):
    c0 = cpu_times()
    try:
        res = one_run_inner(tb, args, pristine, mode, s)
    finally:
        c1 = cpu_times()
    res["cpu_busy_pct"] = 100.0 * (1 - (c1[1] - c0[1]) / max(1, c1[0] - c0[0]))
    res["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
    return res


def one_run_inner(tb, args, pristine, mode, s):
    name = "precopy" if mode == "precopy" else "s%d" % s
    tgt = tb.start_daemon(name + "-t", tb.ns_b, "127.0.0.1:%d" % TARGET_PORT)
    src = tb.start_daemon(name + "-s", tb.ns_a)
    res = {"mode": mode, "s": s, "samples": []}
    try:
        shutil.copyfile(pristine, src["src"] + "/vm.img")
        vm_src = tb.vm(name + "-vm-src", src["mnt"] + "/vm.img", args.writes_per_s, 0, False, 100 + s)
        time.sleep(2)
        req = {"op": "start", "images": ["vm.img"], "target": "%s:%d" % (tb.b_ip, PROXY_PORT)}
        if mode == "hybrid":
            req.update({"mode": "hybrid", "precopy_pct": s})
        t0 = time.time()
        a = ask(src["ctl"], req)
        if not a.get("ok"):
            raise RuntimeError("start: %s" % a)
        mid = a["id"]
        last_sample = 0
        completed = False
        res["phase_t"] = {}
        while time.time() - t0 < args.cap_s:
            c = ask(src["ctl"], {"op": "query_completion", "id": mid})
            p = ask(src["ctl"], {"op": "query_progress", "id": mid})
            now = time.time()
            if p.get("phase") and p["phase"] not in res["phase_t"]:
                res["phase_t"][p["phase"]] = {"t": round(now - t0, 2), "bytes_sent": p.get("bytes_sent"),
                                              "dirty_blocks": p.get("dirty_blocks")}
            if now - last_sample >= 1:
                res["samples"].append({"t": round(now - t0, 2), "phase": p.get("phase"),
                                       "sent": p.get("bytes_sent"), "dirty": p.get("dirty_blocks"),
                                       "remote": p.get("blocks_remote"), "kbps": p.get("network_kbps")})
                last_sample = now
                if p.get("phase") in ("failed", "cancelled"):
                    raise RuntimeError("migration %s: %s" % (p.get("phase"), p))
            if c.get("completed"):
                completed = True
                break
            time.sleep(0.05)
        t_sw = time.time()
        res["switch_s"] = t_sw - t0
        res["converged"] = completed
        src_log = tb.stop_vm(vm_src)
        res["vm_stop_s"] = time.time() - t_sw
        t_mirror = t0 + res["phase_t"]["mirror"]["t"] if "mirror" in res["phase_t"] else None
        if t_mirror:
            ml = [(lat, sv) for (t, lat, sv) in src_log["write_lat"] if t >= t_mirror]
            res["mirror_writes"] = len(ml)
            res["mirror_write_svc_p50_ms"] = pct([sv for _, sv in ml], 50) * 1000
            res["mirror_write_svc_p99_ms"] = pct([sv for _, sv in ml], 99) * 1000
            res["mirror_write_vm_p99_ms"] = pct([lat for lat, _ in ml], 99) * 1000
        res["src_writes"] = len(src_log["writes"])
        wl = [lat for (t, lat, _) in src_log["write_lat"] if t >= t0]
        res["src_write_p99_ms"] = pct(wl, 99) * 1000
        res["src_write_svc_p50_ms"] = pct([sv for (t, _, sv) in src_log["write_lat"] if t >= t0], 50) * 1000
        res["src_write_svc_p99_ms"] = pct([sv for (t, _, sv) in src_log["write_lat"] if t >= t0], 99) * 1000
        res["src_write_max_ms"] = max(wl) * 1000 if wl else float("nan")
        res["src_dropped"] = src_log.get("dropped", 0)
        res["src_write_errors"] = src_log["write_errors"][:5]
        if not completed:
            ask(src["ctl"], {"op": "cancel", "id": mid}, timeout=60)
            res["T_s"] = None
            res["identical"] = None
            return res
        sync_start = time.time()
        f = ask(src["ctl"], {"op": "finish", "id": mid}, timeout=300)
        t_fin = time.time()
        if not f.get("ok"):
            raise RuntimeError("finish: %s" % f)
        res["finish_call_s"] = t_fin - sync_start
        res["pause_s"] = t_fin - t_sw  # VM stopped on the source until it runs on the target
        tgt_log = None
        if mode == "hybrid":
            vm_tgt = tb.vm(name + "-vm-tgt", tgt["mnt"] + "/vm.img", args.writes_per_s, args.reads_per_s, True,
                           200 + s)
            incoming_last, t_end, last_inc = None, None, 0
            while time.time() - t0 < args.cap_s + 600:
                p = ask(src["ctl"], {"op": "query_progress", "id": mid})
                now = time.time()
                if now - last_inc >= 0.5:
                    inc = ask(tgt["ctl"], {"op": "incoming"}).get("incoming") or []
                    for i in inc:
                        if i.get("image") == "vm.img":
                            incoming_last = i
                    last_inc = now
                if now - last_sample >= 1:
                    res["samples"].append({"t": round(now - t0, 2), "phase": p.get("phase"),
                                           "remote": p.get("blocks_remote"), "pulled": p.get("bytes_pulled"),
                                           "fetched": p.get("bytes_fetched_on_demand"),
                                           "fetch_ms": p.get("fetch_latency_ms"), "kbps": p.get("network_kbps")})
                    last_sample = now
                if p.get("phase") == "finished":
                    t_end = now
                    res["progress_end"] = p
                    break
                if p.get("phase") in ("failed", "cancelled"):
                    raise RuntimeError("postcopy %s: %s" % (p.get("phase"), p))
                time.sleep(0.05)
            if t_end is None:
                raise RuntimeError("postcopy did not finish (hang?): last progress %s" % p)
            tgt_log = tb.stop_vm(vm_tgt)
            res["T_s"] = t_end - t0
            res["U_s"] = t_end - t_sw          # from the switch-over decision, as the model counts it
            res["remote_s"] = t_end - t_fin    # the VM running on the target with blocks remote
            res["incoming_last"] = incoming_last
            reads = [lat for (t, lat, _) in tgt_log["reads"] if sync_start <= t <= t_end]
            res["read_svc_p99_ms"] = pct([sv for (t, _, sv) in tgt_log["reads"] if sync_start <= t <= t_end], 99) * 1000
            res["reads_postcopy"] = len(reads)
            res["read_p50_ms"] = pct(reads, 50) * 1000
            res["read_p99_ms"] = pct(reads, 99) * 1000
            res["read_max_ms"] = max(reads) * 1000 if reads else float("nan")
            wl = [lat for (t, lat, _) in tgt_log["write_lat"] if sync_start <= t <= t_end]
            res["write_p99_ms"] = pct(wl, 99) * 1000
            res["tgt_writes"] = len(tgt_log["writes"])
            res["tgt_errors"] = tgt_log["write_errors"][:5] + tgt_log["read_errors"][:5]
            res["zero_reads"] = tgt_log["zero_reads"]
            res["fetched_blocks"] = (res["progress_end"].get("bytes_fetched_on_demand") or 0) / BLOCK
            res["pulled_blocks"] = (res["progress_end"].get("bytes_pulled") or 0) / BLOCK
            res["fetch_waits"] = (incoming_last or {}).get("fetches")
        else:
            res["T_s"] = t_fin - t0
            res["U_s"] = 0.0
            res["progress_end"] = ask(src["ctl"], {"op": "query_progress", "id": mid})
        rel = ask(src["ctl"], {"op": "release", "id": mid}, timeout=60)
        res["released"] = rel.get("ok")
        ok, msg = verify(tb, src["src"] + "/vm.img", tgt["src"] + "/vm.img", tgt_log["writes"] if tgt_log else [])
        res["identical"] = ok
        res["cmp"] = msg
        return res
    finally:
        tb.stop_daemon(src)
        tb.stop_daemon(tgt)


def fmt(v, spec="%.1f"):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return spec % v


def err_pct(meas, pred):
    if meas is None or pred is None or pred <= 0:
        return None
    return (meas - pred) / pred * 100


def build_table(runs, preds, link):
    rows = {r["s"]: r for r in preds["goodput"]["rows"]}
    rr = {r["s"]: r for r in preds["with_reads"].get("rows", [])} if "rows" in preds["with_reads"] else {}
    pre = preds["goodput"]["precopy"]
    base = next((r for r in runs if r["mode"] == "precopy"), None)
    lines = ["| run | pred T s | meas T s | T err | pred U s | meas U s | U err | pred switch s | meas switch s "
             "| switch vs pre-copy | read stall p50 / p99 / max ms (reads) | blocks fetched (pred w / w+r) "
             "| waits | VM pause s / on target with blocks remote s | source writes in phase 3 (mirrored): svc p50 / VM p99 ms | CPU busy | identical |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        if r["mode"] == "precopy":
            p, label = pre, "pre-copy"
        else:
            p, label = rows.get(r["s"]), "hybrid S=%d" % r["s"]
        pt, pu = p["t_s"], p["u_s"]
        psw = pt - pu
        if base and base.get("converged") and r.get("converged") and r["switch_s"] > 0:
            ratio = "%.2f×" % (base["switch_s"] / r["switch_s"]) if r is not base else "1×"
        elif base and not base.get("converged"):
            ratio = "> %.1f×" % (base["switch_s"] / r["switch_s"]) if r is not base else "did not converge"
        else:
            ratio = "–"
        if r.get("T_s") is None:
            lines.append("| %s | %.1f | did not converge in %.0f s | | %.1f | | | %.1f | > %.0f | %s | | | | | %.0f "
                         "| %.0f %% | |" % (label, pt, r["switch_s"], pu, psw, r["switch_s"], ratio,
                                          r.get("mirror_write_vm_p99_ms", 0), r.get("cpu_busy_pct", 0)))
            continue
        te, ue = err_pct(r["T_s"], pt), err_pct(r["U_s"], pu)
        if r["mode"] == "hybrid":
            stall = "%s / %s / %s (%d)" % (fmt(r["read_p50_ms"], "%.0f"), fmt(r["read_p99_ms"], "%.0f"),
                                           fmt(r["read_max_ms"], "%.0f"), r["reads_postcopy"])
            pr = rr.get(r["s"], {}).get("fetches")
            fetch = "%.0f (%.0f / %s)" % (r["fetched_blocks"], p["fetches"], fmt(pr, "%.0f"))
            waits = str(r.get("fetch_waits"))
        else:
            stall, fetch, waits = "–", "–", "–"
        lines.append("| %s | %.1f | %.1f | %s | %.1f | %.1f | %s | %.1f | %.1f | %s | %s | %s | %s | %.2f / %s | %s / %s "
                     "| %.0f %% | %s |" % (
                         label, pt, r["T_s"], fmt(te, "%+.1f %%"), pu, r["U_s"], fmt(ue, "%+.1f %%"), psw,
                         r["switch_s"], ratio, stall, fetch, waits, r.get("pause_s", 0), fmt(r.get("remote_s")),
                         fmt(r.get("mirror_write_svc_p50_ms"), "%.0f"), fmt(r.get("mirror_write_vm_p99_ms"), "%.0f"),
                         r.get("cpu_busy_pct", 0),
                         "yes" if r["identical"] else "**NO**"))
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build", help="directory with migratefs, migratefs-scheduler")
    ap.add_argument("--quick", action="store_true", help="64 MiB image, 30 s profile, S in {0,50,100}")
    ap.add_argument("--image-mb", type=int, default=256)
    ap.add_argument("--writes-per-s", type=float, default=15.0)
    ap.add_argument("--reads-per-s", type=float, default=10.0)
    ap.add_argument("--profile-s", type=int, default=120)
    ap.add_argument("--s-list", default="0,25,50,75,100")
    ap.add_argument("--no-precopy", action="store_true")
    ap.add_argument("--rate-mbit", type=int, default=40)
    ap.add_argument("--rtt-ms", type=float, default=5.0)
    ap.add_argument("--tbf-latency-ms", type=int, default=50)
    ap.add_argument("--cap-s", type=float, default=400, help="give up waiting for completion after this")
    ap.add_argument("--record", action="store_true", help="append the section to bench/RESULTS.md")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.image_mb, args.profile_s = 64, 30
        if args.s_list == "0,25,50,75,100":
            args.s_list = "0,50,100"
    for tool in ("migratefs", "migratefs-scheduler"):
        if not os.access(os.path.join(args.build, tool), os.X_OK):
            sys.exit("no %s in %s (--build DIR)" % (tool, args.build))

    def on_signal(sig, _):
        raise KeyboardInterrupt("signal %d" % sig)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    up_before = sh("uptime").strip()
    print("uptime before:", up_before, flush=True)
    tb = Testbed(args)
    runs, preds, link = [], None, {}
    failed = []
    started = time.time()
    try:
        tb.setup_net()
        goodput, rtt = tb.measure_link()
        link = {"goodput_kbps": goodput, "rtt": rtt}
        print("link: goodput %.0f KB/s through tbf %d mbit + proxy, RTT p50 %.2f ms (min %.2f)"
              % (goodput, args.rate_mbit, rtt["rtt_ms_p50"], rtt["rtt_ms_min"]), flush=True)
        pristine = os.path.join(tb.dir, "pristine.img")
        sh("head -c %dM /dev/urandom > %s" % (args.image_mb, pristine))
        profile, preds = profile_and_predict(tb, args, pristine, goodput)
        im = profile["images"][0]
        print("profile: %d s window, %d writes in %d blocks; predict: recommended S=%s (%s)"
              % (im["window_s"], sum(c for _, c in im["writes"]), len(im["writes"]),
                 preds["goodput"].get("recommended_s"), preds["goodput"].get("reason")), flush=True)
        for r in preds["goodput"]["rows"] + [preds["goodput"]["precopy"]]:
            print("  predicted S=%s T=%.1f U=%.1f switch=%.1f fetches=%.0f p_converge=%.2f"
                  % (r["s"], r["t_s"], r["u_s"], r["t_s"] - r["u_s"], r["fetches"], r["p_converge"]), flush=True)
        plan = [("hybrid", int(s)) for s in args.s_list.split(",")]
        if not args.no_precopy:
            plan.append(("precopy", 100))
        for mode, s in plan:
            r = one_run(tb, args, pristine, mode, s)
            runs.append(r)
            print(json.dumps({k: v for k, v in r.items() if k not in ("samples", "progress_end", "incoming_last")}),
                  flush=True)
            if r.get("identical") is False:
                failed.append("%s S=%d: copies differ: %s" % (mode, s, r["cmp"]))
                print("FAIL: %s" % failed[-1], flush=True)
            for key in ("tgt_errors", "src_write_errors"):
                if r.get(key):
                    failed.append("%s S=%d: VM I/O errors %s" % (mode, s, r[key]))
            if r.get("zero_reads"):
                failed.append("%s S=%d: %d reads returned zeros" % (mode, s, r["zero_reads"]))
    finally:
        tb.cleanup()
        up_after = sh("uptime").strip()
        print("uptime after:", up_after, flush=True)
        with open(os.path.join(HERE, "last_run.json"), "w") as f:
            json.dump({"args": vars(args), "link": link, "predictions": preds, "runs": runs,
                       "uptime_before": up_before, "uptime_after": up_after,
                       "wall_s": time.time() - started}, f, indent=1)
    table = build_table(runs, preds, link)
    print(table)
    cmd = "sudo bench/hybrid/run.py " + " ".join(sys.argv[1:])
    text = ("### %s, `%s`\n\nLink: tc tbf %d mbit both ways + user-space delay proxy %.1f ms RTT; goodput "
            "%.0f KB/s (iperf3 through the proxy), RTT p50 %.2f ms. Image %d MiB (%d blocks of 512 KiB); VM: %.0f "
            "random 4 KiB O_DIRECT writes/s (Poisson) over the whole image, on the target also %.0f reads/s. "
            "Profile %d s; predicted with `predict` net_kbps=%d rtt_ms=%g.\n"
            "Load before: `%s`; after: `%s`.\n\n%s\n"
            % (time.strftime("%Y-%m-%d %H:%M"), cmd, args.rate_mbit, args.rtt_ms, link.get("goodput_kbps", 0),
               link.get("rtt", {}).get("rtt_ms_p50", 0), args.image_mb, args.image_mb * 2, args.writes_per_s,
               args.reads_per_s, args.profile_s, int(round(link.get("goodput_kbps", 0))), args.rtt_ms,
               up_before, up_after, table))
    with open(os.path.join(HERE, "RESULTS.md"), "a") as f:
        f.write("\n" + text)
    if args.record:
        with open(os.path.join(ROOT, "bench", "RESULTS.md"), "a") as f:
            f.write("\n## Hybrid copy over an emulated WAN (issue 10)\n\n" + text)
    if failed:
        print("FAILED:\n  " + "\n  ".join(failed), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in ("proxy", "vm", "rtt"):
        sub = sys.argv[1]
        ap = argparse.ArgumentParser(prog="run.py " + sub)
        if sub == "proxy":
            ap.add_argument("--delay-ms", type=float, default=2.5)
            ap.add_argument("--map", action="append", default=[])
            proxy_main(ap.parse_args(sys.argv[2:]))
        elif sub == "rtt":
            ap.add_argument("--to", required=True)
            ap.add_argument("--n", type=int, default=50)
            rtt_main(ap.parse_args(sys.argv[2:]))
        else:
            ap.add_argument("--file", required=True)
            ap.add_argument("--writes-per-s", type=float, default=15)
            ap.add_argument("--reads-per-s", type=float, default=0)
            ap.add_argument("--threads", type=int, default=8)
            ap.add_argument("--pattern", action="store_true")
            ap.add_argument("--log", required=True)
            ap.add_argument("--ready", required=True)
            ap.add_argument("--seed", type=int, default=1)
            vm_main(ap.parse_args(sys.argv[2:]))
        sys.exit(0)
    if os.geteuid() != 0:
        sys.exit("needs root (namespaces, FUSE)")
    main()
