#!/usr/bin/env python3
"""The client of scripts/bench-load.sh: PORT RATE SECONDS IMAGE_DIR.

Sends RATE requests a second for SECONDS to 127.0.0.1:PORT (`GET /item/N`), on a fixed
schedule, alternately on a new connection and on one of a few kept-alive connections;
meanwhile it watches IMAGE_DIR and reads each new image's freeze time from CRIU's
`stats-dump`. Prints failed requests, latency percentiles outside and during
checkpoints, and each checkpoint's freeze time.
"""

import http.client
import os
import queue
import sys
import threading
import time

port, rate, seconds, image = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
WORKERS = 16  # per kind: enough that one request frozen for a while delays no other


def varints(data):
    """(field, value) of each varint field of a protobuf message."""
    i = 0
    while i < len(data):
        key, i = varint(data, i)
        if key & 7 == 0:
            value, i = varint(data, i)
            yield key >> 3, value
        elif key & 7 == 2:
            length, i = varint(data, i)
            i += length
        else:
            return


def varint(data, i):
    shift = value = 0
    while True:
        b = data[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return value, i


def frozen_ms(path):
    """DumpStatsEntry.frozen_time (field 2, µs) of a `stats-dump`: two magics, a size,
    then StatsEntry whose field 1 is the dump's entry."""
    with open(path, "rb") as f:
        data = f.read()
    body = data[12:]
    if len(body) < 2 or body[0] != 0x0A:
        return None
    length, start = varint(body, 1)
    fields = dict(varints(body[start : start + length]))
    return fields.get(2, 0) / 1000


def watch(stop, checkpoints):
    """Each new image: (published at, freeze ms)."""
    seen = None
    while not stop.is_set():
        try:
            mtime = os.stat(os.path.join(image, "crac-manifest")).st_mtime
            if mtime != seen:
                if seen is not None:
                    checkpoints.append((mtime, frozen_ms(os.path.join(image, "stats-dump"))))
                seen = mtime
        except (OSError, IndexError):
            pass
        time.sleep(0.01)


def worker(keep_alive, jobs, results):
    connection = None
    while True:
        job = jobs.get()
        if job is None:
            return
        n, due = job
        delay = due - time.time()
        if delay > 0:
            time.sleep(delay)
        start = time.time()
        error = None
        try:
            if connection is None or not keep_alive:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            connection.request("GET", f"/item/{n}")
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                error = f"status {response.status}"
            if not keep_alive:
                connection.close()
        except Exception as e:  # every failure counts, whatever it is
            error = repr(e)
            connection = None
        results.append((start, time.time() - start, keep_alive, error))


def percentile(values, p):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]


def main():
    stop = threading.Event()
    checkpoints, results = [], []
    watcher = threading.Thread(target=watch, args=(stop, checkpoints))
    watcher.start()
    deadline = time.time() + 120
    while True:  # the service answers (the first run is checkpointed and restored first)
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("GET", "/item/0")
            if c.getresponse().status == 200:
                break
        except OSError:
            pass
        if time.time() > deadline:
            sys.exit("the service did not answer within 120 s")
        time.sleep(0.2)
    checkpoints.clear()
    queues = {kind: queue.Queue() for kind in (False, True)}
    threads = [
        threading.Thread(target=worker, args=(kind, queues[kind], results))
        for kind in (False, True)
        for _ in range(WORKERS)
    ]
    for t in threads:
        t.start()
    t0 = time.time() + 0.5
    total = int(rate * seconds)
    for n in range(total):
        queues[n % 2 == 1].put((n, t0 + n / rate))
    for kind in (False, True):
        for _ in range(WORKERS):
            queues[kind].put(None)
    for t in threads:
        t.join()
    stop.set()
    watcher.join()
    report(results, checkpoints, total)


def report(results, checkpoints, total):
    failed = [r for r in results if r[3]]
    print(f"requests: {total} ({rate:g}/s for {seconds:g} s), failed: {len(failed)}")
    for r in failed[:10]:
        print(f"  failed ({'keep-alive' if r[2] else 'new connection'}): {r[3]}")
    # A request is "during a checkpoint" if it was under way in the second before an
    # image was published (the freeze ends right after publishing).
    def near(r, at, f):
        return r[0] <= at + 0.2 and r[0] + r[1] >= at - max(1.0, (f or 0) / 1000)

    def during(r):
        return any(near(r, at, f) for at, f in checkpoints)

    ok = [r for r in results if not r[3]]
    outside = [r[1] * 1000 for r in ok if not during(r)]
    inside = [r[1] * 1000 for r in ok if during(r)]
    for name, values in (("all", [r[1] * 1000 for r in ok]), ("outside checkpoints", outside), ("during checkpoints", inside)):
        print(
            f"latency {name}: n={len(values)} p50 {percentile(values, 0.5):.1f} ms, "
            f"p99 {percentile(values, 0.99):.1f} ms, max {max(values, default=float('nan')):.1f} ms"
        )
    frozen = [f for _, f in checkpoints if f is not None]
    print(
        f"checkpoints: {len(checkpoints)}, freeze time (CRIU frozen_time) ms: "
        + ", ".join(f"{f:.0f}" for f in frozen)
    )
    p99_outside = percentile(outside, 0.99)
    if frozen and inside:
        bump = max(inside) - p99_outside
        print(
            f"latency bump at a checkpoint (max during - p99 outside): {bump:.0f} ms; "
            f"longest freeze + 20 ms: {max(frozen) + 20:.0f} ms"
        )
        # Each checkpoint against its own freeze: the goal is bump <= freeze + 20 ms.
        each = []
        for at, f in checkpoints:
            slowest = max((r[1] * 1000 for r in ok if near(r, at, f)), default=None)
            if f is not None and slowest is not None:
                each.append((slowest - p99_outside, f))
        met = sum(1 for bump, f in each if bump <= f + 20)
        print(
            f"per checkpoint, bump - freeze (ms): "
            + ", ".join(f"{bump - f:+.0f}" for bump, f in each)
            + f"; within freeze + 20 ms: {met} of {len(each)}"
        )


main()
