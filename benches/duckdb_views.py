"""The dashboard questions of benches/query.rs, answered by DuckDB over the same Delta
tables (raw events: DuckDB cannot use hourlake's rollups or sketches, so it computes each
answer from the events, with approx_count_distinct for distinct users).

    pip install duckdb duckdb-extension-delta
    python3 benches/duckdb_views.py LAKE FIRST_DAY LAST_DAY RUNS

The delta extension ships inside the `duckdb-extension-delta` wheel; it is loaded from
that file (no download), which needs allow_unsigned_extensions.
"""
import glob
import os
import sys
import time

import duckdb
import duckdb_extension_delta

lake, first_day, last_day, runs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
ext = glob.glob(os.path.join(os.path.dirname(duckdb_extension_delta.__file__), "**", "*.duckdb_extension"), recursive=True)
if not ext:
    sys.exit("no delta extension file in the duckdb-extension-delta package")
con = duckdb.connect(config={"allow_unsigned_extensions": "true"})
con.execute(f"LOAD '{ext[0]}'")
con.execute(f"CREATE VIEW engagement_events AS SELECT * FROM delta_scan('{lake}/engagement_events')")
con.execute(f"CREATE VIEW recommendation_events AS SELECT * FROM delta_scan('{lake}/recommendation_events')")

queries = [
    ("hourly active users", "SELECT event_date, event_hour, approx_count_distinct(user_id), count(*) FILTER (WHERE event_type = 'session_start') FROM engagement_events WHERE event_date >= DATE '{from}' GROUP BY 1, 2 ORDER BY 1, 2"),
    ("daily active users", "SELECT event_date, approx_count_distinct(user_id) FROM engagement_events WHERE event_date >= DATE '{from}' GROUP BY 1 ORDER BY 1"),
    ("session length avg/p95", "SELECT event_date, count(*) FILTER (WHERE event_type = 'session_start'), avg(session_length_ms), quantile_cont(session_length_ms, 0.95) FROM engagement_events WHERE event_date >= DATE '{from}' GROUP BY 1 ORDER BY 1"),
    ("installs, purchases, revenue", "SELECT event_date, count(*) FILTER (WHERE event_type = 'install'), count(*) FILTER (WHERE event_type = 'purchase'), sum(amount) FILTER (WHERE event_type = 'purchase') FROM engagement_events WHERE event_date >= DATE '{from}' GROUP BY 1 ORDER BY 1"),
    ("notification open rate", "SELECT event_date, count(*) FILTER (WHERE event_type = 'notification_open') * 1.0 / count(*) FILTER (WHERE event_type = 'notification_view') FROM engagement_events WHERE event_date >= DATE '{from}' GROUP BY 1 ORDER BY 1"),
    ("CTR by model and surface", "SELECT model_version, surface, count(*) FILTER (WHERE event_type = 'rec_click') * 1.0 / count(*) FILTER (WHERE event_type = 'rec_impression') FROM recommendation_events WHERE event_date >= DATE '{from}' GROUP BY 1, 2 ORDER BY 1, 2"),
]


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round((len(xs) - 1) * p))]


print("| query | range | p50 | p95 | p99 |")
print("|---|---|---|---|---|")
for name, sql in queries:
    for rng, start in (("1 day", last_day), ("all days", first_day)):
        q = sql.replace("{from}", start)
        times = []
        for run in range(runs + 1):
            t = time.perf_counter()
            con.execute(q).fetchall()
            if run:
                times.append((time.perf_counter() - t) * 1000)
        print(f"| {name} | {rng} | {pct(times, .5):.1f} ms | {pct(times, .95):.1f} ms | {pct(times, .99):.1f} ms |")
