#!/usr/bin/env python3
"""Times how long a key revoked on one node stays usable on another (several nodes on one
database): for each of COUNT keys, creates it on node A, waits until node B accepts it, revokes it
on A, and polls B until it refuses it. Prints the propagation's p50, p99 and worst in ms.
Usage: revocation.py URL_A URL_B OWNER_KEY COUNT
"""
import http.client, json, statistics, sys, time, urllib.parse

url_a, url_b, owner, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])


def connection(url):
    u = urllib.parse.urlparse(url)
    return http.client.HTTPConnection(u.hostname, u.port)


a, b = connection(url_a), connection(url_b)


def call(conn, method, path, key, body=None):
    conn.request(method, path, body=body, headers={"Authorization": "Bearer " + key, "Content-Type": "application/json"})
    r = conn.getresponse()
    return r.status, r.read()


def until(conn, key, status):
    start = time.perf_counter()
    while True:
        got, _ = call(conn, "GET", "/v1/whoami", key)
        if got == status:
            return time.perf_counter() - start
        if time.perf_counter() - start > 10:
            raise SystemExit(f"no {status} within 10 s (last {got})")


took = []
for i in range(count):
    status, body = call(a, "POST", "/v1/keys", owner, json.dumps({"name": f"revoked-{i}", "role": "reader"}))
    if status != 201:
        raise SystemExit(f"creating a key: {status} {body[:200]!r}")
    created = json.loads(body)
    until(b, created["key"], 200)
    status, _ = call(a, "DELETE", "/v1/keys/" + created["id"], owner)
    if status != 204:
        raise SystemExit(f"revoking a key: {status}")
    took.append(until(b, created["key"], 401) * 1000)
took.sort()
# Inclusive: a percentile of the samples themselves, never past the worst.
p99 = statistics.quantiles(took, n=100, method="inclusive")[98] if len(took) > 1 else took[0]
print(f"p50 {statistics.median(took):.1f} ms, p99 {p99:.1f} ms, worst {took[-1]:.1f} ms ({len(took)} keys)")
