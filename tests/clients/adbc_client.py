"""The ADBC Flight SQL driver (PyPI adbc-driver-flightsql + pyarrow) against
`hourlake serve --flight`. Prints one JSON object of what it saw; the Rust e2e test
(tests/e2e/flight.rs) compares it with the lake.

    python3 adbc_client.py grpc://HOST:PORT TOKEN USER_ID
"""
import json
import sys

import adbc_driver_flightsql.dbapi as flight_sql
from adbc_driver_flightsql import DatabaseOptions

uri, token, user_id = sys.argv[1:4]
out = {}

with flight_sql.connect(
    uri, db_kwargs={DatabaseOptions.AUTHORIZATION_HEADER.value: f"Bearer {token}"}
) as conn:
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) AS n FROM engagement_events")
        out["count"] = cur.fetchone()[0]

        cur.execute("SELECT count(*) AS n FROM engagement_events WHERE user_id = ?", parameters=(user_id,))
        out["user_count"] = cur.fetchone()[0]

        cur.execute(
            "SELECT event_type, count(*) AS n FROM engagement_events GROUP BY event_type ORDER BY event_type"
        )
        table = cur.fetch_arrow_table()
        out["by_type"] = {r["event_type"]: r["n"] for r in table.to_pylist()}

        cur.execute("SELECT event_id, event_date FROM engagement_events WHERE 1 = 0")
        empty = cur.fetch_arrow_table()
        out["empty"] = {
            "rows": empty.num_rows,
            "columns": empty.column_names,
            "types": [str(t) for t in empty.schema.types],
        }

        cur.execute("SELECT items FROM recommendation_events WHERE items IS NOT NULL LIMIT 1")
        items = cur.fetch_arrow_table()
        out["items_type"] = str(items.schema.field("items").type)

        try:
            cur.execute("DELETE FROM engagement_events")
            out["write"] = "accepted"
        except Exception as e:  # noqa: BLE001 - any refusal is what we want
            out["write"] = "refused"
            out["write_error"] = str(e)[:300]

    objects = conn.adbc_get_objects(depth="all").read_all().to_pylist()
    found = {}
    for catalog in objects:
        for schema in catalog["catalog_db_schemas"] or []:
            for table in schema["db_schema_tables"] or []:
                name = f'{catalog["catalog_name"]}.{schema["db_schema_name"]}.{table["table_name"]}'
                found[name] = {
                    "type": table["table_type"],
                    "columns": [c["column_name"] for c in table["table_columns"] or []],
                }
    out["objects"] = found

    schema = conn.adbc_get_table_schema("engagement_events", db_schema_filter="public")
    out["table_schema"] = {f.name: str(f.type) for f in schema}

# Basic credentials: the password is a token; the driver handshakes for a bearer token.
with flight_sql.connect(uri, db_kwargs={"username": "analyst", "password": token}) as conn:
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM recommendation_events")
        out["basic_auth_rec_count"] = cur.fetchone()[0]

try:
    with flight_sql.connect(uri, db_kwargs={"username": "analyst", "password": "wrong"}) as conn:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
            out["wrong_password"] = "accepted"
except Exception as e:  # noqa: BLE001
    out["wrong_password"] = "refused"

print(json.dumps(out))
