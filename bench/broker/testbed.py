"""Network-namespace testbed shared by the broker benchmarks (needs root, /dev/fuse).

Three hosts h1..h3, each a network namespace with one veth (eth0) to a bridge (br0) in
a switch namespace. Pieces:

  Testbed(build, tag, subnet, prefix, shaping)   namespaces, bridge, veths, shaping
  tb.shape(where, host, kind, mbit)              tc tbf or tc htb (one class at the rate)
                                                 on h's uplink (eth0 egress in h) or its
                                                 downlink (the bridge port towards h)
  tb.spawn / tb.stop                             processes inside a namespace, own group
  tb.start_migratefs(), tb.start_brokers(...)    the daemons, waiting until they answer
  tb.sysfs(host)                                 a sysfs mounted from inside h's namespace
                                                 (the broker's sys_root: link counters)
  tb.submit(tasks, ...)                          migratefs-scheduler submit, its report
  tb.migrate_direct(jobs, ...)                   start/poll/finish on the control sockets
  tb.iperf_server / tb.iperf_client              the tenant
  tb.cleanup()                                   processes, mounts, namespaces, files
  ask(socket, request)                           one JSON-lines request on a UNIX socket
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time


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


def wait(pred, timeout, step=0.1):
    end = time.time() + timeout
    while time.time() < end:
        try:
            if pred():
                return True
        except Exception:
            pass
        time.sleep(step)
    return False


def toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return json.dumps(str(v))


class Testbed:
    """shaping: list of (where, host, kind, mbit), where = "down" | "up", kind = "tbf" | "htb"."""

    def __init__(self, build, tag, subnet, prefix="broker-bench-", shaping=()):
        self.build = os.path.abspath(build)
        self.tag = tag
        self.subnet = subnet
        self.dir = tempfile.mkdtemp(prefix=prefix)
        self.procs = []
        self.hosts = {}
        self.mounts = []
        self.key = os.path.join(self.dir, "key")
        try:
            self._setup(shaping)
        except BaseException:
            self.cleanup()
            raise

    def _setup(self, shaping):
        sh("head -c 32 /dev/urandom | base64 > %s && chmod 600 %s" % (self.key, self.key))
        sw = self.sw = self.tag + "s"
        sh("ip netns add %s && ip -n %s link add br0 type bridge && ip -n %s link set br0 up && "
           "ip -n %s link set lo up && ip -n %s addr add %s.254/24 dev br0" % (sw, sw, sw, sw, sw, self.subnet))
        for i in (1, 2, 3):
            name, ns = "h%d" % i, "%sh%d" % (self.tag, i)
            a, b = "%sa%d" % (self.tag, i), "%sb%d" % (self.tag, i)
            addr = "%s.%d" % (self.subnet, i)
            d = os.path.join(self.dir, name)
            os.makedirs(d + "/src")
            os.makedirs(d + "/mnt")
            self.hosts[name] = {"ns": ns, "addr": addr, "dir": d, "port": b}
            sh("ip netns add %s && ip link add %s type veth peer name %s && ip link set %s netns %s && "
               "ip link set %s netns %s" % (ns, a, b, a, ns, b, sw))
            sh("ip -n %s link set %s name eth0 && ip -n %s addr add %s/24 dev eth0 && ip -n %s link set eth0 up"
               " && ip -n %s link set lo up" % (ns, a, ns, addr, ns, ns))
            sh("ip -n %s link set %s master br0 && ip -n %s link set %s up" % (sw, b, sw, b))
        for where, host, kind, mbit in shaping:
            self.shape(where, host, kind, mbit)
        wait(lambda: sh("bridge -n %s link show" % sw).count("state forwarding") == 3, 10)

    def link(self, where, host):
        """(namespace, device) of h's uplink ("up": eth0 in h) or downlink ("down": bridge port)."""
        h = self.hosts[host]
        return (h["ns"], "eth0") if where == "up" else (self.sw, h["port"])

    def shape(self, where, host, kind, mbit):
        ns, dev = self.link(where, host)
        if kind == "tbf":
            sh("tc -n %s qdisc add dev %s root tbf rate %dmbit burst 32kb latency 400ms" % (ns, dev, mbit))
        elif kind == "htb":
            # One class at the link rate, everything in it (default 10), a bounded FIFO below.
            sh("tc -n %s qdisc add dev %s root handle 1: htb default 10 && "
               "tc -n %s class add dev %s parent 1: classid 1:10 htb rate %dmbit ceil %dmbit burst 32kb cburst 32kb && "
               "tc -n %s qdisc add dev %s parent 1:10 handle 10: pfifo limit 300"
               % (ns, dev, ns, dev, mbit, mbit, ns, dev))
        else:
            raise ValueError("shaping kind %r: tbf or htb" % kind)

    def qdisc_stats(self, where, host):
        ns, dev = self.link(where, host)
        return json.loads(sh("tc -j -s -n %s qdisc show dev %s" % (ns, dev)))

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

    def tx_bytes(self, where, host):
        ns, dev = self.link(where, host)
        return json.loads(sh("ip -j -s -n %s link show %s" % (ns, dev)))[0]["stats64"]["tx"]["bytes"]

    def sysfs(self, host):
        """A sysfs mounted from inside h's namespace: its class/net shows h's eth0."""
        h = self.hosts[host]
        if "sys" not in h:
            path = h["dir"] + "/sys"
            os.makedirs(path, exist_ok=True)
            sh("nsenter --net=/var/run/netns/%s -- mount -t sysfs sysfs %s" % (h["ns"], path))
            self.mounts.append(path)
            h["sys"] = path
        return h["sys"]

    def start_migratefs(self):
        for name, h in self.hosts.items():
            h["control"] = h["dir"] + "/control.sock"
            h["mfs"] = self.spawn([self.build + "/migratefs", h["dir"] + "/src", h["dir"] + "/mnt", "-f", "-o",
                                   "control=%s,listen=%s:7200,keyfile=%s" % (h["control"], h["addr"], self.key)],
                                  h["ns"], h["dir"] + "/migratefs.log")
            if not wait(lambda: ask(h["control"], {"op": "list"})["ok"], 15):
                raise RuntimeError(name + " migratefs did not start")

    def start_brokers(self, settings, links=None):
        """settings: top-level broker.toml keys (value = TOML text, in order); links: host ->
        list of [[link]] tables (dicts). Every broker lists the others as peers."""
        links = links or {}
        for name, h in self.hosts.items():
            h["bsock"] = h["dir"] + "/broker.sock"
            text = ('host = "%s"\ncontrol_socket = "%s"\nlisten = "%s:7100"\nsocket = "%s"\nkeyfile = "%s"\n'
                    % (name, h["control"], h["addr"], h["bsock"], self.key))
            text += "".join("%s = %s\n" % kv for kv in settings.items())
            for table in links.get(name, []):
                text += "[[link]]\n" + "".join("%s = %s\n" % (k, toml_value(v)) for k, v in table.items())
            text += "".join('[[peer]]\nname = "%s"\naddress = "%s:7100"\n' % (n, o["addr"])
                            for n, o in self.hosts.items() if n != name)
            with open(h["dir"] + "/broker.toml", "w") as f:
                f.write(text)
            h["broker"] = self.spawn([self.build + "/migratefs-broker", "--config", h["dir"] + "/broker.toml"],
                                     h["ns"], h["dir"] + "/broker.log")
            if not wait(lambda: ask(h["bsock"], {"op": "status"})["ok"], 10):
                raise RuntimeError(name + " broker did not start")

    def submit(self, tasks, timeout, extra=(), poll=0.5):
        """Writes tasks (list of dicts of [[task]] fields) and the topology (one switch), runs
        migratefs-scheduler submit in the switch's namespace until done; returns its report."""
        path = self.dir + "/tasks.toml"
        with open(path, "w") as f:
            for t in tasks:
                f.write("[[task]]\n" + "".join("%s = %s\n" % (k, toml_value(v)) for k, v in t.items()))
        topology = self.dir + "/topology.toml"
        with open(topology, "w") as f:
            f.write('[[switch]]\nname = "sw"\n')
            for n, h in self.hosts.items():
                f.write('[[host]]\nname = "%s"\nswitch = "sw"\nbroker = "%s:7100"\nmigratefs = "%s:7200"\n'
                        % (n, h["addr"], h["addr"]))
        report = self.dir + "/report.json"
        p = self.spawn([self.build + "/migratefs-scheduler", "submit", "--tasks", path, "--topology", topology,
                        "--keyfile", self.key, "--poll", str(poll), "--timeout", str(timeout), "-o", report]
                       + list(extra), self.sw, self.dir + "/scheduler.log")
        p.wait()
        return json.load(open(report))

    def migrate_direct(self, jobs, target, timeout, poll=0.5):
        """Without brokers: jobs = [(vm, source host, images, extra start fields)], all
        started at once to `target`, each finished once completed. Returns
        ({vm: seconds from the first start to its finish}, {vm: (host, id)})."""
        start = time.time()
        ids = {}
        for vm, src, images, extra in jobs:
            req = {"op": "start", "images": images, "target": self.hosts[target]["addr"] + ":7200"}
            req.update(extra)
            a = ask(self.hosts[src]["control"], req)
            if not a.get("ok"):
                raise RuntimeError("start %s: %s" % (vm, a))
            ids[vm] = (src, a["id"])
        results, pending = {}, dict(ids)
        while pending and time.time() - start < timeout:
            for vm, (src, mid) in list(pending.items()):
                if ask(self.hosts[src]["control"], {"op": "query_completion", "id": mid}).get("completed"):
                    ask(self.hosts[src]["control"], {"op": "finish", "id": mid}, timeout=60)
                    results[vm] = time.time() - start
                    del pending[vm]
            time.sleep(poll)
        return results, ids

    def iperf_server(self, host, port, log, once=False, as_json=False):
        argv = ["iperf3", "-s", "-B", self.hosts[host]["addr"], "-p", str(port)]
        argv += ["-1"] if once else []
        argv += ["-J"] if as_json else []
        return self.spawn(argv, self.hosts[host]["ns"], log)

    def iperf_client(self, src, dst, port, rate, seconds, log, as_json=True, interval=None):
        argv = ["iperf3", "-c", self.hosts[dst]["addr"], "-p", str(port), "-b", rate, "-t", str(seconds)]
        argv += ["-i", str(interval)] if interval else []
        argv += ["-J"] if as_json else []
        return self.spawn(argv, self.hosts[src]["ns"], log)

    def cleanup(self):
        for p in reversed(self.procs):
            try:
                self.stop(p)
            except Exception:
                pass
        for h in self.hosts.values():
            sh("umount -l %s/mnt" % h["dir"], False)
        for m in self.mounts:
            sh("umount -l %s" % m, False)
        for h in self.hosts.values():
            sh("ip netns del %s" % h["ns"], False)
        sh("ip netns del %s" % self.sw, False)
        shutil.rmtree(self.dir, ignore_errors=True)
