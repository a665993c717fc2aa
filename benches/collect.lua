-- wrk script for benches/collect-load.sh: POSTs the prepared batch in $BODY_FILE to
-- /v1/events (the same body every time; the collector does not deduplicate, the
-- compactor does).
local f = assert(io.open(os.getenv("BODY_FILE"), "rb"))
wrk.method = "POST"
wrk.path = "/v1/events"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
