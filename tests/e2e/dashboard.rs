//! The live dashboard (`GET /`) in headless Chromium (Debian's `chromium` driven by
//! Playwright for Python: `tests/clients/dashboard_check.py`): the page loads with no
//! console error, every number on it equals the same SQL asked directly, an idle
//! refresh is a 304, it updates when new events arrive, and screenshots are saved
//! (under the cargo target's temporary folder: `dashboard/`).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use hourlake_testkit::binary::num;
use hourlake_testkit::kafka;
use hourlake_testkit::lake::wait_exactly_once;
use hourlake_testkit::setup::Setup;
use serde_json::Value;

use crate::hourlake;
use crate::serve::served_addr;

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_shows_what_sql_answers_and_follows_new_events() {
    let installed = Command::new(format!("{}/scripts/bi-clients", env!("CARGO_MANIFEST_DIR")))
        .arg("dashboard")
        .status()
        .expect("scripts/bi-clients dashboard");
    assert!(installed.success(), "installing chromium and playwright");

    let broker = kafka::shared();
    let s = Setup::new(&broker.bootstrap, 2).await;
    let lake_arg = s.lake_arg();
    let _ingest = s.ingest(&hourlake(), &[]);
    let report = s
        .produce(&hourlake())
        .with("count", 3000)
        .with("seed", 23)
        .run_async()
        .await;
    assert!(num(&report, "/sent") > 0);
    wait_exactly_once(&s.lake, &s.bootstrap, &s.topics(), Duration::from_secs(120)).await;
    let server = hourlake().daemon(
        "serve-dashboard",
        &s.lake_path(),
        &[
            "serve",
            "--lake",
            &lake_arg,
            "--http",
            "127.0.0.1:0",
            "--token",
            "dash-token",
        ],
    );
    let base = format!("http://{}", served_addr(&server));

    // The page itself needs no token; its queries send the one given.
    let page = reqwest::get(format!("{base}/")).await.expect("GET /");
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-type"]
        .to_str()
        .is_ok_and(|t| t.starts_with("text/html")));
    assert!(page.headers().contains_key("content-security-policy"));

    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    std::fs::create_dir_all(&shots).expect("screenshot folder");
    let shot = shots.join("dashboard.png");
    let mut check = Command::new("python3")
        .arg(format!(
            "{}/tests/clients/dashboard_check.py",
            env!("CARGO_MANIFEST_DIR")
        ))
        .arg(&base)
        .arg(&shot)
        .arg("dash-token")
        .args(["--expect-304", "--wait-change", "tile-events-total"])
        .args(["--timeout", "90"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 dashboard_check.py");
    let stdout = check.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    // The first check passed (its JSON line): now new events arrive.
    let first: Value = match lines.next() {
        Some(Ok(line)) => serde_json::from_str(&line).unwrap_or(Value::String(line)),
        other => {
            let out = check.wait_with_output().expect("check");
            panic!(
                "the dashboard check failed before its first line ({other:?}):\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    };
    assert!(first["tiles"].is_object(), "{first}");
    assert!(first["not_modified"].as_u64().unwrap_or(0) > 0, "{first}");
    assert!(shot.exists(), "no screenshot at {}", shot.display());
    s.produce(&hourlake())
        .with("count", 1000)
        .with("seed", 24)
        .run_async()
        .await;
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let out = check.wait_with_output().expect("check");
    assert!(
        out.status.success(),
        "the dashboard check failed:\n{}\n{}",
        rest.join("\n"),
        String::from_utf8_lossy(&out.stderr)
    );
    let changed: Value = rest
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or(Value::Null);
    assert_eq!(changed["changed"], "tile-events-total", "{changed}");
    assert!(
        changed["to"].as_f64() > changed["from"].as_f64(),
        "{changed}"
    );
}
