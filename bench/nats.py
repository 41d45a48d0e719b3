#!/usr/bin/env python3
"""NATS publishing under write load: a core-NATS subscriber to every tenant's subjects (the NATS
text protocol over a socket: no client library), and writers that PUT 1 KiB files into TENANTS
tenants.

  paced:  RATE writes/s in all for SECONDS; for each write, the time from its answer (the change
          committed) to its event reaching the subscriber: p50, p99, worst (negative when the
          message beat the HTTP answer).
  flood:  as many writes as WRITERS threads manage for SECONDS; the publish rate (events received
          over the time until the last one arrived) against the write rate (answers over the time
          until the last answer): 1.0 or more keeps up.

Usage: nats.py URL OPERATOR_KEY NATS_PORT paced|flood TENANTS SECONDS RATE|WRITERS
"""
import http.client, json, socket, statistics, sys, threading, time, urllib.parse

url, operator, nats_port, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
tenants, seconds, amount = int(sys.argv[5]), float(sys.argv[6]), int(sys.argv[7])
u = urllib.parse.urlparse(url)
BODY = b"x" * 1024


def call(conn, method, path, key, body=None, headers=None):
    h = {"Authorization": "Bearer " + key}
    h.update(headers or {})
    conn.request(method, path, body=body, headers=h)
    r = conn.getresponse()
    return r.status, r.read()


# Tenants, named so that this run's subjects are its own.
run = str(int(time.time()))[-6:]
keys = []
c = http.client.HTTPConnection(u.hostname, u.port)
for i in range(tenants):
    body = json.dumps({"slug": f"n{run}-{i}", "name": "nats bench", "tier": "enterprise",
                       "quotas": {"max_requests_per_minute": None}})
    status, out = call(c, "POST", "/v1/tenants", operator, body, {"Content-Type": "application/json"})
    if status != 201:
        raise SystemExit(f"creating a tenant: {status} {out[:200]!r}")
    keys.append(json.loads(out)["owner_key"])

received = {}  # path -> arrival time
arrived = threading.Event()
lock = threading.Lock()


def subscribe(ready):
    s = socket.create_connection(("127.0.0.1", nats_port))
    f = s.makefile("rb")
    f.readline()  # INFO
    s.sendall(b'CONNECT {"verbose":false,"pedantic":false,"headers":true,"name":"bench"}\r\n')
    s.sendall(b"SUB tenantry.> 1\r\nPING\r\n")
    while True:
        line = f.readline()
        if not line:
            return
        if line.startswith(b"PONG"):
            ready.set()
        elif line.startswith(b"PING"):
            s.sendall(b"PONG\r\n")
        elif line.startswith(b"HMSG") or line.startswith(b"MSG"):
            parts = line.split()
            total = int(parts[-1])
            data = f.read(total + 2)
            now = time.perf_counter()
            header_len = int(parts[-2]) if line.startswith(b"HMSG") else 0
            event = json.loads(data[header_len:total])
            with lock:
                received[event.get("path")] = now
            arrived.set()


ready = threading.Event()
threading.Thread(target=subscribe, args=(ready,), daemon=True).start()
ready.wait(10)

answered = {}  # path -> answer time
stop_at = time.perf_counter() + seconds


def writer(n, pace):
    conn = http.client.HTTPConnection(u.hostname, u.port)
    i = 0
    next_at = time.perf_counter()
    while True:
        now = time.perf_counter()
        if now >= stop_at:
            return
        if pace:
            if now < next_at:
                time.sleep(next_at - now)
            next_at += pace
        key = keys[(n + i) % len(keys)]
        path = f"/w{n}/{i}"
        status, _ = call(conn, "PUT", "/v1/files" + path, key, BODY)
        if status not in (200, 201):
            raise SystemExit(f"PUT: {status}")
        t = time.perf_counter()
        with lock:
            answered[path] = t
        i += 1


threads = 4 if mode == "paced" else amount
pace = threads / amount if mode == "paced" else None
started = time.perf_counter()
ws = [threading.Thread(target=writer, args=(n, pace)) for n in range(threads)]
for w in ws:
    w.start()
for w in ws:
    w.join()
last_answer = max(answered.values())
deadline = time.perf_counter() + 30
while time.perf_counter() < deadline:
    with lock:
        if all(p in received for p in answered):
            break
    time.sleep(0.01)
with lock:
    missing = [p for p in answered if p not in received]
if missing:
    raise SystemExit(f"{len(missing)} of {len(answered)} events never arrived")
if mode == "paced":
    lat = sorted((received[p] - answered[p]) * 1000 for p in answered)
    p99 = statistics.quantiles(lat, n=100, method="inclusive")[98]
    print(f"writes {len(lat)} ({len(lat) / seconds:.0f}/s); commit-to-subscriber p50 {statistics.median(lat):.1f} ms, "
          f"p99 {p99:.1f} ms, worst {lat[-1]:.1f} ms")
else:
    last_received = max(received[p] for p in answered)
    write_rate = len(answered) / (last_answer - started)
    publish_rate = len(answered) / (last_received - started)
    print(f"writes {len(answered)}: write rate {write_rate:.0f}/s, publish rate {publish_rate:.0f}/s, "
          f"ratio {publish_rate / write_rate:.2f}; last event {1000 * (last_received - last_answer):.0f} ms after the last answer")
