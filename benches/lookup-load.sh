#!/usr/bin/env bash
# Recommendation lookups under load: `hourlake serve` (release) over a bench lake, and
# wrk (Debian package `wrk`) as a separate load generator at increasing concurrency.
#   benches/lookup-load.sh LAKE [SECONDS]
# LAKE: a lake built by `cargo bench --bench query` (it prints where it kept it).
set -euo pipefail
cd "$(dirname "$0")/.."
LAKE="$1"
SECONDS_PER_STEP="${2:-15}"
# HOURLAKE_BIN: an already built release binary (e.g. the one `cargo bench` built).
BIN="${HOURLAKE_BIN:-}"
if [ -z "$BIN" ]; then cargo build --release --locked --bin hourlake >&2; BIN=target/release/hourlake; fi
LOG=$(mktemp)
"$BIN" serve --lake "$LAKE" --http 127.0.0.1:0 2>"$LOG" &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do
  ADDR=$(grep -o 'serving SQL over HTTP on http://[0-9.:]*' "$LOG" | sed 's#.*http://##' || true)
  [ -n "$ADDR" ] && break
  sleep 0.1
done
# Wait for the index to load (503 until then).
until [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$ADDR/v1/users/user-1/recommendations")" = 200 ]; do sleep 0.5; done
echo "index loaded; server at $ADDR (RSS $(ps -o rss= -p $SERVER) KiB, peak $(awk '/VmHWM/ {print $2}' /proc/$SERVER/status) KiB)"
for CONNECTIONS in 2 4 16 64; do
  echo "== $CONNECTIONS connections, up to 2 wrk threads, ${SECONDS_PER_STEP}s"
  wrk -t"$(( CONNECTIONS < 2 ? 1 : 2 ))" -c"$CONNECTIONS" -d"${SECONDS_PER_STEP}s" --latency -s benches/lookup.lua "http://$ADDR" \
    | grep -E 'Requests/sec|Latency  |50%|90%|99%|requests in'
done
# Memory after the load: resident now, and the peak over the server's life (loading included).
echo "after the load: RSS $(ps -o rss= -p $SERVER) KiB, peak $(awk '/VmHWM/ {print $2}' /proc/$SERVER/status) KiB"
