#!/usr/bin/env python3
"""Tenant B's write latency alone, then while tenant A attacks the server in one of the ways
hostile testing found (docs/SECURITY.md, "One tenant against the others").

    attack.py URL A_KEY B_KEY MODE SECONDS [ROUNDS]

MODE:
  large-writes     A writes 1 MB memory values of distinct words from 16 connections
  stalled-uploads  A opens 64 uploads that declare 64 MiB and send a few bytes, and keeps them open
  streams          A opens 256 event streams and keeps them open
  glob             A's webhook glob made to backtrack, then A writes paths that match its length

B puts a 1-byte file in a loop from 2 connections (and, for stalled-uploads, a 100 KB one: bodies
over 64 KiB count against the body-memory budget). Each round measures B alone, then B under
attack; the verdict compares the medians of the rounds' p99s (goal: at most 2x).
Prints one line per round and a verdict line; exits 0 either way (a benchmark, not a test).
"""
import http.client
import json
import multiprocessing
import random
import socket
import statistics
import sys
import threading
import time
import urllib.parse


def conn(url):
    u = urllib.parse.urlparse(url)
    return http.client.HTTPConnection(u.hostname, u.port, timeout=300)


def request(c, method, path, key, body=None, headers=None):
    h = {"Authorization": f"Bearer {key}"}
    h.update(headers or {})
    c.request(method, path, body=body, headers=h)
    r = c.getresponse()
    data = r.read()
    return r.status, data


def words(n, rng):
    return " ".join("w%x%x" % (rng.getrandbits(32), i) for i in range(n))


def b_latencies(url, key, seconds, size, stop_at=None):
    """B's PUT latencies (ms) from 2 connections for `seconds`."""
    lat, lock = [], threading.Lock()
    body = b"x" * size
    deadline = time.monotonic() + seconds

    def run(n):
        c = conn(url)
        i = 0
        while time.monotonic() < deadline:
            t = time.monotonic()
            status, _ = request(c, "PUT", f"/v1/files/b/{n}-{i % 50}", key, body)
            took = (time.monotonic() - t) * 1000
            if status >= 300:
                raise SystemExit(f"B's PUT answered {status}")
            with lock:
                lat.append(took)
            i += 1

    threads = [threading.Thread(target=run, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return lat


def p(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))]


class Attack:
    def __init__(self, url, key, mode):
        self.url, self.key, self.mode = url, key, mode
        self.stop = multiprocessing.Event()
        self.done = multiprocessing.Value("l", 0)
        self.threads, self.sockets = [], []

    def start(self):
        getattr(self, "start_" + self.mode.replace("-", "_"))()

    def start_large_writes(self):
        # Made before the clock runs: the load generator must not compete with B's client.
        rng = random.Random(1)
        values = [json.dumps(words(60_000, rng)).encode() for _ in range(8)]  # ~1 MB of distinct words

        def run(n):
            c = conn(self.url)
            i = 0
            while not self.stop.is_set():
                request(c, "PUT", f"/v1/memory/bulk/{n}-{i % 8}", self.key, values[(n + i) % 8])
                self.count()
                i += 1

        self.spawn(run, 16)

    def hold(self, n, request_of):
        """Opens n connections, sends request_of(i) on each and keeps them open."""
        u = urllib.parse.urlparse(self.url)
        for i in range(n):
            s = socket.create_connection((u.hostname, u.port))
            s.sendall(request_of(i).encode())
            self.sockets.append(s)

    def start_stalled_uploads(self):
        self.hold(64, lambda i: (
            f"PUT /v1/files/stall/{i} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {self.key}\r\n"
            f"Content-Length: {64 << 20}\r\n\r\na few bytes"
        ))

    def start_streams(self):
        self.hold(256, lambda _: (
            f"GET /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {self.key}\r\n"
            "Accept: text/event-stream\r\n\r\n"
        ))

    def start_glob(self):
        c = conn(self.url)
        glob = "/" + "**a" * 16 + "b"
        body = json.dumps({"url": "http://127.0.0.1:9/hook", "events": ["file.written"], "path_glob": glob})
        status, data = request(c, "POST", "/v1/webhooks", self.key, body, {"Content-Type": "application/json"})
        if status >= 300:
            print(f"# the glob was refused ({status}): {data.decode()[:200]}")

        def run(n):
            c = conn(self.url)
            i = 0
            while not self.stop.is_set():
                request(c, "PUT", "/v1/files/" + "a" * 200 + f"{n}{i % 8}", self.key, b"x")
                self.count()
                i += 1

        self.spawn(run, 4)

    def count(self):
        with self.done.get_lock():
            self.done.value += 1

    def spawn(self, target, n):
        # In processes of their own: threads of this one would take B's client's turn (the GIL).
        for i in range(n):
            t = multiprocessing.Process(target=target, args=(i,), daemon=True)
            t.start()
            self.threads.append(t)

    def end(self):
        self.stop.set()
        for s in self.sockets:
            s.close()
        for t in self.threads:
            t.join(timeout=600)
        self.sockets, self.threads = [], []


def main():
    url, a_key, b_key, mode, seconds = sys.argv[1:6]
    rounds = int(sys.argv[6]) if len(sys.argv) > 6 else 3
    seconds = float(seconds)
    size = 100_000 if mode == "stalled-uploads" else 1
    alones, withs = [], []
    for r in range(1, rounds + 1):
        alone = b_latencies(url, b_key, seconds, size)
        attack = Attack(url, a_key, mode)
        attack.start()
        time.sleep(1)
        under = b_latencies(url, b_key, seconds, size)
        attack.end()
        alones.append(p(alone, 0.99))
        withs.append(p(under, 0.99))
        print(
            f"{mode} round {r}: B alone p50 {p(alone, 0.5):.2f} ms p99 {p(alone, 0.99):.2f} ms ({len(alone)} requests); "
            f"under attack p50 {p(under, 0.5):.2f} ms p99 {p(under, 0.99):.2f} ms ({len(under)} requests); "
            f"A's writes done {attack.done.value}",
            flush=True,
        )
    a, w = statistics.median(alones), statistics.median(withs)
    print(f"{mode}: median p99 alone {a:.2f} ms, under attack {w:.2f} ms: ratio {w / a:.2f} (goal <= 2)")


if __name__ == "__main__":
    main()
