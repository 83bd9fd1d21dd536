"""The WAN's delay for bench/hybrid/run.py (tc has no netem here): a TCP relay that holds
every chunk for --delay-ms in each direction (`run.py proxy`), and the ping-pong probe
that measures the resulting RTT through it (`run.py rtt`). Each runs as its own process
inside the target's network namespace."""
import asyncio
import json
import socket
import time


# ----------------------------------------------------------------------------- proxy
def proxy_main(args):
    delay = args.delay_ms / 1000.0
    maps = []
    for m in args.map:
        lhs, rhs = m.split("=")
        lh, lp = lhs.rsplit(":", 1)
        if rhs == "echo":
            maps.append((lh, int(lp), None))
        else:
            rh, rp = rhs.rsplit(":", 1)
            maps.append((lh, int(lp), (rh, int(rp))))

    def nodelay(w):
        s = w.get_extra_info("socket")
        if s is not None:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    async def pump(reader, writer):
        # Each chunk leaves `delay` after it arrived; at most ~4 MiB is held (backpressure).
        q = asyncio.Queue(maxsize=256)
        loop = asyncio.get_running_loop()

        async def rx():
            try:
                while True:
                    data = await reader.read(65536)
                    await q.put((loop.time() + delay, data))
                    if not data:
                        return
            except Exception:
                await q.put((loop.time(), b""))

        async def tx():
            try:
                while True:
                    due, data = await q.get()
                    wait = due - loop.time()
                    if wait > 0:
                        await asyncio.sleep(wait)
                    if not data:
                        break
                    writer.write(data)
                    await writer.drain()
            except Exception:
                pass
            try:
                writer.close()
            except Exception:
                pass

        await asyncio.gather(rx(), tx())

    async def handle(reader, writer, upstream):
        nodelay(writer)
        if upstream is None:  # echo, delayed both ways like the rest
            await pump_echo(reader, writer)
            return
        try:
            ur, uw = await asyncio.open_connection(*upstream)
        except Exception:
            writer.close()
            return
        nodelay(uw)
        await asyncio.gather(pump(reader, uw), pump(ur, writer))

    async def pump_echo(reader, writer):
        # echo = a zero-length upstream: delay in, then delay out
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                await asyncio.sleep(2 * delay)
                writer.write(data)
                await writer.drain()
        except Exception:
            pass
        writer.close()

    async def main():
        servers = []
        for lh, lp, up in maps:
            servers.append(await asyncio.start_server(lambda r, w, up=up: handle(r, w, up), lh, lp,
                                                      reuse_address=True))
        print("proxy ready", flush=True)
        await asyncio.gather(*(s.serve_forever() for s in servers))

    asyncio.run(main())


def rtt_main(args):
    host, port = args.to.rsplit(":", 1)
    s = socket.create_connection((host, int(port)))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    samples = []
    for _ in range(args.n):
        t = time.perf_counter()
        s.sendall(b"x" * 64)
        got = 0
        while got < 64:
            got += len(s.recv(64 - got))
        samples.append((time.perf_counter() - t) * 1000)
        time.sleep(0.01)
    samples.sort()
    print(json.dumps({"rtt_ms_p50": samples[len(samples) // 2], "rtt_ms_min": samples[0]}))
