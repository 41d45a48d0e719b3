#!/usr/bin/env python3
"""Populates a running Tenantry for the HTTP benchmark and measures tenant creation.

Creates N tenants over one keep-alive connection (timing each POST /v1/tenants), puts the same
4 KiB file into each, and writes their owner keys, one per line, for the wrk scripts.
Usage: setup.py URL OPERATOR_KEY N KEYS_OUT FILE_4K SLUG_PREFIX [SPREAD_FILES]
With SPREAD_FILES=M, each tenant also gets /spread/1.txt .. /spread/M.txt (the same 4 KiB).
Prints one JSON line: {"tenants", "create_ms_p50", "create_ms_p90", "create_ms_p99"}.
"""
import http.client, json, sys, time, statistics, urllib.parse

url, op, n, keys_out, file_path, prefix = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
spread = int(sys.argv[7]) if len(sys.argv) > 7 else 0
u = urllib.parse.urlparse(url)
conn = http.client.HTTPConnection(u.hostname, u.port)
body4k = open(file_path, "rb").read()

def call(method, path, body=None, key=op, ctype="application/json"):
    conn.request(method, path, body=body, headers={"Authorization": "Bearer " + key, "Content-Type": ctype})
    r = conn.getresponse()
    data = r.read()
    if r.status >= 300:
        raise SystemExit(f"{method} {path}: {r.status} {data[:200]!r}")
    return data

times, keys = [], []
for i in range(n):
    body = json.dumps({"slug": f"{prefix}-{i:05d}", "tier": "enterprise"}).encode()
    t0 = time.perf_counter()
    data = call("POST", "/v1/tenants", body)
    times.append((time.perf_counter() - t0) * 1000)
    key = json.loads(data)["owner_key"]
    call("PUT", "/v1/files/bench.txt", body4k, key=key, ctype="text/plain")
    for j in range(1, spread + 1):
        call("PUT", f"/v1/files/spread/{j}.txt", body4k, key=key, ctype="text/plain")
    keys.append(key)
with open(keys_out, "w") as f:
    f.write("\n".join(keys) + "\n")
q = statistics.quantiles(times, n=100) if len(times) >= 2 else [times[0]] * 99
print(json.dumps({"tenants": n, "create_ms_p50": round(statistics.median(times), 3),
                  "create_ms_p90": round(q[89], 3), "create_ms_p99": round(q[98], 3)}))
