//! `scripts/kafka` starts, stops and starts again, reusing its cached jars.

use hourlake_testkit::kafka::run_script;
use hourlake_testkit::unique;

#[test]
fn kafka_script_survives_start_stop_start_with_cached_jars() {
    let dir = std::env::temp_dir().join(unique("hourlake-kafka-script"));
    let (ok, first, err) = run_script(&["start"], Some(&dir));
    assert!(ok, "first start failed:\n{err}");
    let bootstrap = first.lines().last().unwrap_or_default().trim().to_string();
    assert!(bootstrap.starts_with("127.0.0.1:"), "{first}");
    let (ok, status, _) = run_script(&["status"], Some(&dir));
    assert!(
        ok && status.contains(&bootstrap),
        "status while running: {status}"
    );

    let (ok, _, err) = run_script(&["stop"], Some(&dir));
    assert!(ok, "stop failed:\n{err}");
    let (ok, _, _) = run_script(&["status"], Some(&dir));
    assert!(!ok, "status must fail when stopped");

    let (ok, second, err) = run_script(&["start"], Some(&dir));
    assert!(ok, "second start failed:\n{err}");
    assert_eq!(
        second.lines().last().unwrap_or_default().trim(),
        bootstrap,
        "same address after restart"
    );
    assert!(
        err.to_lowercase().contains("cached"),
        "second start must reuse cached jars:\n{err}"
    );
    assert!(
        !err.contains("mvn "),
        "second start must not run Maven:\n{err}"
    );

    let (ok, _, err) = run_script(&["clean"], Some(&dir));
    assert!(ok, "clean failed:\n{err}");
    assert!(!dir.join("data").exists(), "clean removes the data dir");
}
