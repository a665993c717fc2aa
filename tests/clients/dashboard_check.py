"""The live dashboard (`GET /` of `hourlake serve` / `hourlake up`) in headless Chromium:
Debian's `chromium`, driven by Playwright for Python (PyPI; never a downloaded browser:
`scripts/bi-clients dashboard` installs both).

It loads the page, fails on any console error or page error, waits until every tile is
filled, and checks every number against the same SQL asked directly on /v1/sql: the
page puts the SQL of each answer on its tiles (`data-sql`, `data-column`, `data-row`)
and tables (`data-group`), so the SQL is read from the page, never copied here. Tiles
whose table is not in the lake yet must be missing from the catalog too, the consumer
lag tile must agree with GET /metrics, derived tiles with their formula, and an idle
refresh must be answered 304 (If-None-Match). Then it saves a screenshot and prints one
JSON line of the tile values. With --wait-change TILE_ID it then polls until that tile's
value changes (new events), checks it against SQL again, saves SCREENSHOT-after.png and
prints a second JSON line.

    python3 dashboard_check.py BASE_URL SCREENSHOT_PATH [TOKEN] [--wait-change TILE_ID]
                               [--range 1h|24h|7d] [--timeout SECONDS]

Exits non-zero with a message on stderr on any failure.
"""
import argparse
import json
import math
import shutil
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

# What every tile, table cell, state and formula looks like in the page (one evaluate,
# so values and their SQL are read together, never from two different refreshes).
SNAPSHOT_JS = """() => {
  const tiles = {};
  for (const t of document.querySelectorAll('.tile[id]')) {
    tiles[t.id] = {state: t.dataset.state, value: t.dataset.value ?? null, sql: t.dataset.sql ?? null,
      column: t.dataset.column ?? null, row: t.dataset.row ?? 'first', source: t.dataset.source ?? null,
      formula: t.dataset.formula ?? null, missing: t.dataset.missing ?? null,
      text: t.querySelector('.value')?.textContent ?? '', note: t.querySelector('.note')?.textContent ?? ''};
  }
  const groups = {};
  for (const g of document.querySelectorAll('[data-group][id]')) {
    groups[g.id] = {sql: g.dataset.sql ?? null, keys: (g.dataset.keyColumns || '').split(',').filter(Boolean),
      missing: g.dataset.missing ?? null,
      cells: [...g.querySelectorAll('[data-key][data-column]')].map(c => ({
        id: c.id, key: JSON.parse(c.dataset.key), column: c.dataset.column, value: c.dataset.value}))};
  }
  const u = document.getElementById('updated');
  return {tiles, groups, cycles: Number(u.dataset.cycles || 0), updated: u.textContent,
          banner: document.getElementById('banner').hidden ? '' : document.getElementById('banner').textContent};
}"""

FILLED_JS = """() => Number(document.getElementById('updated').dataset.cycles || 0) >= 1
  && [...document.querySelectorAll('.tile[id]')].every(t => t.dataset.state && t.dataset.state !== 'loading')"""

# The catalog as the page asks it (now(): information_schema answers must not be cached).
CATALOG_SQL = ("SELECT table_name FROM information_schema.tables "
               "WHERE table_schema = 'public' AND now() IS NOT NULL")
LAG_METRIC = "hourlake_ingest_consumer_lag_messages"


class CheckFailed(Exception):
    pass


class Server:
    """The same HTTP API the page uses, asked directly (urllib, same token)."""

    def __init__(self, base, token):
        self.base, self.token = base.rstrip("/"), token

    def _request(self, path, body=None):
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(errors="replace")

    def sql(self, text):
        status, body = self._request("/v1/sql", {"sql": text, "format": "json"})
        if status != 200:
            raise CheckFailed(f"direct SQL answered HTTP {status}: {body[:300]}\n  SQL: {text}")
        answer = json.loads(body)
        names = [c["name"] for c in answer["columns"]]
        return [dict(zip(names, row)) for row in answer["rows"]]

    def tables(self):
        return {r["table_name"] for r in self.sql(CATALOG_SQL)}

    def metrics(self):
        status, body = self._request("/metrics")
        if status != 200:
            raise CheckFailed(f"GET /metrics answered HTTP {status}: {body[:300]}")
        return body


def number(v):
    """A value of an answer or a data-value as a number (None for null)."""
    if v is None or v == "null":
        return None
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, (int, float)):
        return v
    try:
        return int(v)
    except ValueError:
        return float(v)


def same(page_value, sql_value):
    a, b = number(page_value), number(sql_value)
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, int) and isinstance(b, int):
        return a == b
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def compare(snap, server, pending=None):
    """Every number on the page (or those of the tiles and groups in `pending`) against
    its SQL, /metrics or formula: the mismatches, as sentences by tile or group id."""
    problems, answers, tables = {}, {}, None

    def add(element, sentence):
        problems.setdefault(element, []).append(sentence)

    def answer(text):
        if text not in answers:
            answers[text] = server.sql(text)
        return answers[text]

    def catalog():
        nonlocal tables
        if tables is None:
            tables = server.tables()
        return tables

    tiles = snap["tiles"]
    for tid, t in tiles.items():
        if pending is not None and tid not in pending:
            continue
        st = t["state"]
        if st == "error":
            add(tid, f"{tid} shows an error: {t['note']}")
        elif st == "missing":
            gone = [m for m in (t["missing"] or "").split(",") if m]
            present = [m for m in gone if m in catalog()]
            if not gone or present:
                add(tid, f"{tid} says {gone} is missing, but the catalog lists {present}")
        elif t["source"] == "metrics":
            text = server.metrics()
            lags = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                    if line.startswith(LAG_METRIC + "{")]
            if st == "na":
                if lags:
                    add(tid, f"{tid} says n/a but /metrics reports {len(lags)} partitions")
            elif st != "ok" or number(t["value"]) is None or number(t["value"]) < 0:
                add(tid, f"{tid}: state {st}, value {t['value']!r}")
            elif not lags:
                add(tid, f"{tid} shows {t['value']} but /metrics has no {LAG_METRIC} series")
        elif t["formula"]:
            # dead / (rows + rows + dead): missing tables count as 0.
            names = [n for n in t["formula"].replace("(", " ").replace(")", " ").split() if n.startswith("tile-")]
            vals = {n: (0 if tiles[n]["state"] == "missing" else number(tiles[n]["value"]) or 0) for n in names}
            dead = vals["tile-dead-letters"]
            total = dead + vals["tile-rows-engagement"] + vals["tile-rows-recommendation"]
            expected = dead / total if total else None
            if not same(t["value"], expected):
                add(tid, f"{tid} = {t['value']}, but {t['formula']} = {expected}")
        elif st == "ok":
            if not t["sql"] or not t["column"]:
                add(tid, f"{tid} has a value but no data-sql/data-column")
                continue
            rows = answer(t["sql"])
            row = (rows[-1] if t["row"] == "last" else rows[0]) if rows else {}
            if t["column"] not in row and rows:
                add(tid, f"{tid}: column {t['column']} not in the answer {list(row)}")
            elif not same(t["value"], row.get(t["column"])):
                add(tid, f"{tid} = {t['value']} but SQL says {row.get(t['column'])!r}\n  SQL: {t['sql']}")
        else:
            add(tid, f"{tid}: unexpected state {st!r}")

    for gid, g in snap["groups"].items():
        if pending is not None and gid not in pending:
            continue
        if g["missing"]:
            present = [m for m in g["missing"].split(",") if m in catalog()]
            if present:
                add(gid, f"{gid} says {g['missing']} is missing, but the catalog lists {present}")
            continue
        if not g["sql"]:
            add(gid, f"{gid} has no data-sql")
            continue
        rows = answer(g["sql"])
        by_key = {json.dumps([r.get(k) for k in g["keys"]]): r for r in rows}
        shown = {json.dumps(c["key"]) for c in g["cells"]}
        if shown != set(by_key):
            add(gid, f"{gid} shows keys {sorted(shown)}, SQL answers {sorted(by_key)}")
        for c in g["cells"]:
            r = by_key.get(json.dumps(c["key"]))
            if r is not None and not same(c["value"], r.get(c["column"])):
                add(gid, f"{gid} {c['key']} {c['column']} = {c['value']} but SQL says {r.get(c['column'])!r}")
    return problems


def wait_until(page, js, timeout_s):
    """Polls the function `js` in the page until it is true. (Playwright's
    wait_for_function evaluates a string in the page, which the page's Content Security
    Policy forbids: no 'unsafe-eval'. page.evaluate runs outside it.)"""
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(js):
        if time.monotonic() > deadline:
            raise TimeoutError(f"not true after {timeout_s:.0f} s: {js}")
        time.sleep(0.2)


def wait_cycle(page, after, timeout_s=60):
    """Waits until the page has finished a refresh after cycle `after`."""
    wait_until(page, f"() => Number(document.getElementById('updated').dataset.cycles || 0) > {after}",
               timeout_s)


def check_until_equal(page, server, deadline_s):
    """Compares page and SQL. A tile or table that differs (the lake moved between the
    page's answer and ours) is compared again after the page's next refresh, until it
    has shown exactly the SQL's answer once or the deadline passes. Returns the last
    snapshot."""
    deadline = time.monotonic() + deadline_s
    snap = page.evaluate(SNAPSHOT_JS)
    pending = None
    while True:
        problems = compare(snap, server, pending)
        if not problems:
            return snap
        if time.monotonic() > deadline:
            lines = [p for ps in problems.values() for p in ps]
            raise CheckFailed("the page disagrees with SQL:\n- " + "\n- ".join(lines))
        pending = set(problems)
        wait_cycle(page, snap["cycles"])
        snap = page.evaluate(SNAPSHOT_JS)


def values(snap):
    return {tid: (number(t["value"]) if t["state"] == "ok" else None) for tid, t in snap["tiles"].items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("base_url")
    ap.add_argument("screenshot")
    ap.add_argument("token", nargs="?", default="")
    ap.add_argument("--wait-change", metavar="TILE_ID")
    ap.add_argument("--expect-304", action="store_true",
                    help="the lake is idle: require refreshes answered 304 Not Modified")
    ap.add_argument("--range", choices=["1h", "24h", "7d"], help="open the page with this time range")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds for each wait (default 60)")
    args = ap.parse_args()

    chromium = shutil.which("chromium")
    if not chromium:
        raise CheckFailed("no `chromium` on PATH: run scripts/bi-clients dashboard")
    server = Server(args.base_url, args.token)
    errors, statuses, conditional, stale, etags = [], [], [], [], []

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        try:
            context = browser.new_context(viewport={"width": 1360, "height": 900})
            if args.token:
                context.add_init_script(f"localStorage.setItem('hourlake.token', {json.dumps(args.token)});")
            page = context.new_page()
            page.on("console", lambda m: m.type == "error" and errors.append(f"console: {m.text} ({m.location})"))
            page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
            # Chromium ends a 304 without a cached copy (the page keeps its own) as
            # net::ERR_ABORTED after the response arrived: only requests that got no
            # answer at all failed.
            answered = set()

            def on_response(r):
                if "v1/sql" in r.url:
                    statuses.append(r.status)
                    answered.add(id(r.request))
                    etags.append(r.headers.get("etag"))
                    # A full answer to If-None-Match must be a different version.
                    sent = r.request.headers.get("if-none-match")
                    if r.status == 200 and sent and r.headers.get("etag") == sent:
                        stale.append(f"200 with the ETag {sent} the page already had")

            def on_failed(r):
                if id(r) not in answered:
                    errors.append(f"request failed: {r.method} {r.url} {r.failure}")

            page.on("request", lambda r: "v1/sql" in r.url and conditional.append("if-none-match" in r.headers))
            page.on("response", on_response)
            page.on("requestfailed", on_failed)

            url = args.base_url.rstrip("/") + "/" + (f"?range={args.range}" if args.range else "")
            page.goto(url, wait_until="load", timeout=args.timeout * 1000)
            try:
                wait_until(page, FILLED_JS, args.timeout)
            except Exception as e:
                snap = page.evaluate(SNAPSHOT_JS)
                loading = [t for t, v in snap["tiles"].items() if v["state"] == "loading"]
                raise CheckFailed(f"tiles not filled in {args.timeout:.0f} s (still loading: {loading}; "
                                  f"banner: {snap['banner']!r}): {e}") from None
            if errors:
                raise CheckFailed("errors while loading the page:\n- " + "\n- ".join(errors))

            # Refreshes send If-None-Match with the last ETag; what did not change is
            # answered 304 (with --expect-304, the idle lake must cost only 304s). An
            # empty lake has no cacheable query (the catalog's answer has no ETag).
            first = page.evaluate(SNAPSHOT_JS)["cycles"]
            for _ in range(3):
                if (any(conditional) or not any(etags)) and (304 in statuses or not args.expect_304):
                    break
                wait_cycle(page, page.evaluate(SNAPSHOT_JS)["cycles"], args.timeout)
            if any(etags) and not any(conditional):
                raise CheckFailed(f"no If-None-Match in {len(conditional)} SQL requests after cycle {first}")
            if args.expect_304 and 304 not in statuses:
                raise CheckFailed(f"no 304 in {len(statuses)} SQL answers after cycle {first} "
                                  f"(statuses {sorted(set(statuses))})")
            bad = sorted({s for s in statuses if s not in (200, 304)})
            if bad or errors or stale:
                raise CheckFailed(f"SQL answers {bad}; errors: {errors}; {stale[:3]}")

            snap = check_until_equal(page, server, args.timeout)
            if snap["banner"]:
                raise CheckFailed(f"the page shows an error banner: {snap['banner']}")
            page.screenshot(path=args.screenshot, full_page=True)
            print(json.dumps({"tiles": values(snap), "states": {t: v["state"] for t, v in snap["tiles"].items()},
                              "cycles": snap["cycles"], "not_modified": statuses.count(304),
                              "answers": len(statuses), "screenshot": args.screenshot}), flush=True)

            if args.wait_change:
                tid = args.wait_change
                if tid not in snap["tiles"]:
                    raise CheckFailed(f"no tile {tid!r}; tiles: {sorted(snap['tiles'])}")
                before = snap["tiles"][tid]["value"]
                deadline = time.monotonic() + args.timeout
                while True:
                    now = page.evaluate(SNAPSHOT_JS)["tiles"][tid]
                    if now["state"] == "ok" and now["value"] != before:
                        break
                    if time.monotonic() > deadline:
                        raise CheckFailed(f"{tid} still {now['value']} (state {now['state']}) after "
                                          f"{args.timeout:.0f} s; it was {before} before")
                    time.sleep(0.5)
                after = check_until_equal(page, server, args.timeout)
                if errors or stale:
                    raise CheckFailed("errors after the update:\n- " + "\n- ".join(errors + stale[:3]))
                shot = Path(args.screenshot)
                shot_after = str(shot.with_name(shot.stem + "-after" + (shot.suffix or ".png")))
                page.screenshot(path=shot_after, full_page=True)
                print(json.dumps({"changed": tid, "from": number(before),
                                  "to": number(after["tiles"][tid]["value"]), "tiles": values(after),
                                  "screenshot": shot_after}), flush=True)
        finally:
            browser.close()


if __name__ == "__main__":
    try:
        main()
    except CheckFailed as e:
        print(f"dashboard_check: FAILED: {e}", file=sys.stderr)
        sys.exit(1)
