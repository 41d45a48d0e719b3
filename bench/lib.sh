# Shared by the bench scripts that load the spread pair: http.sh, order.sh, ab.sh, profile.sh (sourced,
# not run). The caller makes $WORK (a temp dir) and its own EXIT trap.
#   bench_serve PORT   starts Tenantry (TENANTRY_BIN, or the release build) with the operator key
#                      bench-operator on 127.0.0.1:PORT, data in $WORK/data; sets SERVER; waits
#                      until it answers; writes the 4 KiB file $WORK/file4k.
#   bench_drain PORT   waits (at most 3 minutes) until the log and usage tails are folded
#                      (tenantry_log_tail_entries and tenantry_usage_tail_rows 0); prints the milliseconds a fold was under way
#                      meanwhile (tenantry_log_tail_fold_milliseconds_total): what a PUT run is
#                      charged for the work its writes left.
#   bench_pair PORT N  the spread pair: 1 tenant with N files ($WORK/one.keys) and N tenants with
#                      one file each ($WORK/many.keys), then 2 s of rest.
bench_serve() {
  local port=$1
  # 3072 random bytes are exactly 4096 base64 characters (no second head: SIGPIPE under pipefail).
  head -c 3072 /dev/urandom | base64 -w0 > "$WORK/file4k"
  TENANTRY_ADMIN_KEY=bench-operator TENANTRY_LOG=warn "${TENANTRY_BIN:-./target/release/tenantry}" serve \
    --listen "127.0.0.1:$port" --data "$WORK/data" > "$WORK/serve.log" 2>&1 &
  SERVER=$!
  for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
}

bench_drain() {
  local url=http://127.0.0.1:$1/metrics start now
  bench_tail_state() { # "rows-in-the-tails fold-milliseconds-so-far"
    curl -sf "$url" |
      awk '/^tenantry_(log_tail_entries|usage_tail_rows) / {e+=$2}
           /^tenantry_log_tail_fold_milliseconds_total / {f=$2} END {print e+0, f+0}'
  }
  start=$(bench_tail_state | cut -d' ' -f2)
  for _ in $(seq 1800); do
    now=$(bench_tail_state)
    [ "${now% *}" = 0 ] && break
    sleep 0.1
  done
  [ "${now% *}" = 0 ] || echo "   (the tails were not folded within 3 minutes)" >&2
  echo $(( ${now#* } - start ))
}

bench_pair() {
  local url=http://127.0.0.1:$1 n=$2
  python3 bench/setup.py "$url" bench-operator 1 "$WORK/one.keys" "$WORK/file4k" single "$n" > /dev/null
  python3 bench/setup.py "$url" bench-operator "$n" "$WORK/many.keys" "$WORK/file4k" many > /dev/null
  sleep 2
}
