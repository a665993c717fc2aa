//! Retention against real Delta tables on disk: partitions past their keep time go
//! whole, the rest stays readable, and the offset audit stays exact.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{
    ArrayRef, AsArray, BinaryArray, Date32Array, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow::datatypes::{Date32Type, Int32Type};
use deltalake::protocol::SaveMode;
use hourlake_catalog::partition::date_of;
use hourlake_catalog::{Hour, Lake, TableId};
use hourlake_testkit::events::mix;
use hourlake_testkit::lake::{query, scalar};

use super::*;
use crate::audit::{audit, audit_settled, PartitionAudit};
use crate::dedup::RemovedCopy;
use crate::tests::{append, compact, config, event, files_in};
use crate::{Compactor, CompactorConfig};

const HOUR: i64 = 3_600_000_000;
const DAY_MICROS: i64 = 24 * HOUR;
const DAYS_30: Duration = Duration::from_secs(30 * 24 * 3600);

/// Dead letters of `app-events` partition `partition`, one per `(offset, ingest_date)`.
async fn append_dead_letters(lake: &Lake, partition: i32, rows: &[(i64, i32)]) {
    let n = rows.len();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec!["app-events"; n])),
        Arc::new(Int32Array::from(vec![partition; n])),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
        Arc::new(BinaryArray::from(vec![None::<&[u8]>; n])),
        Arc::new(TimestampMicrosecondArray::from(vec![None; n]).with_timezone("UTC")),
        Arc::new(BinaryArray::from(vec![&b"{"[..]; n])),
        Arc::new(Int64Array::from(vec![1; n])),
        Arc::new(StringArray::from(vec!["bad_json"; n])),
        Arc::new(StringArray::from(vec!["not JSON"; n])),
        Arc::new(
            // Ingested long ago (settled for the continuous audit), whatever the date.
            TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| r.0 * 1000))
                .with_timezone("UTC"),
        ),
        Arc::new(Date32Array::from_iter_values(rows.iter().map(|r| r.1))),
    ];
    let batch = RecordBatch::try_new(TableId::DeadLetters.schema(), columns).unwrap();
    lake.open_or_create(TableId::DeadLetters)
        .await
        .unwrap()
        .write(vec![batch])
        .with_save_mode(SaveMode::Append)
        .await
        .unwrap();
}

/// The hours a table of hour rows holds (`event_date`, `event_hour` columns).
async fn hours_of(lake: &Lake, table: &str) -> BTreeSet<Hour> {
    let mut hours = BTreeSet::new();
    for b in query(
        lake,
        &format!("SELECT DISTINCT event_date, event_hour FROM {table}"),
    )
    .await
    {
        let dates = b.column(0).as_primitive::<Date32Type>();
        let hs = b.column(1).as_primitive::<Int32Type>();
        for i in 0..b.num_rows() {
            hours.insert(Hour {
                date: dates.value(i),
                hour: hs.value(i),
            });
        }
    }
    hours
}

fn account(audits: &[PartitionAudit], partition: i32) -> &PartitionAudit {
    audits
        .iter()
        .find(|a| a.partition == partition)
        .unwrap_or_else(|| panic!("partition {partition}: {audits:?}"))
}

fn retention(rollups: Option<Duration>) -> CompactorConfig {
    CompactorConfig {
        vacuum_retention: Duration::ZERO,
        retention: RetentionConfig {
            events: Some(DAYS_30),
            dead_letters: Some(DAYS_30),
            rollups,
        },
        ..config()
    }
}

/// A lake whose hours span 40 days: with 30 days kept, the two old hours go as whole
/// partitions (their files vacuumed), the recent ones stay; rollups stay while rollup
/// retention is unset and are trimmed once it is set; dead letters go by their own
/// setting. Late events put old hours' offsets in the middle of the range, and the
/// audit still finds every offset exactly once.
#[tokio::test]
async fn old_partitions_go_whole_and_every_offset_stays_accounted_for() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(dir.path()).unwrap();
    let now = chrono::Utc::now().timestamp_micros();
    let old = [
        Hour::of_micros(now - 40 * DAY_MICROS),
        Hour::of_micros(now - 35 * DAY_MICROS),
    ];
    let recent = [
        Hour::of_micros(now - 2 * DAY_MICROS),
        Hour::of_micros(now - 3 * HOUR),
    ];
    let hour_of = |o: i64| [old[0], recent[0], old[1], recent[1]][(mix(11, o as u64) % 4) as usize];
    for a in 0..4i64 {
        let rows: Vec<_> = (a * 100..(a + 1) * 100)
            .map(|o| event(21, o as u64, hour_of(o), 50, o))
            .collect();
        append(&lake, &rows).await;
    }
    let old_offsets: Vec<i64> = (0..400).filter(|o| old.contains(&hour_of(*o))).collect();
    let n_old = old_offsets.len() as i64;
    assert!(n_old > 100 && n_old < 300, "{n_old}");
    // A removed copy whose rewrite did not commit: still in an old hour, listed in the
    // ledger. Once its hour is dropped, the ledger accounts for it, not the runs.
    let leftover = old_offsets[7];
    let copy = RemovedCopy {
        removed: ("app-events".into(), 0, leftover),
        event_id: format!("ev-21-{leftover}"),
        kept: ("app-events".into(), 0, 0),
    };
    crate::ledger::record_removed(&lake, TableId::EngagementEvents, hour_of(leftover), &[copy])
        .await
        .unwrap();
    // Dead letters of partition 1: even offsets ingested 40 days ago, odd ones today.
    let today = date_of(now);
    let letters: Vec<(i64, i32)> = (0..20)
        .map(|o| (o, if o % 2 == 0 { today - 40 } else { today }))
        .collect();
    append_dead_letters(&lake, 1, &letters).await;

    // Roll every hour up, with retention off.
    compact(&lake).await;
    let all_hours: BTreeSet<Hour> = old.iter().chain(&recent).copied().collect();
    assert_eq!(hours_of(&lake, "engagement_hourly").await, all_hours);
    let table = lake.open(TableId::EngagementEvents).await.unwrap().unwrap();
    let by_hour = crate::plan::files_by_hour(TableId::EngagementEvents, &table).unwrap();
    let old_files: usize = old.iter().map(|h| by_hour[h].len()).sum();
    assert!(old.iter().all(|h| files_in(&lake, *h) > 0));

    // Events and dead letters kept 30 days, rollups forever.
    let compactor = Compactor::new(lake.clone(), retention(None), "test");
    let report = compactor.run_pass_with_maintenance().await.unwrap();
    let dropped = |id: TableId| report.dropped.iter().find(|d| d.table == id).cloned();
    let events = dropped(TableId::EngagementEvents).unwrap_or_else(|| panic!("{report}"));
    assert_eq!(
        (events.partitions, events.files, events.rows),
        (2, old_files, n_old as u64),
        "{report}"
    );
    let letters_dropped = dropped(TableId::DeadLetters).unwrap_or_else(|| panic!("{report}"));
    assert_eq!((letters_dropped.partitions, letters_dropped.rows), (1, 10));
    assert_eq!(dropped(TableId::EngagementHourly), None, "rollups are kept");
    assert!(report
        .to_string()
        .contains("retention dropped 2 partitions"));

    // Recent hours stay, readable; old files are vacuumed (retention 0 here).
    assert_eq!(
        hours_of(&lake, "engagement_events").await,
        recent.iter().copied().collect()
    );
    assert_eq!(
        scalar(&lake, "SELECT count(*) FROM engagement_events").await,
        400 - n_old
    );
    assert!(old.iter().all(|h| files_in(&lake, *h) == 0));
    assert!(recent.iter().all(|h| files_in(&lake, *h) > 0));
    assert_eq!(
        scalar(
            &lake,
            "SELECT count(*) FROM dead_letters WHERE _kafka_offset % 2 = 1"
        )
        .await,
        10
    );
    assert_eq!(scalar(&lake, "SELECT count(*) FROM dead_letters").await, 10);
    let old_letters = dir.path().join("dead_letters").join(format!(
        "ingest_date={}",
        hourlake_catalog::partition::date_string(today - 40)
    ));
    assert_eq!(std::fs::read_dir(old_letters).map_or(0, |d| d.count()), 0);
    assert_eq!(hours_of(&lake, "engagement_hourly").await, all_hours);

    // Counted per table.
    let label = |t: &str| vec![("table", t.to_string())];
    let m = compactor.metrics();
    let events_label = label("engagement_events");
    assert_eq!(
        m.retention_dropped_partitions
            .get_or_create(&events_label)
            .get(),
        2
    );
    assert_eq!(
        m.retention_dropped_rows.get_or_create(&events_label).get(),
        n_old as u64
    );
    assert_eq!(
        m.retention_dropped_rows
            .get_or_create(&label("dead_letters"))
            .get(),
        10
    );

    // Every offset in exactly one place: rows, dead letters, the removed copy, expired.
    let recorded = scalar(&lake, "SELECT count(*) FROM expired_offsets").await;
    assert_eq!(
        recorded as usize,
        events.offset_runs + letters_dropped.offset_runs
    );
    let audits = audit(&lake, &Default::default()).await.unwrap();
    let p0 = account(&audits, 0);
    assert_eq!(
        (p0.expected, p0.in_tables, p0.removed_duplicates, p0.expired),
        (400, 400 - n_old, 1, n_old - 1),
        "{audits:?}"
    );
    let p1 = account(&audits, 1);
    assert_eq!((p1.expected, p1.dead_letters, p1.expired), (20, 10, 10));
    assert!(audits.iter().all(PartitionAudit::is_exact), "{audits:?}");
    // The continuous audit stops at the highest settled row of a partition (what lies
    // above may not have landed everywhere yet): runs beyond it wait, nothing is missing.
    let settled = audit_settled(&lake, now - 120_000_000).await.unwrap();
    assert!(settled.iter().all(PartitionAudit::is_exact), "{settled:?}");
    assert!(account(&settled, 0).expired < n_old);
    assert_eq!(account(&settled, 1).expired, 10, "{settled:?}");

    // Rollups kept 31 days: their two old days go too (and those of the sessions and
    // their rollup, kept as long), nothing else.
    let trimming = Compactor::new(
        lake.clone(),
        retention(Some(DAYS_30 + Duration::from_secs(86_400))),
        "test",
    );
    let report = trimming.run_pass_with_maintenance().await.unwrap();
    let tables: Vec<TableId> = report.dropped.iter().map(|d| d.table).collect();
    assert_eq!(
        tables,
        [
            TableId::EngagementHourly,
            TableId::EngagementHourlyTotals,
            TableId::Sessions,
            TableId::SessionsHourly,
            TableId::SessionsHourlyTotals
        ],
        "{report}"
    );
    for table in ["sessions", "sessions_hourly", "sessions_hourly_totals"] {
        assert!(hours_of(&lake, table)
            .await
            .is_subset(&recent.iter().copied().collect()));
    }
    for table in ["engagement_hourly", "engagement_hourly_totals"] {
        assert_eq!(
            hours_of(&lake, table).await,
            recent.iter().copied().collect()
        );
    }
    // Trimmed hours are not rolled up again, and a second pass drops nothing.
    let report = trimming.run_pass_with_maintenance().await.unwrap();
    assert!(report.dropped.is_empty(), "{report}");
    assert!(report
        .table(TableId::EngagementEvents)
        .is_some_and(|t| t.rolled_up.is_empty()));
    let audits = audit(&lake, &Default::default()).await.unwrap();
    assert!(audits.iter().all(PartitionAudit::is_exact), "{audits:?}");
    trimming.release().await.unwrap();
    compactor.release().await.unwrap();
}

/// Runs recorded by a drop that never committed do not count, and the drop's retry
/// (the same number) replaces them: the audit counts the runs of the committed drop
/// only, once.
#[tokio::test]
async fn only_committed_drops_count_and_a_retry_replaces_its_failed_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(dir.path()).unwrap();
    let now = chrono::Utc::now().timestamp_micros();
    let (old, recent) = (
        Hour::of_micros(now - 40 * DAY_MICROS),
        Hour::of_micros(now - DAY_MICROS),
    );
    let rows: Vec<_> = (0..20i64)
        .map(|o| event(4, o as u64, if o < 10 { old } else { recent }, 20, o))
        .collect();
    append(&lake, &rows).await;
    let run = |first, last| OffsetRun {
        topic: "app-events".into(),
        partition: 0,
        first,
        last,
    };
    // A failed attempt of drop 1 recorded wrong runs; nothing committed it.
    let cfg = retention(None);
    record_runs(
        &lake,
        &cfg,
        TableId::EngagementEvents,
        1,
        &[run(0, 3), run(5, 12)],
    )
    .await
    .unwrap();
    let audits = audit(&lake, &Default::default()).await.unwrap();
    assert_eq!(
        (audits[0].expired, audits[0].in_tables),
        (0, 20),
        "{audits:?}"
    );
    assert!(audits[0].is_exact());
    // Another attempt found nothing to record: the runs of drop 1 are gone.
    record_runs(&lake, &cfg, TableId::EngagementEvents, 1, &[])
        .await
        .unwrap();
    assert_eq!(
        scalar(&lake, "SELECT count(*) FROM expired_offsets").await,
        0
    );
    record_runs(&lake, &cfg, TableId::EngagementEvents, 1, &[run(0, 3)])
        .await
        .unwrap();

    let compactor = Compactor::new(lake.clone(), cfg, "test");
    let report = compactor.run_pass_with_maintenance().await.unwrap();
    assert_eq!(report.dropped.len(), 1, "{report}");
    assert_eq!(report.dropped[0].offset_runs, 1);
    let table = lake.open(TableId::EngagementEvents).await.unwrap().unwrap();
    assert_eq!(
        committed_drop(TableId::EngagementEvents, &table)
            .await
            .unwrap(),
        1
    );
    let runs = query(
        &lake,
        "SELECT first_offset, last_offset, drop_id, source_table FROM expired_offsets",
    )
    .await;
    let rows: usize = runs.iter().map(RecordBatch::num_rows).sum();
    assert_eq!(rows, 1);
    assert_eq!(
        scalar(
            &lake,
            "SELECT last_offset - first_offset + 1 FROM expired_offsets"
        )
        .await,
        10
    );
    let audits = audit(&lake, &Default::default()).await.unwrap();
    assert_eq!(
        (audits[0].expected, audits[0].in_tables, audits[0].expired),
        (20, 10, 10),
        "{audits:?}"
    );
    assert!(audits[0].is_exact());

    // A later failed attempt (drop 2, never committed) changes nothing.
    record_runs(
        &lake,
        &retention(None),
        TableId::EngagementEvents,
        2,
        &[run(10, 19)],
    )
    .await
    .unwrap();
    let audits = audit(&lake, &Default::default()).await.unwrap();
    assert_eq!(
        (audits[0].expired, audits[0].missing),
        (10, 0),
        "{audits:?}"
    );
    compactor.release().await.unwrap();
}

/// Another compactor holding the table's lease: retention leaves the table alone.
#[tokio::test]
async fn retention_waits_for_the_lease() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(dir.path()).unwrap();
    let old = Hour::of_micros(chrono::Utc::now().timestamp_micros() - 40 * DAY_MICROS);
    append(&lake, &[event(5, 0, old, 5, 0)]).await;
    let holder = Compactor::new(lake.clone(), config(), "holder");
    holder.run_pass().await.unwrap();
    let waiting = Compactor::new(lake.clone(), retention(None), "waiting");
    let report = waiting.run_pass_with_maintenance().await.unwrap();
    assert!(report.dropped.is_empty(), "{report}");
    assert_eq!(
        scalar(&lake, "SELECT count(*) FROM engagement_events").await,
        1
    );
    holder.release().await.unwrap();
    let report = waiting.run_pass_with_maintenance().await.unwrap();
    assert_eq!(report.dropped.len(), 1, "{report}");
    waiting.release().await.unwrap();
}

/// Where retention runs, the ledger exists (empty until something is dropped), so
/// whoever reads every table of the lake finds it.
#[tokio::test]
async fn retention_creates_the_ledger_before_it_drops_anything() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(dir.path()).unwrap();
    let recent = Hour::of_micros(chrono::Utc::now().timestamp_micros() - HOUR);
    append(&lake, &[event(6, 0, recent, 5, 0)]).await;
    let compactor = Compactor::new(lake.clone(), retention(None), "test");
    let report = compactor.run_pass_with_maintenance().await.unwrap();
    assert!(report.dropped.is_empty(), "{report}");
    assert_eq!(
        scalar(&lake, "SELECT count(*) FROM expired_offsets").await,
        0
    );
    assert_eq!(
        scalar(&lake, "SELECT count(*) FROM engagement_events").await,
        1
    );
    compactor.release().await.unwrap();
}

/// Ingest keeps appending while a drop commits: appends to kept hours do not conflict
/// with it; an append into a dropped hour does (that drop would miss its rows), so the
/// drop fails and the next pass retries it.
#[tokio::test]
async fn a_drop_conflicts_only_with_appends_into_the_dropped_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(dir.path()).unwrap();
    let now = chrono::Utc::now().timestamp_micros();
    let (old, recent) = (
        Hour::of_micros(now - 40 * DAY_MICROS),
        Hour::of_micros(now - HOUR),
    );
    append(&lake, &[event(8, 0, old, 5, 0), event(8, 1, recent, 5, 1)]).await;
    let id = TableId::EngagementEvents;
    let cutoff = Cutoff::of(id, DAYS_30, now);
    let plan = |table: DeltaTable| async move {
        let (files, partitions) = expired_files(id, &table, cutoff).unwrap();
        assert_eq!((files.len(), partitions), (1, 1));
        (table, files)
    };
    let (planned, files) = plan(lake.open(id).await.unwrap().unwrap()).await;
    append(&lake, &[event(8, 2, recent, 5, 2)]).await;
    let props = || CommitProperties::default().with_create_checkpoint(false);
    commit_drop(id, &planned, &files, props(), cutoff)
        .await
        .unwrap();
    assert_eq!(
        scalar(&lake, "SELECT count(*) FROM engagement_events").await,
        2
    );

    append(&lake, &[event(8, 3, old, 5, 3)]).await;
    let (planned, files) = plan(lake.open(id).await.unwrap().unwrap()).await;
    append(&lake, &[event(8, 4, old, 5, 4)]).await;
    let err = commit_drop(id, &planned, &files, props(), cutoff)
        .await
        .unwrap_err();
    assert!(crate::rewrite::is_commit_conflict(&err), "{err}");
    assert_eq!(
        scalar(&lake, "SELECT count(*) FROM engagement_events").await,
        4
    );
}

#[test]
fn partitions_are_cut_at_whole_hours_and_days() {
    // 2026-11-22T13:45Z, 30 days kept: hours before 2026-10-23T13 go.
    let now = 1_795_355_100_000_000;
    let cut = Cutoff::of(TableId::EngagementEvents, DAYS_30, now);
    assert_eq!(
        cut.predicate(),
        "event_date < DATE '2026-10-23' OR (event_date = DATE '2026-10-23' AND event_hour < 13)"
    );
    let values = |date: &str, hour: Option<&str>| {
        let mut v = std::collections::HashMap::new();
        v.insert("event_date".to_string(), Some(date.to_string()));
        v.insert("ingest_date".to_string(), Some(date.to_string()));
        if let Some(h) = hour {
            v.insert("event_hour".to_string(), Some(h.to_string()));
        }
        v
    };
    let id = TableId::EngagementEvents;
    assert!(cut
        .expired(id, &values("2026-10-23", Some("12")))
        .unwrap()
        .is_some());
    assert!(cut
        .expired(id, &values("2026-10-23", Some("13")))
        .unwrap()
        .is_none());
    assert!(cut
        .expired(id, &values("2026-10-22", Some("23")))
        .unwrap()
        .is_some());
    assert!(cut.expired(id, &values("2026-10-23", None)).is_err());
    let days = Cutoff::of(TableId::DeadLetters, DAYS_30, now);
    assert_eq!(days.predicate(), "ingest_date < DATE '2026-10-23'");
    let dl = TableId::DeadLetters;
    assert!(days
        .expired(dl, &values("2026-10-22", None))
        .unwrap()
        .is_some());
    assert!(days
        .expired(dl, &values("2026-10-23", None))
        .unwrap()
        .is_none());
    let rollups = Cutoff::of(TableId::EngagementHourly, DAYS_30, now);
    assert_eq!(rollups.predicate(), "event_date < DATE '2026-10-23'");
}

#[test]
fn retention_settings_that_cannot_work_are_refused() {
    let days = |e, d, r| RetentionConfig::days(e, d, r);
    assert!(days(Some(30), Some(30), None).validate().is_ok());
    assert!(days(Some(30), None, Some(400)).validate().is_ok());
    assert!(days(None, None, None).is_off());
    assert!(
        days(Some(30), Some(30), Some(7)).validate().is_err(),
        "rollups shorter than events"
    );
    assert!(
        days(None, Some(30), Some(7)).validate().is_err(),
        "rollups without events"
    );
    assert!(days(Some(0), None, None).validate().is_err());
    let c = days(Some(2), Some(3), None);
    assert_eq!(
        c.keep(TableId::EngagementEvents),
        Some(Duration::from_secs(2 * 86_400))
    );
    assert_eq!(
        c.keep(TableId::DeadLetters),
        Some(Duration::from_secs(3 * 86_400))
    );
    assert_eq!(c.keep(TableId::EngagementHourly), None);
    assert_eq!(c.keep(TableId::ExpiredOffsets), None);
}

/// However many drops a lake sees, the ledger stays a few files with a checkpoint.
#[tokio::test]
async fn the_ledger_is_compacted_and_checkpointed_as_it_grows() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(dir.path()).unwrap();
    let cfg = retention(None);
    for drop_id in 1..=LEDGER_TIDY_EVERY {
        let run = OffsetRun {
            topic: "app-events".into(),
            partition: 0,
            first: drop_id as i64 * 10,
            last: drop_id as i64 * 10 + 4,
        };
        record_runs(&lake, &cfg, TableId::DeadLetters, drop_id, &[run])
            .await
            .unwrap();
    }
    let ledger = lake.open(TableId::ExpiredOffsets).await.unwrap().unwrap();
    let files = ledger.snapshot().unwrap().log_data().iter().count();
    assert_eq!(files, 1, "compacted");
    assert_eq!(
        scalar(&lake, "SELECT count(*) FROM expired_offsets").await,
        LEDGER_TIDY_EVERY as i64
    );
    let log = dir.path().join("expired_offsets/_delta_log");
    let checkpoints = std::fs::read_dir(log)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains("checkpoint.parquet")
        })
        .count();
    assert!(checkpoints >= 1);
}
