//! Real BI clients over Flight SQL against `hourlake serve --flight` on a lake that
//! `hourlake ingest` filled from the real broker: the Arrow Flight SQL JDBC driver, the
//! ADBC Flight SQL driver, flightsql-dbapi with its SQLAlchemy dialect — and the
//! `hourlake sql` REPL, typed into through a pseudo-terminal as a person would.
//! Every answer is compared with the same question asked of the lake directly.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use arrow::array::AsArray;
use arrow::datatypes::Int64Type;
use hourlake_catalog::Lake;
use hourlake_testkit::binary::Daemon;
use hourlake_testkit::kafka;
use hourlake_testkit::lake::{query, scalar, wait_exactly_once};
use hourlake_testkit::setup::Setup;
use hourlake_testkit::unique;
use serde_json::Value;

use crate::hourlake;

const TOKEN: &str = "bi-t0ken";

/// What the lake itself says, to compare every client with.
struct Expected {
    count: i64,
    rec_count: i64,
    by_type: BTreeMap<String, i64>,
    user: String,
    user_count: i64,
}

/// A lake filled by `hourlake ingest` from the real broker, then left still.
struct FilledLake {
    _setup: Setup,
    path: PathBuf,
    lake: Lake,
    expected: Expected,
}

async fn filled_lake() -> FilledLake {
    let broker = kafka::shared();
    let s = Setup::new(&broker.bootstrap, 2).await;
    let mut ingest = s.ingest(&hourlake(), &[]);
    s.produce(&hourlake())
        .with("count", 20_000)
        .with("users", 2000)
        .with("seed", 17)
        .run_async()
        .await;
    let (path, lake) = (s.lake_path(), s.lake.clone());
    wait_exactly_once(
        &lake,
        &broker.bootstrap,
        &s.topics(),
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(ingest.terminate().code(), Some(0), "{}", ingest.log_text());

    let count = scalar(&lake, "SELECT count(*) FROM engagement_events").await;
    let rec_count = scalar(&lake, "SELECT count(*) FROM recommendation_events").await;
    let mut by_type = BTreeMap::new();
    for batch in query(
        &lake,
        "SELECT event_type, count(*) AS n FROM engagement_events GROUP BY 1",
    )
    .await
    {
        let types =
            arrow::compute::cast(batch.column(0), &arrow::datatypes::DataType::Utf8).expect("cast");
        for i in 0..batch.num_rows() {
            by_type.insert(
                types.as_string::<i32>().value(i).to_string(),
                batch.column(1).as_primitive::<Int64Type>().value(i),
            );
        }
    }
    let top = query(
        &lake,
        "SELECT user_id, count(*) AS n FROM engagement_events GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 1",
    )
    .await;
    let users =
        arrow::compute::cast(top[0].column(0), &arrow::datatypes::DataType::Utf8).expect("cast");
    let user = users.as_string::<i32>().value(0).to_string();
    let user_count = top[0].column(1).as_primitive::<Int64Type>().value(0);
    assert!(
        count > 1000 && rec_count > 5 && user_count > 1,
        "too little data: {count} engagement, {rec_count} recommendation events, top user {user_count}"
    );
    FilledLake {
        _setup: s,
        path,
        lake,
        expected: Expected {
            count,
            rec_count,
            by_type,
            user,
            user_count,
        },
    }
}

/// `hourlake serve --flight` over the lake, with a token; returns the Flight address.
fn serve(lake: &Path) -> (Daemon, String) {
    let server = hourlake().daemon(
        "flight",
        lake,
        &[
            "serve",
            "--lake",
            lake.to_str().expect("utf-8 path"),
            "--http",
            "127.0.0.1:0",
            "--flight",
            "127.0.0.1:0",
            "--token",
            TOKEN,
        ],
    );
    let addr = server.logged_addr("serving Flight SQL on grpc://");
    (server, addr)
}

fn script(name: &str) -> String {
    format!("{}/tests/clients/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Runs a client to the end; its stdout, or a panic with everything it said.
fn run_client(command: &mut Command, what: &str) -> String {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{what} could not start: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The JDBC driver's jar (downloaded once from Maven Central by scripts/bi-clients).
fn jdbc_jar() -> String {
    let out = Command::new(format!("{}/scripts/bi-clients", env!("CARGO_MANIFEST_DIR")))
        .arg("jdbc-jar")
        .output()
        .expect("scripts/bi-clients");
    assert!(
        out.status.success(),
        "cannot get the JDBC driver: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn python_clients() {
    let status = Command::new(format!("{}/scripts/bi-clients", env!("CARGO_MANIFEST_DIR")))
        .arg("python")
        .status()
        .expect("scripts/bi-clients");
    assert!(
        status.success(),
        "cannot install the Python Flight SQL clients"
    );
}

fn jdbc(
    jar: &str,
    url: &str,
    user_id: &str,
    credentials: Option<(&str, &str)>,
) -> BTreeMap<String, String> {
    let mut command = Command::new("java");
    command
        .arg("--add-opens=java.base/java.nio=ALL-UNNAMED")
        .args(["-cp", jar, &script("JdbcClient.java"), url, user_id]);
    if let Some((user, password)) = credentials {
        command.args([user, password]);
    }
    run_client(&mut command, "the JDBC client")
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn by_type_text(expected: &Expected) -> String {
    expected
        .by_type
        .iter()
        .map(|(t, n)| format!("{t}:{n}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[tokio::test(flavor = "multi_thread")]
async fn bi_clients_query_the_lake_over_flight_sql() {
    let jar = jdbc_jar();
    python_clients();
    let filled = filled_lake().await;
    let e = &filled.expected;
    let (server, addr) = serve(&filled.path);

    // The JDBC driver with user/password: a Basic handshake for a bearer token.
    let url = format!("jdbc:arrow-flight-sql://{addr}?useEncryption=false");
    let seen = jdbc(&jar, &url, &e.user, Some(("analyst", TOKEN)));
    let get = |k: &str| seen.get(k).map(String::as_str).unwrap_or("<missing>");
    assert_eq!(get("done"), "true", "{seen:?}");
    assert_eq!(get("product"), "hourlake");
    assert_eq!(get("read_only"), "true");
    assert_eq!(get("keywords_present"), "true");
    assert_eq!(get("quote"), "\"");
    assert!(
        get("catalogs").split(',').any(|c| c == "datafusion"),
        "{seen:?}"
    );
    assert!(get("schemas").contains("datafusion.public"), "{seen:?}");
    for table in [
        "engagement_events:TABLE",
        "recommendation_events:TABLE",
        "dead_letters:TABLE",
        "hourly_engagement:VIEW",
        "daily_active_users:VIEW",
        "recommendation_ctr:VIEW",
    ] {
        assert!(
            get("tables").split(',').any(|t| t == table),
            "{table} not listed: {}",
            get("tables")
        );
    }
    assert_eq!(get("table_types"), "LOCAL TEMPORARY,TABLE,VIEW");
    let columns = get("columns");
    for column in [
        "event_id:",
        "user_id:",
        "event_time:TIMESTAMP",
        "event_date:DATE",
        "event_hour:",
    ] {
        assert!(columns.contains(column), "{column} not in {columns}");
    }
    assert_eq!(get("primary_keys"), "0");
    assert_eq!(get("count"), e.count.to_string());
    assert_eq!(get("by_type"), by_type_text(e));
    // Partition columns (dictionary-encoded inside the scan) arrive as plain DATE / INT.
    assert!(get("first_event_date").ends_with(":DATE"), "{seen:?}");
    assert!(get("first_event_hour")
        .parse::<i32>()
        .is_ok_and(|h| (0..24).contains(&h)));
    assert_eq!(get("first_event_time_present"), "true");
    assert_eq!(get("user_count"), e.user_count.to_string());
    assert_eq!(get("nobody_count"), "0");
    // The driver (18.3.0) lists an empty Statement result's columns twice: a known
    // driver bug, apache/arrow-java#44 (fixed upstream by clearing its signature
    // before re-populating it). The columns themselves must be right.
    let empty_columns = get("empty_columns");
    assert!(
        empty_columns == "event_id,user_id" || empty_columns == "event_id,user_id,event_id,user_id",
        "{empty_columns}"
    );
    assert_eq!(get("empty_has_row"), "false");
    assert_eq!(get("empty_prepared_columns"), "2");
    assert_eq!(get("empty_prepared_has_row"), "false");
    assert_eq!(get("write"), "refused");
    assert_eq!(get("write_message_mentions_read_only"), "true");
    assert_eq!(get("bad_sql"), "refused");

    // The same driver with the token directly, and without any credentials.
    let with_token = jdbc(&jar, &format!("{url}&token={TOKEN}"), &e.user, None);
    assert_eq!(with_token.get("count"), Some(&e.count.to_string()));
    let mut anonymous = Command::new("java");
    anonymous
        .arg("--add-opens=java.base/java.nio=ALL-UNNAMED")
        .args(["-cp", &jar, &script("JdbcClient.java"), &url, &e.user]);
    let out = anonymous.output().expect("java");
    assert!(
        !out.status.success(),
        "no credentials but the JDBC client got in"
    );

    // ADBC (Python): bearer header, parameters, get_objects, table schema, Basic auth.
    let out = run_client(
        Command::new("python3").args([
            &script("adbc_client.py"),
            &format!("grpc://{addr}"),
            TOKEN,
            &e.user,
        ]),
        "the ADBC client",
    );
    let adbc: Value = serde_json::from_str(out.trim()).expect("ADBC client JSON");
    assert_eq!(adbc["count"], e.count, "{adbc}");
    assert_eq!(adbc["user_count"], e.user_count, "{adbc}");
    for (event_type, n) in &e.by_type {
        assert_eq!(adbc["by_type"][event_type], *n, "{adbc}");
    }
    assert_eq!(adbc["empty"]["rows"], 0);
    assert_eq!(
        adbc["empty"]["columns"],
        serde_json::json!(["event_id", "event_date"])
    );
    assert_eq!(
        adbc["empty"]["types"],
        serde_json::json!(["string", "date32[day]"])
    );
    assert!(
        adbc["items_type"]
            .as_str()
            .is_some_and(|t| t.starts_with("list<") && t.contains("struct<item_id: string")),
        "{adbc}"
    );
    assert_eq!(adbc["write"], "refused", "{adbc}");
    let events = &adbc["objects"]["datafusion.public.engagement_events"];
    assert_eq!(events["type"], "TABLE", "{adbc}");
    let object_columns = events["columns"].as_array().cloned().unwrap_or_default();
    assert!(
        object_columns.contains(&Value::from("event_time")),
        "{adbc}"
    );
    assert_eq!(
        adbc["objects"]["datafusion.public.hourly_engagement"]["type"],
        "VIEW"
    );
    assert_eq!(
        adbc["table_schema"]["event_time"], "timestamp[us, tz=UTC]",
        "{adbc}"
    );
    assert_eq!(adbc["table_schema"]["event_date"], "date32[day]", "{adbc}");
    assert_eq!(adbc["basic_auth_rec_count"], e.rec_count, "{adbc}");
    assert_eq!(adbc["wrong_password"], "refused", "{adbc}");

    // flightsql-dbapi and its SQLAlchemy dialect (what Superset uses).
    let (host, port) = addr.rsplit_once(':').expect("host:port");
    let out = run_client(
        Command::new("python3").args([&script("dbapi_client.py"), host, port, TOKEN]),
        "the flightsql-dbapi client",
    );
    let dbapi: Value = serde_json::from_str(out.trim()).expect("dbapi client JSON");
    assert_eq!(dbapi["count"], e.count, "{dbapi}");
    for (event_type, n) in &e.by_type {
        assert_eq!(dbapi["by_type"][event_type], *n, "{dbapi}");
    }
    assert!(
        dbapi["schemas"]
            .as_array()
            .is_some_and(|s| s.contains(&Value::from("public"))),
        "{dbapi}"
    );
    assert!(
        dbapi["tables"]
            .as_array()
            .is_some_and(|t| t.contains(&Value::from("engagement_events"))),
        "{dbapi}"
    );
    assert!(
        dbapi["columns"]
            .as_array()
            .is_some_and(|c| c.contains(&Value::from("user_id"))),
        "{dbapi}"
    );
    assert_eq!(dbapi["sqlalchemy_count"], e.rec_count, "{dbapi}");

    // The REPL over Flight SQL, typed into through a pseudo-terminal.
    repl_session(
        &[
            "sql",
            "--connect",
            &format!("grpc://{addr}"),
            "--token",
            TOKEN,
        ],
        e,
        &filled.path,
    );
    let mut server = server;
    assert_eq!(server.terminate().code(), Some(0), "{}", server.log_text());
    drop(filled.lake);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_repl_over_a_lake_folder_and_as_a_script() {
    let filled = filled_lake().await;
    let e = &filled.expected;
    let lake = filled.path.to_str().expect("utf-8 path");
    repl_session(&["sql", "--lake", lake], e, &filled.path);

    // -c: runs and exits; a failing statement makes the exit code non-zero.
    let out = hourlake()
        .command()
        .args(["sql", "--lake", lake, "--format", "csv", "-c"])
        .arg("SELECT count(*) AS n FROM engagement_events; SELECT 'a;b' AS s")
        .output()
        .expect("hourlake sql -c");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("n\n{}\ns\na;b\n", e.count)
    );
    let out = hourlake()
        .command()
        .args(["sql", "--lake", lake, "-c", "SELEC 1"])
        .output()
        .expect("hourlake sql -c");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("ERROR"));

    // SQL on stdin, with a backslash command.
    let mut child = hourlake()
        .command()
        .args(["sql", "--lake", lake])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("hourlake sql");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(b"\\format json\nSELECT count(*) AS n\n  FROM recommendation_events;\n")
            .expect("write stdin");
    }
    let out = child.wait_with_output().expect("hourlake sql");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("{{\"n\":{}}}", e.rec_count)),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// A person at the REPL: a multi-line statement, completion, `\d`, `\d NAME`,
/// `\timing`, `\format`, an error and going on, Ctrl-C cancelling a slow query, `\q`;
/// then history kept for the next session.
fn repl_session(args: &[&str], e: &Expected, lake: &Path) {
    let home = lake.with_extension(unique("home"));
    std::fs::create_dir_all(&home).expect("home");
    let history = home.join(".hourlake_history");
    let start = || {
        let mut command = hourlake().command();
        command
            .args(args)
            .env("HOME", &home)
            .env("TERM", "xterm")
            .env("RUST_LOG", "warn");
        rexpect::session::spawn_command(command, Some(60_000)).expect("spawning the REPL")
    };
    let mut p = start();
    p.exp_string("hourlake> ").expect("prompt");
    // A statement over two lines: nothing runs until the `;`.
    p.send_line("SELECT count(*) AS n").expect("type");
    p.send_line("  FROM engagement_events;").expect("type");
    p.exp_string(&format!("| {} ", e.count)).expect("count");
    p.exp_string("(1 row)").expect("row count");
    // Tab completion of a table name.
    p.send("SELECT count(*) AS m FROM recommendation_ev")
        .expect("type");
    p.send("\t").expect("tab");
    p.send_line(";").expect("enter");
    p.exp_string(&format!("| {} ", e.rec_count))
        .expect("completed table name ran");
    p.send_line("\\help").expect("\\help");
    p.exp_string("list tables and views").expect("help shown");
    p.send_line("\\d").expect("\\d");
    p.exp_string("daily_active_users").expect("tables listed");
    p.send_line("\\d engagement_events").expect("\\d NAME");
    p.exp_string("event_time").expect("columns listed");
    p.send_line("\\d no_such_table").expect("\\d missing");
    p.exp_string("no table or view named")
        .expect("missing table");
    p.send_line("SELEC 1;").expect("bad sql");
    p.exp_string("ERROR").expect("error shown");
    p.send_line("DROP TABLE engagement_events;").expect("write");
    p.exp_string("ERROR").expect("write refused");
    p.send_line("\\timing").expect("\\timing");
    p.exp_string("Timing is on.").expect("timing on");
    p.send_line("\\format vertical").expect("\\format");
    p.exp_string("Output format is Vertical.").expect("format");
    p.send_line(&format!(
        "SELECT count(*) AS n FROM engagement_events WHERE user_id = '{}';",
        e.user
    ))
    .expect("query");
    p.exp_string("-[ RECORD 1 ]-").expect("vertical record");
    p.exp_string(&format!("n | {}", e.user_count))
        .expect("vertical value");
    p.exp_string("Time: ").expect("timing shown");
    p.send_line("\\format table").expect("\\format table");
    p.exp_string("Output format is Table.").expect("format");
    // Ctrl-C cancels a slow query; the REPL stays and answers the next one.
    p.send_line("SELECT count(*) FROM generate_series(1, 100000000000);")
        .expect("slow query");
    std::thread::sleep(Duration::from_millis(1500));
    p.send_control('c').expect("Ctrl-C");
    p.exp_string("Cancelled.").expect("cancelled");
    p.send_line("SELECT 40 + 2 AS answer;")
        .expect("after cancel");
    p.exp_string("| 42 ").expect("still answering");
    p.send_line("\\q").expect("\\q");
    p.exp_eof().expect("exits on \\q");

    let kept = std::fs::read_to_string(&history).unwrap_or_default();
    assert!(
        kept.contains("SELECT 40 + 2 AS answer;"),
        "history: {kept:?}"
    );
    // The next session recalls it with the Up arrow (twice: `\q` came after it).
    let mut p = start();
    p.exp_string("hourlake> ").expect("prompt");
    p.send("\x1b[A").expect("up arrow");
    p.send("\x1b[A").expect("up arrow");
    p.send_line("").expect("enter");
    p.exp_string("| 42 ").expect("history recalled");
    p.send_control('d').expect("Ctrl-D");
    p.exp_eof().expect("exits on Ctrl-D");
}
