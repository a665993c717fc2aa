"""flightsql-dbapi (PyPI; what Apache Superset uses) and its SQLAlchemy dialect against
`hourlake serve --flight`. Prints one JSON object of what it saw; the Rust e2e test
(tests/e2e/flight.rs) compares it with the lake.

    python3 dbapi_client.py HOST PORT TOKEN
"""
import json
import sys

from flightsql import FlightSQLClient, connect
from sqlalchemy import create_engine, inspect, text

host, port, token = sys.argv[1], int(sys.argv[2]), sys.argv[3]
out = {}

client = FlightSQLClient(host=host, port=port, token=token, insecure=True)
with connect(client) as conn:
    cur = conn.cursor()
    cur.execute("SELECT count(*) AS n FROM engagement_events")
    out["count"] = int(cur.fetchone()[0])
    cur.execute("SELECT event_type, count(*) AS n FROM engagement_events GROUP BY event_type ORDER BY event_type")
    out["by_type"] = {row[0]: int(row[1]) for row in cur.fetchall()}

engine = create_engine(f"datafusion://{host}:{port}?insecure=true&token={token}")
inspector = inspect(engine)
out["schemas"] = sorted(inspector.get_schema_names())
out["tables"] = sorted(inspector.get_table_names(schema="public"))
out["columns"] = [c["name"] for c in inspector.get_columns("engagement_events", schema="public")]
with engine.connect() as c:
    out["sqlalchemy_count"] = int(c.execute(text("SELECT count(*) FROM recommendation_events")).scalar())

print(json.dumps(out))
