//! Ingest and the compactor running together against the real broker: compaction
//! never loses or doubles a row, removes the producer's resends, brings every closed
//! hour down to one file, keeps rollups exact, and a second compactor keeps off.

use std::time::{Duration, Instant};

use hourlake_catalog::TableId;
use hourlake_compactor::plan::files_by_hour;
use hourlake_testkit::binary::{num, Daemon};
use hourlake_testkit::http::{http_get, metric};
use hourlake_testkit::kafka::{self, end_offsets, wait_committed};
use hourlake_testkit::lake::scalar;
use hourlake_testkit::setup::Setup;

use crate::hourlake;

#[tokio::test(flavor = "multi_thread")]
async fn compaction_alongside_ingest_keeps_every_event_once_and_rollups_exact() {
    let broker = kafka::shared();
    let s = Setup::new(&broker.bootstrap, 4).await;
    let (lake, lake_arg) = (&s.lake, s.lake_arg());

    // Event times start three hours ago, so every hour this test writes is closed
    // (closed-after 0 s) and must end up deduplicated, in one file, and rolled up.
    let start = (chrono::Utc::now() - chrono::Duration::hours(3)).to_rfc3339();
    let producer = s
        .produce(&hourlake())
        .with("count", 240_000)
        .with("rate", 2000)
        .with("duplicate-fraction", "0.03")
        .with("late-fraction", "0.05")
        .with("bad-fraction", "0.005")
        .with("seed", 21)
        .with("start-time", &start)
        .spawn();
    let ingest = s.ingest(&hourlake(), &[]);
    let compactor = start_watcher(&s, &lake_arg, &[]);
    let metrics = compactor.metrics_addr();

    // A second compactor, started while the first works, must not act.
    tokio::time::sleep(Duration::from_secs(20)).await;
    let second_out = second_compactor_keeps_off(&lake_arg, &[]);

    let report = producer.wait_async().await;
    // Ingest commits to Kafka only after the Delta commit holding those messages.
    let ends = end_offsets(&broker.bootstrap, &s.topics());
    let (bootstrap, group) = (broker.bootstrap.clone(), s.group.clone());
    tokio::task::spawn_blocking(move || {
        wait_committed(&bootstrap, &group, &ends, Duration::from_secs(120))
    })
    .await
    .expect("ingest caught up");
    // Let the compactor see the last commits (a pass every 3 s): two more passes
    // after ingest caught up leave nothing for it to do. Then stop it cleanly. (The
    // pass under way may be rewriting a few thousand small files, which takes minutes
    // in a debug build on a busy 2-core machine: the deadline is for a compactor that
    // stopped passing, not for a slow one.)
    let distinct = num(&report, "/sent") - num(&report, "/malformed") - num(&report, "/duplicates");
    let passes = |text: &str| metric(text, "hourlake_compactor_passes_total");
    let seen = passes(&http_get(&metrics, "/metrics").1);
    let deadline = Instant::now() + Duration::from_secs(600);
    while passes(&http_get(&metrics, "/metrics").1) < seen + 2.0 {
        assert!(
            Instant::now() < deadline,
            "compactor stopped passing:\n{}",
            compactor.log_text()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (_, metrics_text) = http_get(&metrics, "/metrics");
    let mut compactor = compactor;
    let compactor_log = compactor.log_text();
    assert_eq!(compactor.terminate().code(), Some(0), "{compactor_log}");
    let mut ingest = ingest;
    let ingest_log = ingest.log_text();
    assert_eq!(ingest.terminate().code(), Some(0), "{ingest_log}");

    // Every event exactly once: the resends are gone, nothing else is.
    let ids = scalar(
        lake,
        "SELECT count(DISTINCT event_id) FROM (SELECT event_id FROM engagement_events \
         UNION ALL SELECT event_id FROM recommendation_events)",
    )
    .await as u64;
    let rows = scalar(
        lake,
        "SELECT (SELECT count(*) FROM engagement_events) + (SELECT count(*) FROM recommendation_events)",
    )
    .await as u64;
    assert_eq!(ids, distinct, "every accepted event is in the lake");
    assert_eq!(rows, distinct, "and only once");
    let failures: Vec<&str> = compactor_log
        .lines()
        .filter(|l| l.contains("failed"))
        .collect();
    assert!(
        metric(&metrics_text, "hourlake_compactor_pass_errors_total") == 0.0,
        "{failures:#?}"
    );
    // Each removed resend was counted: by the watcher, or by the one-shot compactor for a
    // table the watcher did not hold yet (recommendation_events appears a little later).
    let second_removed: u64 = second_out
        .split(" duplicates removed")
        .filter_map(|before| before.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    let counted = metric(&metrics_text, "hourlake_compactor_duplicates_removed_total") as u64;
    assert_eq!(
        counted + second_removed,
        num(&report, "/duplicates"),
        "removed resends counted by the watcher ({counted}) and the one-shot compactor ({second_removed}):\n{second_out}"
    );
    assert!(!compactor_log.contains("pass failed"), "{compactor_log}");
    // Each stage's freshness: commit → compacted, hour end → rolled up.
    for stage in [
        "hourlake_compactor_commit_to_compacted_seconds_count",
        "hourlake_compactor_hour_end_to_rollup_seconds_count",
    ] {
        assert!(
            metric(&metrics_text, stage) > 0.0,
            "{stage}:\n{metrics_text}"
        );
    }
    assert!(!ingest_log.contains("commit failed"), "{ingest_log}");

    // After compaction every Kafka offset is still in exactly one place: a row, a dead
    // letter, or a removed duplicate in the ledger.
    let audited = hourlake()
        .command()
        .args(["audit", "--lake", &lake_arg, "--brokers", &broker.bootstrap])
        .args(["--format", "json"])
        .output()
        .expect("hourlake audit");
    let account: serde_json::Value = serde_json::from_slice(&audited.stdout).unwrap_or_else(|e| {
        panic!(
            "audit printed no JSON ({e}): {}",
            String::from_utf8_lossy(&audited.stderr)
        )
    });
    assert!(audited.status.success(), "{account:#}");
    let total = |key: &str| -> u64 {
        account
            .as_array()
            .map(|ps| ps.iter().filter_map(|p| p[key].as_u64()).sum())
            .unwrap_or(0)
    };
    assert_eq!(
        total("missing") + total("doubled") + total("lag"),
        0,
        "{account:#}"
    );
    assert_eq!(
        total("removed_duplicates"),
        num(&report, "/duplicates"),
        "{account:#}"
    );
    assert_eq!(
        total("in_tables") + total("dead_letters") + total("removed_duplicates"),
        total("expected"),
        "{account:#}"
    );
    assert_eq!(total("expected"), num(&report, "/sent"), "{account:#}");

    // `hourlake status` says the same at a glance: no lag, offsets exact, every closed
    // hour rolled up, the watcher's lease released, the rows the tables hold.
    let status_of = |format: &str| {
        hourlake()
            .command()
            .args([
                "status",
                "--lake",
                &lake_arg,
                "--brokers",
                &broker.bootstrap,
            ])
            .args(["--closed-after-secs", "0", "--format", format])
            .output()
            .expect("hourlake status")
    };
    let out = status_of("json");
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "status printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(out.status.success(), "{status:#}");
    assert_eq!(status["verdict"], "exact", "{status:#}");
    let partitions = status["partitions"].as_array().expect("partitions");
    assert_eq!(partitions.len(), 8, "{status:#}");
    assert!(partitions.iter().all(|p| p["lag"] == 0), "{status:#}");
    let table = |name: &str| {
        status["tables"]
            .as_array()
            .and_then(|ts| ts.iter().find(|t| t["table"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("no {name} in {status:#}"))
    };
    let event_rows: u64 = ["engagement_events", "recommendation_events"]
        .iter()
        .map(|name| table(name)["rows"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(event_rows, distinct, "{status:#}");
    let engagement = table("engagement_events");
    assert!(engagement["version"].as_i64().unwrap_or(0) > 0);
    assert_eq!(engagement["lease"]["holder"], "watcher", "{engagement:#}");
    assert_eq!(engagement["lease"]["released"], true, "{engagement:#}");
    assert!(engagement["recent_hours"]
        .as_array()
        .is_some_and(|hours| !hours.is_empty() && hours.iter().all(|h| h["files"] == 1)));
    assert!(engagement["last_commit_age_secs"].as_f64().is_some());
    for rollup in status["rollups"].as_array().expect("rollups") {
        assert!(
            rollup["closed_hours"].as_u64().unwrap_or(0) > 10,
            "{rollup:#}"
        );
        assert_eq!(rollup["rolled_up"], rollup["closed_hours"], "{rollup:#}");
    }
    let out = status_of("table");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("offsets: exact"), "{text}");
    assert!(text.contains("released by watcher"), "{text}");

    // Every closed hour is down to one file.
    for id in TableId::EVENTS {
        let table = lake.open(*id).await.expect("open").expect("exists");
        let hours = files_by_hour(*id, &table).expect("files");
        assert!(hours.len() > 10, "late events spread over many hours");
        for (hour, files) in hours {
            assert_eq!(files.len(), 1, "{id} {hour}: {} files", files.len());
        }
    }

    // Rollups hold exactly the raw counts, hour by hour.
    let mismatched = scalar(
        lake,
        "SELECT count(*) FROM (SELECT event_date, event_hour, count(*) AS n FROM engagement_events GROUP BY 1, 2) raw \
         FULL OUTER JOIN (SELECT event_date, event_hour, events FROM engagement_hourly WHERE event_type = 'ALL' \
           AND device_type = 'ALL' AND app_version = 'ALL' AND country = 'ALL') r \
         ON raw.event_date = r.event_date AND raw.event_hour = r.event_hour WHERE (raw.n IS DISTINCT FROM r.events)",
    )
    .await;
    assert_eq!(mismatched, 0);
    let rec_mismatched = scalar(
        lake,
        "SELECT count(*) FROM (SELECT event_date, event_hour, coalesce(model_version, 'unknown') AS model_version, \
           coalesce(surface, 'unknown') AS surface, \
           sum(CASE WHEN event_type = 'rec_click' THEN 1 ELSE 0 END) AS clicks, \
           sum(CASE WHEN event_type = 'rec_served' THEN 1 ELSE 0 END) AS served FROM recommendation_events \
           GROUP BY 1, 2, 3, 4) raw \
         FULL OUTER JOIN (SELECT * FROM recommendation_hourly WHERE model_version <> 'ALL' AND surface <> 'ALL') r \
         ON raw.event_date = r.event_date AND raw.event_hour = r.event_hour AND raw.model_version = r.model_version \
           AND raw.surface = r.surface WHERE (raw.clicks IS DISTINCT FROM r.clicks) OR (raw.served IS DISTINCT FROM r.served)",
    )
    .await;
    assert_eq!(rec_mismatched, 0);

    // Per minute, the same account: a one-shot pass judges every minute read (settled
    // at once here) — what ingest read of each is in the tables, the dead letters or the
    // ledger of removed resends, nothing missing, nothing doubled.
    let one_shot = hourlake()
        .command()
        .args(["compact", "--lake", &lake_arg, "--closed-after-secs", "0"])
        .args(["--settle-secs", "0"])
        .output()
        .expect("hourlake compact");
    assert!(
        one_shot.status.success(),
        "{}",
        String::from_utf8_lossy(&one_shot.stderr)
    );
    let loss = |column: &str| {
        let sql = format!("SELECT coalesce(sum({column}), 0) FROM loss_minutely");
        async move { scalar(lake, &sql).await as u64 }
    };
    assert_eq!(loss("ingested").await, num(&report, "/sent"));
    assert_eq!(loss("missing").await + loss("surplus").await, 0);
    assert_eq!(loss("in_tables").await, distinct);
    assert_eq!(loss("dead_letters").await, num(&report, "/malformed"));
    assert_eq!(
        loss("removed_duplicates").await,
        num(&report, "/duplicates")
    );
    assert_eq!(
        scalar(
            lake,
            "SELECT count(*) FROM (SELECT minute, _kafka_topic FROM loss_minutely \
             GROUP BY 1, 2 HAVING count(*) > 1)"
        )
        .await,
        0,
        "one row per minute and topic"
    );
    // Every (deduplicated) engagement event is in exactly one session, and the session
    // rollup counts every final session once.
    let events = scalar(lake, "SELECT count(*) FROM engagement_events").await;
    assert_eq!(
        scalar(lake, "SELECT sum(events) FROM sessions").await,
        events
    );
    let final_sessions = scalar(lake, "SELECT count(*) FROM sessions WHERE is_final").await;
    assert_eq!(
        scalar(
            lake,
            "SELECT coalesce(sum(sessions), 0) FROM sessions_hourly WHERE device_type = 'ALL' \
             AND device_os = 'ALL' AND app_version = 'ALL' AND country = 'ALL'"
        )
        .await,
        scalar(
            lake,
            "SELECT count(*) FROM sessions s WHERE is_final AND EXISTS (SELECT 1 FROM sessions_hourly h \
               WHERE h.event_date = s.event_date AND h.event_hour = s.event_hour)"
        )
        .await,
    );
    assert!(final_sessions > 0);
}

/// Starts `hourlake compact --watch` (id `watcher`, a pass every 3 s, every hour closed
/// at once, metrics on a free port) on the lake at `location`, with `env` added.
pub(crate) fn start_watcher(s: &Setup, location: &str, env: &[(String, String)]) -> Daemon {
    hourlake().daemon_with_env(
        "compactor",
        &s.lake_path(),
        &[
            "compact",
            "--watch",
            "--lake",
            location,
            "--closed-after-secs",
            "0",
            "--compact-interval-secs",
            "3",
            "--compactor-id",
            "watcher",
            "--metrics-addr",
            "127.0.0.1:0",
        ],
        env,
    )
}

/// Runs a one-shot `hourlake compact` (id `second`) on the lake at `location` while the
/// compactor `watcher` holds the leases: it must succeed and skip `engagement_events`.
/// Returns what it printed.
pub(crate) fn second_compactor_keeps_off(location: &str, env: &[(String, String)]) -> String {
    let second = hourlake()
        .command()
        .args([
            "compact",
            "--lake",
            location,
            "--closed-after-secs",
            "0",
            "--compactor-id",
            "second",
        ])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("second compactor");
    let second_out = String::from_utf8_lossy(&second.stdout).into_owned();
    assert!(
        second.status.success(),
        "{second_out}{}",
        String::from_utf8_lossy(&second.stderr)
    );
    assert!(
        second_out.contains("engagement_events: skipped, watcher holds the compactor lease"),
        "{second_out}"
    );
    second_out
}
