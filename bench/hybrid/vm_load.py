"""The "VM" of bench/hybrid/run.py (`run.py vm`): an open-loop Poisson generator of
4 KiB O_DIRECT random writes (and, on the target, reads) through a mount, logging every
completion for the byte check and the latency columns."""
import json
import mmap
import os
import random
import signal
import sys
import threading
import time

IO = 4096


# -------------------------------------------------------------------------------- vm
def vm_main(args):
    """Open-loop Poisson 4 KiB O_DIRECT writes (and reads) on one file until SIGTERM."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    fd = None
    for _ in range(100):
        try:
            fd = os.open(args.file, os.O_RDWR | os.O_DIRECT)
            break
        except OSError as e:
            err = e
            time.sleep(0.05)
    if fd is None:
        print(json.dumps({"error": "open: %s" % err}), file=sys.stderr)
        sys.exit(1)
    size = os.fstat(fd).st_size
    slots = size // IO
    pattern = (b"HYBRID-TARGET-WRITE-" * 205)[:IO]
    lock = threading.Lock()
    out = {"writes": [], "reads": [], "write_errors": [], "read_errors": [], "zero_reads": 0,
           "write_lat": []}
    wq, rq = [], []
    wcv, rcv = threading.Condition(), threading.Condition()

    def dispatcher(rate, q, cv, seed):
        rnd = random.Random(seed)
        t = time.time()
        while not stop.is_set():
            t += rnd.expovariate(rate)
            wait = t - time.time()
            if wait > 0 and stop.wait(wait):
                break
            with cv:
                q.append((t, rnd.randrange(slots) * IO))
                cv.notify()
        with cv:
            cv.notify_all()

    def worker(kind, q, cv):
        buf = mmap.mmap(-1, IO)
        while True:
            with cv:
                while not q and not stop.is_set():
                    cv.wait(0.2)
                if stop.is_set():  # the VM pauses: nothing new is issued, in-flight I/O ends
                    out["dropped"] = out.get("dropped", 0) + len(q)
                    q.clear()
                    return
                sched, off = q.pop(0)
            issued = time.time()
            try:
                if kind == "w":
                    buf.seek(0)
                    buf.write(pattern if args.pattern else os.urandom(IO))
                    n = os.pwrite(fd, buf, off)
                    done = time.time()
                    with lock:
                        if n != IO:
                            out["write_errors"].append([off, "short %d" % n])
                        else:
                            out["writes"].append(off)
                            out["write_lat"].append([sched, done - sched, done - issued])
                else:
                    n = os.preadv(fd, [buf], off)
                    done = time.time()
                    with lock:
                        if n != IO:
                            out["read_errors"].append([off, "short %d" % n])
                        else:
                            out["reads"].append([sched, done - sched, done - issued])
                            if buf[:] == b"\0" * IO:
                                out["zero_reads"] += 1
            except OSError as e:
                with lock:
                    out["write_errors" if kind == "w" else "read_errors"].append([off, str(e)])

    threads = []
    seed = args.seed
    if args.writes_per_s > 0:
        threads.append(threading.Thread(target=dispatcher, args=(args.writes_per_s, wq, wcv, seed)))
        threads += [threading.Thread(target=worker, args=("w", wq, wcv)) for _ in range(args.threads)]
    if args.reads_per_s > 0:
        threads.append(threading.Thread(target=dispatcher, args=(args.reads_per_s, rq, rcv, seed + 1)))
        threads += [threading.Thread(target=worker, args=("r", rq, rcv)) for _ in range(args.threads)]
    for t in threads:
        t.start()
    with open(args.ready, "w") as f:
        f.write("%f\n" % time.time())
    while not stop.wait(0.2):
        pass
    for t in threads:
        t.join()
    os.close(fd)
    out["stopped_at"] = time.time()
    with open(args.log, "w") as f:
        json.dump(out, f)
