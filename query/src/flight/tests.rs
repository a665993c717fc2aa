//! Flight SQL end to end with arrow-flight's own client: a real server on a port and
//! real Delta tables on disk. (The BI tools' own drivers — JDBC, ADBC, flightsql-dbapi —
//! are driven in tests/e2e/flight.rs.)

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{AsArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Int64Type, Schema};
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::sql::{
    ActionCancelQueryRequest, ActionCancelQueryResult, Any, CommandGetDbSchemas, CommandGetTables,
    ProstMessageExt, SqlInfo,
};
use arrow_flight::{Action, FlightInfo, Ticket};
use futures::TryStreamExt;
use prometheus_client::registry::Registry;
use prost::Message;
use tonic::transport::Channel;

use crate::tests::sample_lake;
use crate::{FlightSqlServer, ServerConfig};

struct Running {
    addr: String,
    registry: Registry,
    _dir: tempfile::TempDir,
}

async fn start(config: ServerConfig) -> Running {
    let (dir, _lake, live) = sample_lake().await;
    let mut registry = Registry::default();
    let executor = crate::QueryExecutor::new(Arc::new(live), &config).unwrap();
    let server = FlightSqlServer::new(Arc::new(executor), config, &mut registry).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(server.serve(listener, std::future::pending()));
    Running {
        addr,
        registry,
        _dir: dir,
    }
}

impl Running {
    async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    async fn client(&self) -> FlightSqlServiceClient<Channel> {
        FlightSqlServiceClient::new(self.channel().await)
    }

    fn metric(&self, name: &str) -> f64 {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).unwrap();
        text.lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Waits up to 5 s for no query to be running.
    async fn wait_idle(&self) {
        let start = Instant::now();
        while self.metric("hourlake_flight_running_queries") > 0.0 {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "a query kept running"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn fetch(
    client: &mut FlightSqlServiceClient<Channel>,
    info: FlightInfo,
) -> Result<Vec<RecordBatch>, String> {
    let mut out = Vec::new();
    for endpoint in info.endpoint {
        let ticket = endpoint.ticket.ok_or("no ticket")?;
        let stream = client.do_get(ticket).await.map_err(|e| e.to_string())?;
        out.extend(
            stream
                .try_collect::<Vec<_>>()
                .await
                .map_err(|e| e.to_string())?,
        );
    }
    Ok(out)
}

fn count(batches: &[RecordBatch]) -> i64 {
    batches[0].column(0).as_primitive::<Int64Type>().value(0)
}

#[tokio::test]
async fn statements_prepared_statements_and_metadata() {
    let server = start(ServerConfig::default()).await;
    let mut client = server.client().await;

    let info = client
        .execute("SELECT count(*) AS n FROM engagement_events".into(), None)
        .await
        .unwrap();
    assert_eq!(count(&fetch(&mut client, info).await.unwrap()), 30);

    // `?` parameters, bound and re-bound; Int32 given for an Int64-typed comparison.
    let mut prepared = client
        .prepare(
            "SELECT count(*) AS n FROM engagement_events WHERE user_id = ? AND event_hour >= ?"
                .into(),
            None,
        )
        .await
        .unwrap();
    let parameters = prepared.parameter_schema().unwrap().clone();
    assert_eq!(parameters.fields().len(), 2);
    assert_eq!(parameters.field(0).data_type(), &DataType::Utf8);
    assert_eq!(prepared.dataset_schema().unwrap().field(0).name(), "n");
    let bind = |user: &str, hour: i32| {
        RecordBatch::try_from_iter([
            (
                "$1",
                Arc::new(StringArray::from(vec![user])) as arrow::array::ArrayRef,
            ),
            (
                "$2",
                Arc::new(arrow::array::Int32Array::from(vec![hour])) as arrow::array::ArrayRef,
            ),
        ])
        .unwrap()
    };
    prepared.set_parameters(bind("u0", 0)).unwrap();
    let info = prepared.execute().await.unwrap();
    // rows(h, 10, _): users u0..u6 round-robin → u0 twice per hour, 3 hours.
    assert_eq!(count(&fetch(&mut client, info).await.unwrap()), 6);
    prepared.set_parameters(bind("u0", 2)).unwrap();
    let info = prepared.execute().await.unwrap();
    assert_eq!(count(&fetch(&mut client, info).await.unwrap()), 2);
    prepared.close().await.unwrap();

    // An empty result still carries its schema; partition columns arrive plain.
    let info = client
        .execute(
            "SELECT event_id, event_date, event_hour FROM engagement_events WHERE 1 = 0".into(),
            None,
        )
        .await
        .unwrap();
    let advertised: Schema = info.clone().try_decode_schema().unwrap();
    assert_eq!(advertised.field(1).data_type(), &DataType::Date32);
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    let mut stream = client.do_get(ticket).await.unwrap();
    let mut batches = Vec::new();
    while let Some(b) = stream.try_next().await.unwrap() {
        batches.push(b);
    }
    assert_eq!(batches.iter().map(RecordBatch::num_rows).sum::<usize>(), 0);
    let schema = stream.schema().expect("the schema arrived").clone();
    assert_eq!(schema.fields().len(), 3);
    assert_eq!(schema.field(1).data_type(), &DataType::Date32);
    assert!(!matches!(
        schema.field(2).data_type(),
        DataType::Dictionary(..)
    ));

    let info = client
        .execute(
            "SELECT event_date, event_hour, event_type FROM engagement_events ORDER BY event_time LIMIT 3"
                .into(),
            None,
        )
        .await
        .unwrap();
    let batches = fetch(&mut client, info).await.unwrap();
    for field in batches[0].schema().fields() {
        assert!(
            !matches!(
                field.data_type(),
                DataType::Dictionary(..) | DataType::Utf8View | DataType::BinaryView
            ),
            "{field:?} not plain"
        );
    }

    // Metadata a BI tool asks for.
    let info = client.get_catalogs().await.unwrap();
    let catalogs = fetch(&mut client, info).await.unwrap();
    assert_eq!(
        catalogs[0].column(0).as_string::<i32>().value(0),
        "datafusion"
    );
    let info = client
        .get_db_schemas(CommandGetDbSchemas {
            catalog: Some("datafusion".into()),
            db_schema_filter_pattern: Some("pub%".into()),
        })
        .await
        .unwrap();
    let schemas = fetch(&mut client, info).await.unwrap();
    assert_eq!(schemas[0].num_rows(), 1);
    assert_eq!(schemas[0].column(1).as_string::<i32>().value(0), "public");
    let info = client
        .get_tables(CommandGetTables {
            catalog: None,
            db_schema_filter_pattern: Some("public".into()),
            table_name_filter_pattern: Some("engagement%".into()),
            table_types: vec!["TABLE".into()],
            include_schema: true,
        })
        .await
        .unwrap();
    let tables = fetch(&mut client, info).await.unwrap();
    assert_eq!(tables[0].num_rows(), 1);
    assert_eq!(
        tables[0].column(2).as_string::<i32>().value(0),
        "engagement_events"
    );
    let ipc = tables[0].column(4).as_binary::<i32>().value(0);
    let table_schema = Schema::try_from(arrow_flight::IpcMessage(ipc.to_vec().into())).unwrap();
    assert_eq!(
        table_schema
            .field_with_name("event_date")
            .unwrap()
            .data_type(),
        &DataType::Date32
    );
    let info = client.get_table_types().await.unwrap();
    let types = fetch(&mut client, info).await.unwrap();
    assert_eq!(types[0].num_rows(), 3);
    let info = client
        .get_sql_info(vec![SqlInfo::FlightSqlServerName, SqlInfo::SqlKeywords])
        .await
        .unwrap();
    let infos = fetch(&mut client, info).await.unwrap();
    assert_eq!(infos[0].num_rows(), 2);
    let info = client
        .get_xdbc_type_info(arrow_flight::sql::CommandGetXdbcTypeInfo { data_type: None })
        .await
        .unwrap();
    assert!(fetch(&mut client, info).await.unwrap()[0].num_rows() >= 10);
    let info = client
        .get_primary_keys(arrow_flight::sql::CommandGetPrimaryKeys {
            catalog: None,
            db_schema: None,
            table: "engagement_events".into(),
        })
        .await
        .unwrap();
    let keys = fetch(&mut client, info).await.unwrap();
    assert_eq!(keys.iter().map(RecordBatch::num_rows).sum::<usize>(), 0);

    // Writes are refused on every path; bad SQL is a clear error; sessions close.
    let err = client
        .prepare("DROP TABLE engagement_events".into(), None)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("forbidden: only read queries"), "{err}");
    let err = client
        .execute(
            "CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '/tmp/x'".into(),
            None,
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("forbidden: only read queries"), "{err}");
    let err = client
        .execute_update("DELETE FROM engagement_events".into(), None)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("forbidden: this server is read-only"), "{err}");
    let err = client
        .execute("SELEC 1".into(), None)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("sql_parse"), "{err}");
    let mut results = client
        .do_action(Action::new("CloseSession", vec![]))
        .await
        .unwrap();
    let closed = results.message().await.unwrap().unwrap();
    assert_eq!(closed.body.as_ref(), &[0x08, 0x01]);
}

#[tokio::test]
async fn basic_handshake_gives_a_bearer_token_and_nothing_passes_without_one() {
    let server = start(ServerConfig {
        tokens: vec!["s3cret".into()],
        ..ServerConfig::default()
    })
    .await;
    let sql = "SELECT count(*) FROM engagement_events".to_string();

    let mut anonymous = server.client().await;
    let err = anonymous.execute(sql.clone(), None).await.unwrap_err();
    assert!(
        err.to_string().contains("valid `authorization: Bearer"),
        "{err}"
    );

    let mut wrong = server.client().await;
    let err = wrong.handshake("analyst", "guess").await.unwrap_err();
    assert!(err.to_string().contains("invalid credentials"), "{err}");

    let mut basic = server.client().await;
    basic.handshake("analyst", "s3cret").await.unwrap();
    assert_eq!(basic.token().map(String::as_str), Some("s3cret"));
    let info = basic.execute(sql.clone(), None).await.unwrap();
    assert_eq!(count(&fetch(&mut basic, info).await.unwrap()), 30);

    let mut bearer = server.client().await;
    bearer.set_token("s3cret".into());
    let info = bearer.execute(sql.clone(), None).await.unwrap();
    // The ticket alone is not enough either: do_get checks the token too.
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    let err = anonymous
        .do_get(ticket.clone())
        .await
        .err()
        .map(|e| e.to_string());
    assert!(
        err.as_deref()
            .is_some_and(|e| e.contains("valid `authorization: Bearer")),
        "{err:?}"
    );
    assert_eq!(count(&fetch(&mut bearer, info).await.unwrap()), 30);
}

#[tokio::test]
async fn big_results_stream_in_bounded_messages() {
    let server = start(ServerConfig::default()).await;
    let mut client = server.client().await;
    let info = client
        .execute(
            "SELECT value AS n, repeat('x', 40) AS pad FROM generate_series(1, 1000000)".into(),
            None,
        )
        .await
        .unwrap();
    let ticket: Ticket = info.endpoint[0].ticket.clone().unwrap();
    let mut raw = FlightServiceClient::new(server.channel().await);
    let mut messages = raw.do_get(ticket).await.unwrap().into_inner();
    let (mut count, mut largest, mut body_bytes) = (0usize, 0usize, 0usize);
    while let Some(data) = messages.message().await.unwrap() {
        count += 1;
        largest = largest.max(data.data_body.len());
        body_bytes += data.data_body.len();
    }
    assert!(body_bytes > 40_000_000, "only {body_bytes} bytes");
    assert!(count > 20, "{count} messages");
    // Messages stay near the 2 MiB target (one row may overshoot a little).
    assert!(largest <= 3 * 1024 * 1024, "a {largest}-byte message");
    let info = client
        .execute(
            "SELECT count(*) FROM generate_series(1, 1000000)".into(),
            None,
        )
        .await
        .unwrap();
    assert_eq!(count_rows_via(&mut client, info).await, 1);
    server.wait_idle().await;
}

async fn count_rows_via(client: &mut FlightSqlServiceClient<Channel>, info: FlightInfo) -> usize {
    fetch(client, info)
        .await
        .unwrap()
        .iter()
        .map(RecordBatch::num_rows)
        .sum()
}

#[tokio::test]
async fn timeouts_cancellation_and_the_concurrency_limit_stop_queries() {
    let server = start(ServerConfig {
        query_timeout: Duration::from_millis(400),
        max_concurrent_queries: 1,
        ..ServerConfig::default()
    })
    .await;
    let mut client = server.client().await;
    let slow = "SELECT count(*) FROM generate_series(1, 100000000000)".to_string();

    // Timed out: DEADLINE_EXCEEDED, and the plan stops.
    let info = client.execute(slow.clone(), None).await.unwrap();
    let started = Instant::now();
    let err = fetch(&mut client, info).await.unwrap_err();
    assert!(
        err.contains("timeout: the query ran longer than 400 ms"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    server.wait_idle().await;
    assert_eq!(
        server.metric("hourlake_flight_queries_total{outcome=\"deadline_exceeded\"}"),
        1.0
    );

    // The client goes away mid-query: the plan is dropped.
    let server = start(ServerConfig {
        max_concurrent_queries: 1,
        ..ServerConfig::default()
    })
    .await;
    let mut client = server.client().await;
    let info = client.execute(slow.clone(), None).await.unwrap();
    let stream = client
        .do_get(info.endpoint[0].ticket.clone().unwrap())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(server.metric("hourlake_flight_running_queries"), 1.0);
    // Over the limit of one running query: RESOURCE_EXHAUSTED (planning counts too).
    let err = client.execute(slow.clone(), None).await.unwrap_err();
    assert!(err.to_string().contains("too_many_queries"), "{err}");
    drop(stream);
    server.wait_idle().await;

    // CancelQuery with the FlightInfo stops a running query.
    let info = client.execute(slow, None).await.unwrap();
    let running = {
        let mut client = client.clone();
        let ticket = info.endpoint[0].ticket.clone().unwrap();
        tokio::spawn(async move {
            let stream = client.do_get(ticket).await.map_err(|e| e.to_string())?;
            stream
                .try_collect::<Vec<_>>()
                .await
                .map_err(|e| e.to_string())
        })
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.metric("hourlake_flight_running_queries") < 1.0 {
        assert!(Instant::now() < deadline, "the query never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let request = ActionCancelQueryRequest {
        info: info.encode_to_vec().into(),
    };
    let mut results = client
        .do_action(Action::new("CancelQuery", request.as_any().encode_to_vec()))
        .await
        .unwrap();
    let body = results.message().await.unwrap().unwrap().body;
    let answer: ActionCancelQueryResult = Any::decode(body).unwrap().unpack().unwrap().unwrap();
    assert_eq!(answer.result, 1, "CANCEL_RESULT_CANCELLED");
    let outcome = running.await.unwrap();
    assert!(
        outcome
            .as_ref()
            .is_err_and(|e| e.contains("the query was cancelled")),
        "{outcome:?}"
    );
    server.wait_idle().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_commands_deep_sql_and_big_inputs_are_the_clients_errors() {
    let server = start(ServerConfig {
        max_request_bytes: 64 * 1024,
        ..ServerConfig::default()
    })
    .await;
    let mut raw = FlightServiceClient::new(server.channel().await);
    // A valid Any whose command is truncated protobuf: INVALID_ARGUMENT, not INTERNAL.
    let full = CommandGetTables {
        catalog: Some("datafusion".into()),
        ..Default::default()
    }
    .as_any()
    .encode_to_vec();
    let mut any = Any::decode(full.as_slice()).unwrap();
    any.value = any.value.slice(..any.value.len() - 3);
    let truncated = any.encode_to_vec();
    let err = raw
        .do_get(Ticket::new(truncated.clone()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    let err = raw
        .get_flight_info(arrow_flight::FlightDescriptor::new_cmd(truncated.clone()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    let err = raw
        .do_get(Ticket::new(vec![0xff, 0xff, 0xff]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    let err = raw
        .do_action(Action::new("CancelQuery", truncated))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");

    // Statements that nest too deeply: INVALID_ARGUMENT, and the server stays up.
    let mut client = server.client().await;
    let deep = format!("SELECT {}", vec!["1"; 5_000].join("+"));
    let err = client.execute(deep.clone(), None).await.unwrap_err();
    assert!(err.to_string().contains("too complex"), "{err}");
    let err = client.prepare(deep, None).await.unwrap_err();
    assert!(err.to_string().contains("too complex"), "{err}");
    // A prepared statement's text is bounded like any statement.
    let huge = format!("SELECT 1 -- {}", "x".repeat(300 * 1024));
    let err = client.prepare(huge, None).await.unwrap_err();
    assert!(err.to_string().contains("statement_too_large"), "{err}");
    // Parameters bigger than a request may be: refused, not collected.
    let mut prepared = client
        .prepare("SELECT length($1) AS n".to_string(), None)
        .await
        .unwrap();
    let big = arrow::array::StringArray::from(vec!["y".repeat(200 * 1024)]);
    let params = RecordBatch::try_new(
        Arc::new(Schema::new(vec![arrow::datatypes::Field::new(
            "$1",
            DataType::Utf8,
            false,
        )])),
        vec![Arc::new(big)],
    )
    .unwrap();
    prepared.set_parameters(params).unwrap();
    let err = prepared.execute().await.unwrap_err();
    assert!(err.to_string().contains("parameters_too_large"), "{err}");
    let info = client
        .execute("SELECT 1 AS one".into(), None)
        .await
        .unwrap();
    assert_eq!(fetch(&mut client, info).await.unwrap()[0].num_rows(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_stops_reading_does_not_keep_its_slot() {
    let server = start(ServerConfig {
        query_timeout: Duration::from_millis(1000),
        max_concurrent_queries: 2,
        max_result_rows: usize::MAX,
        ..ServerConfig::default()
    })
    .await;
    let mut client = server.client().await;
    let big = "SELECT value, value * 2 AS twice FROM generate_series(1, 100000000)".to_string();
    let mut stalled = Vec::new();
    for _ in 0..2 {
        let info = client.execute(big.clone(), None).await.unwrap();
        let mut stream = client
            .do_get(info.endpoint[0].ticket.clone().unwrap())
            .await
            .unwrap();
        // Read one batch, then never again.
        let first = futures::StreamExt::next(&mut stream).await;
        assert!(first.is_some_and(|b| b.is_ok()));
        stalled.push(stream);
    }
    // Both slots were taken; the stalled queries end at their deadline and free them.
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        match client.execute("SELECT 1 AS one".into(), None).await {
            Ok(info) => {
                assert_eq!(fetch(&mut client, info).await.unwrap()[0].num_rows(), 1);
                break;
            }
            Err(e) => {
                assert!(e.to_string().contains("too_many_queries"), "{e}");
                assert!(Instant::now() < until, "stalled readers kept their slots");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    drop(stalled);
}

#[test]
fn an_empty_token_is_refused_at_configuration_time() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (_dir, _lake, live) = runtime.block_on(sample_lake());
    let config = ServerConfig {
        tokens: vec!["secret".into(), String::new()],
        ..ServerConfig::default()
    };
    assert!(config.validate().is_err());
    let executor = Arc::new(crate::QueryExecutor::new(Arc::new(live), &config).unwrap());
    let mut registry = Registry::default();
    assert!(FlightSqlServer::new(executor.clone(), config.clone(), &mut registry).is_err());
    assert!(crate::QueryServer::new(executor, config, Registry::default()).is_err());
}
