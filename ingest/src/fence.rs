//! The fence: before a table's commit, the offsets the table holds of each partition in
//! it must be the ones this consumer believes it holds; otherwise another consumer wrote
//! the partition meanwhile and the commit must not happen.
//!
//! Looking a `txn` up in a Delta snapshot replays the table's log segment (its
//! checkpoint and every commit since) for each partition, at every commit: a few percent
//! of ingest's CPU (perf, benches/RESULTS.md). [`TxnVersions`] keeps the versions it has
//! looked up, tagged with the table version they describe, and brings them forward by
//! reading only the commits made since; whatever it cannot read that way it looks up
//! in the snapshot again.

use std::collections::HashMap;

use deltalake::kernel::Version;
use deltalake::{DeltaTable, DeltaTableError};
use serde::Deserialize;

use crate::commit::CommitOutcome;
use crate::offsets::{app_id, TopicPartition};

/// The newest `txn` version of each application id looked up in one table, as of one
/// table version.
#[derive(Debug, Default)]
pub struct TxnVersions {
    /// The table version `known` describes.
    at: Option<Version>,
    /// By application id: its newest `txn` version (`None`: the table has none).
    known: HashMap<String, Option<i64>>,
}

/// One line (action) of a commit file; only `txn` actions matter here.
#[derive(Deserialize)]
struct LogLine {
    txn: Option<Txn>,
}

#[derive(Deserialize)]
struct Txn {
    #[serde(rename = "appId")]
    app_id: String,
    version: i64,
}

impl TxnVersions {
    /// The newest `txn` version of `app_id` in `table`'s loaded snapshot.
    pub async fn get(
        &mut self,
        table: &DeltaTable,
        app_id: &str,
    ) -> Result<Option<i64>, DeltaTableError> {
        self.catch_up(table).await?;
        if let Some(version) = self.known.get(app_id) {
            return Ok(*version);
        }
        let version = table
            .snapshot()?
            .transaction_version(table.log_store().as_ref(), app_id)
            .await?;
        self.known.insert(app_id.to_string(), version);
        Ok(version)
    }

    /// Brings `known` to the snapshot's version: reads the `txn` actions of the commits
    /// since, or forgets everything when they cannot be read (or the table went back).
    async fn catch_up(&mut self, table: &DeltaTable) -> Result<(), DeltaTableError> {
        let target = table.snapshot()?.version();
        match self.at {
            Some(at) if at == target => return Ok(()),
            Some(at) if at < target => {
                let log_store = table.log_store();
                for version in at + 1..=target {
                    let Some(commit) = log_store.read_commit_entry(version).await? else {
                        // Cleaned up already: look everything up again.
                        self.known.clear();
                        break;
                    };
                    if !self.apply(&commit) {
                        self.known.clear();
                        break;
                    }
                }
            }
            _ => self.known.clear(),
        }
        self.at = Some(target);
        Ok(())
    }

    /// Applies the `txn` actions of one commit file; false if it cannot be parsed.
    fn apply(&mut self, commit: &[u8]) -> bool {
        for line in commit.split(|b| *b == b'\n') {
            // Only a line naming a txn can hold one: skip parsing the rest (adds with
            // their statistics are most of a commit).
            if !line.windows(5).any(|w| w == b"\"txn\"") {
                continue;
            }
            match serde_json::from_slice::<LogLine>(line) {
                Ok(LogLine { txn: Some(txn) }) => {
                    self.known.insert(txn.app_id, Some(txn.version));
                }
                Ok(LogLine { txn: None }) => {}
                Err(_) => return false,
            }
        }
        true
    }
}

/// Compares the offsets the table holds with what we believe it holds.
pub async fn check_fence(
    table: &DeltaTable,
    txns: &mut TxnVersions,
    group: &str,
    progress: &[(TopicPartition, i64, Option<i64>)],
) -> Result<Option<CommitOutcome>, DeltaTableError> {
    for (tp, _, expected) in progress {
        let found = txns.get(table, &app_id(group, tp)).await?;
        if found != *expected {
            return Ok(Some(CommitOutcome::Fenced {
                partition: tp.clone(),
                expected: *expected,
                found,
            }));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
    use deltalake::kernel::Transaction;
    use deltalake::protocol::{DeltaOperation, SaveMode};
    use hourlake_catalog::{Lake, TableId};

    use super::*;

    /// Commits `txns` (and nothing else) to `table` through a handle of its own.
    async fn commit_txns(lake: &Lake, txns: &[(&str, i64)]) {
        let table = lake.open(TableId::EngagementEvents).await.unwrap().unwrap();
        let props = CommitProperties::default().with_application_transactions(
            txns.iter()
                .map(|(app, v)| Transaction::new(*app, *v))
                .collect(),
        );
        CommitBuilder::from(props)
            .build(
                Some(table.snapshot().unwrap()),
                table.log_store(),
                DeltaOperation::Write {
                    mode: SaveMode::Append,
                    partition_by: None,
                    predicate: None,
                },
            )
            .await
            .unwrap();
    }

    /// What the snapshot itself says of `app`.
    async fn looked_up(table: &DeltaTable, app: &str) -> Option<i64> {
        table
            .snapshot()
            .unwrap()
            .transaction_version(table.log_store().as_ref(), app)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn cached_versions_follow_the_log_as_a_snapshot_lookup_does() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::local(dir.path()).unwrap();
        let mut table = lake
            .open_or_create(TableId::EngagementEvents)
            .await
            .unwrap();
        let mut txns = TxnVersions::default();
        assert_eq!(txns.get(&table, "a").await.unwrap(), None);

        commit_txns(&lake, &[("a", 5), ("b", 1)]).await;
        // Not loaded yet: the cache answers for the snapshot it is given.
        assert_eq!(txns.get(&table, "a").await.unwrap(), None);
        table.update_state().await.unwrap();
        assert_eq!(txns.get(&table, "a").await.unwrap(), Some(5));
        assert_eq!(txns.get(&table, "b").await.unwrap(), Some(1));

        // Several commits at once, one of them not touching "a", one moving it on.
        commit_txns(&lake, &[("b", 2)]).await;
        commit_txns(&lake, &[("a", 9), ("c", 3)]).await;
        commit_txns(&lake, &[]).await;
        table.update_state().await.unwrap();
        for app in ["a", "b", "c", "d"] {
            assert_eq!(
                txns.get(&table, app).await.unwrap(),
                looked_up(&table, app).await,
                "{app}"
            );
        }
        assert_eq!(txns.get(&table, "a").await.unwrap(), Some(9));
        assert_eq!(txns.at, table.version());

        // Commit files cleaned up after a checkpoint: what cannot be read from the
        // commits is looked up in the snapshot again.
        commit_txns(&lake, &[("a", 10)]).await;
        table.update_state().await.unwrap();
        let newest = table.version().unwrap();
        deltalake::checkpoints::create_checkpoint(&table, None)
            .await
            .unwrap();
        let log = dir
            .path()
            .join(TableId::EngagementEvents.name())
            .join("_delta_log");
        std::fs::remove_file(log.join(format!("{:020}.json", 1))).unwrap();
        let table = lake.open(TableId::EngagementEvents).await.unwrap().unwrap();
        let mut stale = TxnVersions {
            at: Some(0),
            known: HashMap::from([("a".to_string(), Some(1))]),
        };
        assert_eq!(stale.get(&table, "a").await.unwrap(), Some(10));
        assert_eq!(stale.get(&table, "b").await.unwrap(), Some(2));
        // Ahead of the snapshot (a table handle of an older version): starts over.
        let mut ahead = TxnVersions {
            at: Some(newest + 5),
            known: HashMap::from([("a".to_string(), Some(99))]),
        };
        assert_eq!(ahead.get(&table, "a").await.unwrap(), Some(10));
        assert_eq!(ahead.at, Some(newest));
    }

    #[test]
    fn txn_actions_are_read_from_a_commit_and_garbage_is_refused() {
        let mut txns = TxnVersions::default();
        let commit = concat!(
            r#"{"commitInfo":{"operation":"WRITE","note":"no txn here"}}"#,
            "\n",
            r#"{"add":{"path":"x.parquet","stats":"{\"numRecords\":1}"}}"#,
            "\n",
            r#"{"txn":{"appId":"g-t-0","version":41,"lastUpdated":1}}"#,
            "\n",
            r#"{"txn":{"appId":"g-t-1","version":7}}"#,
            "\n"
        );
        assert!(txns.apply(commit.as_bytes()));
        assert_eq!(txns.known["g-t-0"], Some(41));
        assert_eq!(txns.known["g-t-1"], Some(7));
        assert_eq!(txns.known.len(), 2);
        assert!(!txns.apply(br#"{"txn":{"appId":"g-t-0","version":"#));
    }
}
