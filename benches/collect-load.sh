#!/usr/bin/env bash
# The event collector under load (issue 19): `hourlake collect` (release) in front of the
# local Kafka broker (scripts/kafka, same machine), wrk (Debian package `wrk`) as the
# load generator, at batch sizes 1, 100 and 1 000 events per request; then `hourlake
# produce` writing the same number of events straight to Kafka, for comparison.
#   benches/collect-load.sh [SECONDS] [CONNECTIONS]
# HOURLAKE_BIN: an already built release binary (default: builds target/release/hourlake).
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_STEP="${1:-20}"
CONNECTIONS="${2:-16}"
BIN="${HOURLAKE_BIN:-}"
if [ -z "$BIN" ]; then cargo build --release --locked --bin hourlake >&2; BIN=target/release/hourlake; fi
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
BROKERS=$(scripts/kafka start)
RUN="bench$(date +%s)"
APP="$RUN-app" REC="$RUN-rec"
WORK=$(mktemp -d)
LOG="$WORK/collect.log"
"$BIN" collect --brokers "$BROKERS" --collect-http 127.0.0.1:0 --partitions 4 \
  --engagement-topic "$APP" --recommendation-topic "$REC" 2>"$LOG" &
COLLECTOR=$!
trap 'kill $COLLECTOR 2>/dev/null || true; rm -rf "$WORK"' EXIT
for _ in $(seq 1 300); do
  ADDR=$(grep -o 'collecting events on http://[0-9.:]*' "$LOG" | sed 's#.*http://##' || true)
  [ -n "$ADDR" ] && break
  sleep 0.1
done
[ -n "$ADDR" ] || { cat "$LOG" >&2; exit 1; }
echo "collector at $ADDR, Kafka at $BROKERS; $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"

for BATCH in 1 100 1000; do
  BODY="$WORK/batch-$BATCH.json"
  python3 - "$BATCH" "$BODY" <<'PY'
import json, sys, time, uuid
n, path = int(sys.argv[1]), sys.argv[2]
now = int(time.time() * 1000)
kinds = ["screen_view", "click", "session_start", "rec_impression", "search"]
events = [{"event_id": str(uuid.uuid4()), "event_type": kinds[i % len(kinds)],
           "event_time": now - i, "user_id": f"user-{i % 997}", "screen": "home",
           "device": {"type": "phone", "os": "ios", "app_version": "5.2.0"},
           "country": "DE", "session_id": f"s-{i % 31}", "item_id": f"item-{i % 50}",
           "model_version": "m1", "surface": "home"} for i in range(n)]
open(path, "w").write(json.dumps(events))
PY
  ACCEPTED=$(curl -s "http://$ADDR/v1/events" --data-binary @"$BODY" | python3 -c 'import json,sys; print(json.load(sys.stdin)["accepted"])')
  [ "$ACCEPTED" = "$BATCH" ] || { echo "batch of $BATCH: only $ACCEPTED accepted" >&2; exit 1; }
  echo "== batch $BATCH events ($(stat -c %s "$BODY") bytes), $CONNECTIONS connections, ${SECONDS_PER_STEP}s"
  OUT=$(BODY_FILE="$BODY" wrk -t2 -c"$CONNECTIONS" -d"${SECONDS_PER_STEP}s" --latency -s benches/collect.lua "http://$ADDR")
  echo "$OUT" | grep -E 'Requests/sec|Latency  |50%|99%|requests in|Non-2xx|Socket errors' || true
  RPS=$(echo "$OUT" | awk '/Requests\/sec/ {print $2}')
  python3 -c "print(f'   events/s: {float(\"$RPS\") * $BATCH:,.0f}')"
done
echo "collector RSS $(ps -o rss= -p $COLLECTOR) KiB"
kill $COLLECTOR; wait $COLLECTOR 2>/dev/null || true

COUNT=${PRODUCE_COUNT:-2000000}
echo "== hourlake produce: $COUNT generated events straight to Kafka (acks=all, idempotent)"
"$BIN" produce --brokers "$BROKERS" --topic "$APP" --rec-topic "$REC" --count "$COUNT" --seed 7 2>/dev/null \
  | python3 -c 'import json,sys; r=json.load(sys.stdin); print("   %d events in %.2f s: %.0f events/s" % (r["sent"], r["elapsed_s"], r["sent"] / r["elapsed_s"]))'
