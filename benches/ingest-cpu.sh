#!/usr/bin/env bash
# One `hourlake ingest` run over a prefilled backlog: CPU (all threads), wall time,
# peak RSS and Parquet files written, measured when the last row is committed.
#
#   benches/ingest-cpu.sh BIN BOOTSTRAP APP_TOPIC,REC_TOPIC MESSAGES [extra ingest flags]
#
# Prefill the topics once with the ingest bench (it prints their names):
#   HOURLAKE_BENCH_ROUNDS=1 cargo bench --bench ingest -- throughput
# then alternate two builds, e.g. for i in 1 2 3 4 5; do for b in old new; do
# benches/ingest-cpu.sh /tmp/$b/hourlake 127.0.0.1:PORT APP,REC 5000000; done; done
# Each run uses a fresh consumer group and lake folder (deleted afterwards). "Committed"
# is `hourlake_ingest_committed_rows_total` over the event tables and dead letters,
# polled from the run's /metrics every 0.1 s; CPU is utime + stime of /proc/PID/stat.
set -euo pipefail
[ $# -ge 4 ] || { sed -n 2,13p "$0"; exit 2; }
bin=$1 bootstrap=$2 topics=$3 total=$4
shift 4
group=cpu-$(date +%s%N)
lake=${TMPDIR:-/tmp}/hourlake-cpu-$group
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
log=$lake.log
RUST_LOG=warn,deltalake_core::writer::stats=error "$bin" ingest --brokers "$bootstrap" \
  --topics "$topics" --group "$group" --lake "$lake" --metrics-addr "127.0.0.1:$port" "$@" \
  >/dev/null 2>"$log" &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -rf "$lake" "$log"' EXIT
start=$(date +%s.%N)
while :; do
  # Nothing to read until the metrics server is up.
  committed=$({ curl -s "127.0.0.1:$port/metrics" || true; } | awk '
    /^hourlake_ingest_committed_rows_total\{table="(engagement_events|recommendation_events|dead_letters)"\}/ { s += $2 }
    END { printf "%d", s }')
  [ "$committed" -ge "$total" ] && break
  if ! kill -0 $pid 2>/dev/null; then
    echo "ingest exited early:" >&2
    tail -20 "$log" >&2
    exit 1
  fi
  sleep 0.1
done
end=$(date +%s.%N)
read -r utime stime < <(awk '{ print $14, $15 }' "/proc/$pid/stat")
hwm_kib=$(awk '/^VmHWM/ { print $2 }' "/proc/$pid/status")
ticks=$(getconf CLK_TCK)
files=$(find "$lake" -name '*.parquet' -not -path '*_delta_log*' | wc -l)
python3 -c "
cpu = ($utime + $stime) / $ticks
print(f'cpu {cpu:.2f} s ({cpu * 1e6 / $total:.2f} µs/event) wall {$end - $start:.2f} s peak RSS {$hwm_kib / 1024:.0f} MiB files $files')"
