#!/usr/bin/env python3
"""Dashboard views over HTTP, alternating builds on one lake (results in benches/RESULTS.md).

    python3 benches/dashboard_views.py LAKE RUNS ROUNDS BIN [BIN ...]

LAKE: a lake built by `cargo bench --bench query` (it keeps it). For each of ROUNDS
rounds, each BIN in turn runs `hourlake serve` over LAKE (result cache off), waits for
its recommendation index to load (so loading does not share the cores with the timed
queries), runs the dashboard queries of benches/query.rs over the last day, the last 7
days and every day of the lake (RUNS timed runs each after one warm-up), and stops.
Prints, per build and query, the median over rounds of each round's p50 and p95.
"""

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

QUERIES = [
    ("hourly active users", "SELECT event_date, event_hour, active_users, sessions FROM hourly_engagement WHERE event_date >= DATE '{from}' ORDER BY 1, 2"),
    ("daily active users", "SELECT event_date, active_users FROM daily_active_users WHERE event_date >= DATE '{from}' ORDER BY 1"),
    ("session length avg/p95", "SELECT event_date, sum(sessions) AS sessions, avg(avg_session_length_ms) AS avg_ms, max(p95_session_length_ms) AS p95_ms FROM hourly_engagement WHERE event_date >= DATE '{from}' GROUP BY 1 ORDER BY 1"),
    ("installs, purchases, revenue", "SELECT event_date, sum(installs) AS installs, sum(purchases) AS purchases, sum(revenue) AS revenue FROM hourly_engagement WHERE event_date >= DATE '{from}' GROUP BY 1 ORDER BY 1"),
    ("CTR by model and surface", "SELECT model_version, surface, sum(clicks) * 1.0 / sum(impressions) AS ctr FROM recommendation_ctr WHERE event_date >= DATE '{from}' GROUP BY 1, 2 ORDER BY 1, 2"),
]


def post(base, sql):
    body = json.dumps({"sql": sql, "format": "json"}).encode()
    req = urllib.request.Request(base + "/v1/sql", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read())


def start(binary, lake, config):
    log = tempfile.NamedTemporaryFile(prefix="serve-", suffix=".log", delete=False)
    proc = subprocess.Popen([binary, "serve", "--lake", lake, "--http", "127.0.0.1:0", "--config", config],
                            stdout=subprocess.DEVNULL, stderr=log)
    addr = None
    for _ in range(600):
        text = open(log.name, errors="replace").read()
        m = re.search(r"serving SQL over HTTP on http://([0-9.:]+)", text)
        if m:
            addr = m.group(1)
            break
        if proc.poll() is not None:
            sys.exit(f"{binary} exited:\n{text}")
        time.sleep(0.1)
    if addr is None:
        proc.kill()
        sys.exit(f"{binary}: no address in its log")
    base = f"http://{addr}"
    while True:  # the lookup index loads in the background: wait for it
        try:
            urllib.request.urlopen(base + "/v1/users/user-1/recommendations", timeout=30)
            break
        except urllib.error.HTTPError as e:
            if e.code != 503:
                break
        except OSError:
            pass
        time.sleep(0.5)
    return proc, base


def dates(base):
    rows = post(base, "SELECT DISTINCT CAST(event_date AS VARCHAR) FROM engagement_hourly ORDER BY 1")["rows"]
    days = [r[0] for r in rows]
    return {"1 day": days[-1], "7 days": days[-7] if len(days) >= 7 else days[0], f"{len(days)} days": days[0]}


def difference(answers):
    """How the builds' answers differ: 'same', or the largest relative difference of a
    number (sketch estimates may differ within their error), or 'rows differ'."""
    worst = 0.0
    first = answers[0]
    for other in answers[1:]:
        if len(other) != len(first):
            return "rows differ"
        for a, b in zip(first, other):
            for x, y in zip(a, b):
                if isinstance(x, (int, float)) and isinstance(y, (int, float)):
                    worst = max(worst, abs(x - y) / max(abs(x), abs(y), 1e-12))
                elif x != y:
                    return "rows differ"
    return "same" if worst == 0 else f"≤ {worst:.2%} apart"


def main():
    if len(sys.argv) < 5:
        sys.exit(__doc__)
    lake, runs, rounds, binaries = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
    config = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)
    config.write("[server]\ncache_mb = 0\n")
    config.close()
    results = {}  # (binary, query, range) -> [(p50, p95)]
    answers = {}  # (query, range) -> rows, per binary
    for rnd in range(rounds):
        for binary in binaries:
            proc, base = start(binary, lake, config.name)
            try:
                for name, sql in QUERIES:
                    for rng, first in dates(base).items():
                        q = sql.replace("{from}", first)
                        rows = post(base, q)["rows"]
                        answers.setdefault((name, rng), {})[binary] = rows
                        times = []
                        for _ in range(runs):
                            t = time.perf_counter()
                            post(base, q)
                            times.append((time.perf_counter() - t) * 1000)
                        times.sort()
                        p95 = times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))]
                        results.setdefault((binary, name, rng), []).append((statistics.median(times), p95))
            finally:
                proc.terminate()
                proc.wait()
            print(f"round {rnd + 1}: {binary} done", file=sys.stderr)
    print("| query | range | " + " | ".join(f"{os.path.basename(os.path.dirname(b)) or b} p50 / p95" for b in binaries) + " | answers |")
    print("|---|---|" + "---|" * len(binaries) + "---|")
    for (name, rng), per in answers.items():
        cells = []
        for b in binaries:
            r = results[(b, name, rng)]
            cells.append(f"{statistics.median(x[0] for x in r):.1f} / {statistics.median(x[1] for x in r):.1f} ms")
        print(f"| {name} | {rng} | " + " | ".join(cells) + f" | {difference(list(per.values()))} |")


if __name__ == "__main__":
    main()
