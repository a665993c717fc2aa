#!/usr/bin/env python3
"""Another engine reads the lake: PySpark + delta-spark over an hourlake lake.

    python3 spark_reads_lake.py LAKE_PATH EXPECTED_JSON_PATH

Needs `pip install pyspark==4.0.1 delta-spark==4.0.0` and Java 17+. The Delta jars
(io.delta:delta-spark_2.13:4.0.0 and its two dependencies) are resolved through
`spark.jars.packages` into an Ivy cache that persists across runs
($HOURLAKE_SPARK_IVY, default ~/.cache/hourlake/spark-ivy): the first run needs
Maven Central, later runs pass the cached jars directly with `spark.jars` and
touch no network at all.

EXPECTED_JSON (written by hourlake's test; "format": 1):

  {
    "format": 1,
    "row_counts": {"engagement_events": 19435, "dead_letters": 190, ...},
    "hll": [
      {
        "table": "engagement_hourly",
        "column": "users_sketch",
        "where": {"event_type": "ALL", "device_type": "ALL",
                  "app_version": "ALL", "country": "ALL"},
        "hours": [{"event_date": "2026-11-28", "event_hour": 17, "estimate": 18}, ...],
        "union_estimate": 4039
      }, ...
    ]
  }

Every table in row_counts is read as Delta (LAKE_PATH/<table>) and count(*) must be
equal. For each "hll" entry, the rows matching `where` (column = value, ANDed) must
be exactly one per (event_date, event_hour) listed in "hours" (no missing, no
extra hour) and Spark's hll_sketch_estimate(column) must equal "estimate"; and
over all those rows, with u = hll_union_agg(column), hll_sketch_estimate(hll_union(u, u))
must equal "union_estimate".

Why hll_union(u, u): a union's estimate can depend on the order its inputs were
merged. DataSketches HLL keeps a HIP estimate while only coupon-mode (LIST/SET)
sketches are fed into it, and switches to the order-free composite estimate (sets
the out-of-order flag) once an HLL-mode sketch is merged into an HLL-mode union. So
when one input is HLL-mode (a busy hour) Spark's plain union is HIP or composite
depending on the order its rows arrive in (4077 vs 4039 on one lake). Unioning u
with itself forces the composite estimate, a function of the registers alone.
hourlake's hll_union always ends that way (it merges its result into itself), so
its plain hll_estimate(hll_union(column)) is the number to compare. Spark's plain
hll_sketch_estimate(u) is reported as union_estimate_order_dependent, unchecked.

Estimates are integers on both sides: Spark's
hll_sketch_estimate is Math.round(getEstimate()) as BIGINT and hourlake's
hll_estimate is f64::round() as UInt64; for non-negative estimates the two
roundings agree, so the comparison is exact integer equality (null = NULL sketch).

Exit 0 and a JSON summary on stdout when everything matches; exit 1 with a
message per mismatch on stderr otherwise; exit 2 on bad usage/input.
"""
import json
import os
import sys
import time

DELTA_PACKAGE = "io.delta:delta-spark_2.13:4.0.0"
# What DELTA_PACKAGE resolves to (file names in <ivy>/jars/); when all are cached
# they are passed with spark.jars so a warm run never asks Ivy to resolve anything.
DELTA_JARS = [
    "io.delta_delta-spark_2.13-4.0.0.jar",
    "io.delta_delta-storage-4.0.0.jar",
    "org.antlr_antlr4-runtime-4.13.1.jar",
]


def fail_usage(msg):
    print(f"spark_reads_lake: {msg}", file=sys.stderr)
    sys.exit(2)


def load_expected(path):
    try:
        with open(path) as f:
            exp = json.load(f)
    except (OSError, ValueError) as e:
        fail_usage(f"cannot read expected JSON {path}: {e}")
    if exp.get("format") != 1:
        fail_usage(f"{path}: expected \"format\": 1, got {exp.get('format')!r}")
    if not isinstance(exp.get("row_counts"), dict) or not exp["row_counts"]:
        fail_usage(f"{path}: \"row_counts\" must be a non-empty object")
    for h in exp.get("hll", []):
        for key in ("table", "column", "where", "hours", "union_estimate"):
            if key not in h:
                fail_usage(f"{path}: an \"hll\" entry lacks \"{key}\": {h}")
    return exp


def spark_session():
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark.sql import SparkSession

    ivy = os.environ.get("HOURLAKE_SPARK_IVY") or os.path.expanduser("~/.cache/hourlake/spark-ivy")
    os.makedirs(ivy, exist_ok=True)
    cached = [os.path.join(ivy, "jars", j) for j in DELTA_JARS]
    b = (
        SparkSession.builder.master("local[2]")
        .appName("hourlake-spark-reads-lake")
        .config("spark.driver.memory", "1g")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "2")
        # Delta rebuilds each table's snapshot with 50 tasks by default: slow for tiny logs.
        .config("spark.databricks.delta.snapshotPartitions", "2")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
        .config("spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog")
        .config("spark.jars.ivy", ivy)
    )
    if all(os.path.isfile(j) for j in cached):
        b = b.config("spark.jars", ",".join(cached))
    else:
        b = b.config("spark.jars.packages", DELTA_PACKAGE)
    spark = b.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def quote(name):
    return "`" + name.replace("`", "``") + "`"


def sql_literal(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    return "'" + str(v).replace("\\", "\\\\").replace("'", "\\'") + "'"


def main():
    if len(sys.argv) != 3:
        fail_usage("usage: python3 spark_reads_lake.py LAKE_PATH EXPECTED_JSON_PATH")
    lake, expected_path = os.path.abspath(sys.argv[1]), sys.argv[2]
    exp = load_expected(expected_path)
    for t in list(exp["row_counts"]) + [h["table"] for h in exp.get("hll", [])]:
        if not os.path.isdir(os.path.join(lake, t, "_delta_log")):
            fail_usage(f"{lake}/{t} is not a Delta table (no _delta_log)")

    started = time.monotonic()
    spark = spark_session()
    session_s = time.monotonic() - started
    errors = []
    summary = {"lake": lake, "spark": spark.version, "row_counts": {}, "hll": []}

    def table(name):
        df = spark.read.format("delta").load(os.path.join(lake, name))
        df.createOrReplaceTempView(quote(name))
        return df

    for name, want in exp["row_counts"].items():
        got = table(name).count()
        summary["row_counts"][name] = got
        if got != want:
            errors.append(f"{name}: count(*) is {got} in Spark, hourlake says {want}")

    for h in exp.get("hll", []):
        name, col = h["table"], h["column"]
        table(name)
        where = " AND ".join(f"{quote(k)} = {sql_literal(v)}" for k, v in h["where"].items()) or "true"
        rows = spark.sql(
            f"SELECT CAST(event_date AS STRING) AS d, event_hour AS h, "
            f"hll_sketch_estimate({quote(col)}) AS e FROM {quote(name)} WHERE {where}"
        ).collect()
        got_hours = {}
        for r in rows:
            key = (r["d"], r["h"])
            if key in got_hours:
                errors.append(f"{name}: more than one row for {key[0]} hour {key[1]} where {h['where']}")
            got_hours[key] = r["e"]
        want_hours = {(x["event_date"], x["event_hour"]): x["estimate"] for x in h["hours"]}
        for key in sorted(want_hours.keys() - got_hours.keys()):
            errors.append(f"{name}: no row in Spark for {key[0]} hour {key[1]} where {h['where']}")
        for key in sorted(got_hours.keys() - want_hours.keys()):
            errors.append(f"{name}: Spark has a row for {key[0]} hour {key[1]} that hourlake does not expect")
        for key in sorted(want_hours.keys() & got_hours.keys()):
            if got_hours[key] != want_hours[key]:
                errors.append(
                    f"{name}: {key[0]} hour {key[1]}: Spark hll_sketch_estimate({col}) = "
                    f"{got_hours[key]}, hourlake hll_estimate = {want_hours[key]}"
                )
        # u = hll_union_agg(col); hll_union(u, u) merges an HLL-mode sketch into an
        # HLL-mode union, which sets the out-of-order flag: the estimate is then the
        # composite estimate of u's registers, which do not depend on merge order. The
        # plain hll_sketch_estimate(u) may instead be u's HIP estimate, which does.
        r = spark.sql(
            f"SELECT hll_sketch_estimate(u) AS plain, hll_sketch_estimate(hll_union(u, u)) AS e "
            f"FROM (SELECT hll_union_agg({quote(col)}) AS u FROM {quote(name)} WHERE {where})"
        ).collect()[0]
        union, plain = r["e"], r["plain"]
        if union != h["union_estimate"]:
            errors.append(
                f"{name}: Spark hll_sketch_estimate(hll_union(u, u)) with u = hll_union_agg({col}) is "
                f"{union} (plain hll_sketch_estimate(u) = {plain}), hourlake says {h['union_estimate']}"
            )
        summary["hll"].append(
            {
                "table": name,
                "column": col,
                "where": h["where"],
                "hours_checked": len(want_hours.keys() & got_hours.keys()),
                "hours": [
                    {"event_date": d, "event_hour": hr, "estimate": e} for (d, hr), e in sorted(got_hours.items())
                ],
                "union_estimate": union,
                "union_estimate_order_dependent": plain,
            }
        )

    spark.stop()
    summary["session_start_s"] = round(session_s, 1)
    summary["total_s"] = round(time.monotonic() - started, 1)
    summary["ok"] = not errors
    summary["errors"] = errors
    print(json.dumps(summary, indent=1))
    if errors:
        print(f"spark_reads_lake: {len(errors)} mismatch(es) between Spark and hourlake:", file=sys.stderr)
        for e in errors:
            print(f"  - {e}", file=sys.stderr)
        sys.exit(1)
    print(
        f"spark_reads_lake: OK: {len(summary['row_counts'])} tables' counts and "
        f"{sum(x['hours_checked'] for x in summary['hll'])} hourly + {len(summary['hll'])} union HLL estimates match",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
