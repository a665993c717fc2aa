//! The compactor lease: only one compactor acts on a table at a time.
//!
//! Two compactions of the same files would both commit (Delta does not see a conflict
//! between two rewrites) and double rows, so exclusivity is enforced, not documented.
//! The lease is a sequence of small objects under `<table>/_hourlake/compactor_lease/`,
//! one per epoch, each written with a conditional put that fails when the object exists
//! (`PutMode::Create`, which S3, GCS, Azure and local files support). Whoever creates
//! epoch `n + 1` owns the lease; taking it over, renewing and releasing it are all
//! "create the next epoch", so two contenders can never both win. The folder starts with
//! `_`, so Delta readers and vacuum leave it alone.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use hourlake_catalog::TableId;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use crate::CompactorError;

const LEASE_DIR: &str = "_hourlake/compactor_lease";
/// Epoch files older than this many epochs behind the newest are deleted.
const KEEP_EPOCHS: u64 = 4;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct LeaseRecord {
    holder: String,
    /// Milliseconds since the epoch; 0 means released.
    expires_at_ms: i64,
}

/// A table's lease as last written: who took it and until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeaseState {
    /// The compactor id that wrote the newest epoch.
    pub holder: String,
    /// The newest epoch.
    pub epoch: u64,
    /// Milliseconds since the Unix epoch when it expires.
    pub expires_at_ms: i64,
    /// Whether its holder released it.
    pub released: bool,
}

/// The lease of `table` (in `store`, rooted at the table) as last written, if one was
/// ever taken; reads only.
pub async fn inspect(
    table: TableId,
    store: &dyn ObjectStore,
) -> Result<Option<LeaseState>, CompactorError> {
    Ok(newest(table, store)
        .await?
        .map(|(epoch, record)| LeaseState {
            released: record.expires_at_ms == 0,
            holder: record.holder,
            epoch,
            expires_at_ms: record.expires_at_ms,
        }))
}

/// A held lease on one table. Renew it before each commit; a renewal that fails means
/// another compactor took over and this one must stop.
#[derive(Debug)]
pub struct Lease {
    table: TableId,
    store: Arc<dyn ObjectStore>,
    holder: String,
    epoch: u64,
    ttl: Duration,
    /// When it was last taken or renewed.
    renewed_at: Instant,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn epoch_path(epoch: u64) -> Path {
    Path::from(format!("{LEASE_DIR}/{epoch:020}.json"))
}

fn store_error(table: TableId) -> impl Fn(object_store::Error) -> CompactorError {
    move |source| CompactorError::LeaseStore {
        table: table.name(),
        source,
    }
}

/// The newest epoch and its record, if any lease was ever taken.
async fn newest(
    table: TableId,
    store: &dyn ObjectStore,
) -> Result<Option<(u64, LeaseRecord)>, CompactorError> {
    let prefix = Path::from(LEASE_DIR);
    let listed: Vec<_> = store
        .list(Some(&prefix))
        .try_collect()
        .await
        .map_err(store_error(table))?;
    let newest = listed
        .iter()
        .filter_map(|meta| {
            let name = meta.location.filename()?;
            name.strip_suffix(".json")?.parse::<u64>().ok()
        })
        .max();
    let Some(epoch) = newest else {
        return Ok(None);
    };
    let path = epoch_path(epoch);
    let bytes = store
        .get(&path)
        .await
        .map_err(store_error(table))?
        .bytes()
        .await
        .map_err(store_error(table))?;
    let record = serde_json::from_slice(&bytes).map_err(|e| CompactorError::LeaseCorrupt {
        table: table.name(),
        path: path.to_string(),
        reason: e.to_string(),
    })?;
    Ok(Some((epoch, record)))
}

/// Writes `record` as `epoch` unless that epoch exists. `Ok(false)`: someone else did.
async fn create_epoch(
    table: TableId,
    store: &dyn ObjectStore,
    epoch: u64,
    record: &LeaseRecord,
) -> Result<bool, CompactorError> {
    let body = serde_json::to_vec(record).map_err(|e| CompactorError::Unexpected {
        table: table.name(),
        reason: format!("lease record: {e}"),
    })?;
    let opts = PutOptions {
        mode: PutMode::Create,
        ..PutOptions::default()
    };
    match store
        .put_opts(&epoch_path(epoch), PutPayload::from(body), opts)
        .await
    {
        Ok(_) => Ok(true),
        Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
        Err(e) => Err(store_error(table)(e)),
    }
}

impl Lease {
    /// Takes the lease of `table` for `holder`, or fails with
    /// [`CompactorError::LeaseHeld`] while another holder's lease is valid.
    pub async fn acquire(
        table: TableId,
        store: Arc<dyn ObjectStore>,
        holder: impl Into<String>,
        ttl: Duration,
    ) -> Result<Lease, CompactorError> {
        let holder = holder.into();
        let next = match newest(table, store.as_ref()).await? {
            None => 0,
            Some((epoch, record)) => {
                let remaining_ms = record.expires_at_ms - now_ms();
                if record.holder != holder && remaining_ms > 0 {
                    return Err(CompactorError::LeaseHeld {
                        table: table.name(),
                        holder: record.holder,
                        remaining_ms,
                    });
                }
                epoch + 1
            }
        };
        let mut lease = Lease {
            table,
            store,
            holder,
            epoch: next,
            ttl,
            renewed_at: Instant::now(),
        };
        if create_epoch(table, lease.store.as_ref(), next, &lease.record()).await? {
            tracing::info!(table = table.name(), holder = %lease.holder, epoch = next, "compactor lease acquired");
            lease.cleanup().await;
            Ok(lease)
        } else {
            // Someone created the same epoch first: they won.
            let holder = match newest(table, lease.store.as_ref()).await? {
                Some((_, record)) => record.holder,
                None => "unknown".to_string(),
            };
            lease.epoch = u64::MAX; // never renew a lease we do not hold
            Err(CompactorError::LeaseHeld {
                table: table.name(),
                holder,
                remaining_ms: i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX),
            })
        }
    }

    fn record(&self) -> LeaseRecord {
        LeaseRecord {
            holder: self.holder.clone(),
            expires_at_ms: now_ms() + i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX),
        }
    }

    /// The table this lease guards.
    pub fn table(&self) -> TableId {
        self.table
    }

    /// Who holds it.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Extends the lease by its time to live; fails with [`CompactorError::LeaseLost`]
    /// if another compactor took it over meanwhile.
    pub async fn renew(&mut self) -> Result<(), CompactorError> {
        let lost = |holder: String| CompactorError::LeaseLost {
            table: self.table.name(),
            holder,
        };
        match newest(self.table, self.store.as_ref()).await? {
            Some((epoch, _)) if epoch == self.epoch => {}
            Some((_, record)) => return Err(lost(record.holder)),
            None => return Err(lost("nobody (lease files removed)".to_string())),
        }
        let next = self.epoch + 1;
        if create_epoch(self.table, self.store.as_ref(), next, &self.record()).await? {
            self.epoch = next;
            self.renewed_at = Instant::now();
            if next.is_multiple_of(KEEP_EPOCHS) {
                self.cleanup().await;
            }
            Ok(())
        } else {
            let holder = newest(self.table, self.store.as_ref())
                .await?
                .map(|(_, r)| r.holder)
                .unwrap_or_default();
            Err(lost(holder))
        }
    }

    /// Renews the lease once a third of its time to live has passed since it was last
    /// taken or renewed: long work (a first sessionization over weeks of history) calls
    /// it as it goes, so no other compactor takes the table over half-way.
    pub async fn keep_alive(&mut self) -> Result<(), CompactorError> {
        if self.renewed_at.elapsed() >= self.ttl / 3 {
            self.renew().await
        } else {
            Ok(())
        }
    }

    /// Gives the lease up so another compactor may start at once.
    pub async fn release(self) -> Result<(), CompactorError> {
        let released = LeaseRecord {
            holder: self.holder.clone(),
            expires_at_ms: 0,
        };
        if let Some((epoch, _)) = newest(self.table, self.store.as_ref()).await? {
            if epoch == self.epoch {
                create_epoch(self.table, self.store.as_ref(), epoch + 1, &released).await?;
            }
        }
        Ok(())
    }

    /// Deletes old epoch files; failures only leave a few bytes behind.
    async fn cleanup(&self) {
        let Some(upto) = self.epoch.checked_sub(KEEP_EPOCHS) else {
            return;
        };
        let prefix = Path::from(LEASE_DIR);
        let Ok(listed) = self.store.list(Some(&prefix)).try_collect::<Vec<_>>().await else {
            return;
        };
        for meta in listed {
            let old = meta
                .location
                .filename()
                .and_then(|n| n.strip_suffix(".json"))
                .and_then(|n| n.parse::<u64>().ok())
                .is_some_and(|e| e < upto);
            if old {
                let _ = self.store.delete(&meta.location).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::local::LocalFileSystem;

    fn store(dir: &std::path::Path) -> Arc<dyn ObjectStore> {
        Arc::new(LocalFileSystem::new_with_prefix(dir).unwrap())
    }

    #[tokio::test]
    async fn keep_alive_renews_once_a_third_of_the_time_to_live_has_passed() {
        let dir = tempfile::tempdir().unwrap();
        let t = TableId::Sessions;
        let mut lease = Lease::acquire(t, store(dir.path()), "a", Duration::from_secs(60))
            .await
            .unwrap();
        let epoch = lease.epoch;
        lease.keep_alive().await.unwrap();
        assert_eq!(lease.epoch, epoch, "just taken: nothing to renew");
        lease.renewed_at -= Duration::from_secs(21);
        lease.keep_alive().await.unwrap();
        assert_eq!(lease.epoch, epoch + 1, "21 s of 60: renewed");
        lease.keep_alive().await.unwrap();
        assert_eq!(lease.epoch, epoch + 1, "renewal restarts the clock");

        // Once another holder took over (the lease had expired), keep_alive says so.
        lease.ttl = Duration::ZERO;
        lease.renew().await.unwrap();
        let _other = Lease::acquire(t, store(dir.path()), "b", Duration::from_secs(60))
            .await
            .unwrap();
        assert!(matches!(
            lease.keep_alive().await,
            Err(CompactorError::LeaseLost { holder, .. }) if holder == "b"
        ));
    }

    #[tokio::test]
    async fn second_holder_is_refused_until_release_or_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let t = TableId::EngagementEvents;
        let ttl = Duration::from_secs(60);
        let mut first = Lease::acquire(t, store(dir.path()), "a", ttl)
            .await
            .unwrap();
        let refused = Lease::acquire(t, store(dir.path()), "b", ttl).await;
        assert!(
            matches!(&refused, Err(CompactorError::LeaseHeld { holder, .. }) if holder == "a"),
            "{refused:?}"
        );
        for _ in 0..10 {
            first.renew().await.unwrap();
        }
        first.release().await.unwrap();
        let second = Lease::acquire(t, store(dir.path()), "b", ttl)
            .await
            .unwrap();
        assert_eq!(second.holder(), "b");

        // An expired lease is taken over, and its old holder learns it lost it.
        let mut short = second;
        short.ttl = Duration::ZERO;
        short.renew().await.unwrap();
        let mut third = Lease::acquire(t, store(dir.path()), "c", ttl)
            .await
            .unwrap();
        assert!(
            matches!(short.renew().await, Err(CompactorError::LeaseLost { holder, .. }) if holder == "c")
        );
        third.renew().await.unwrap();
        // Old epochs were cleaned up.
        let files = std::fs::read_dir(dir.path().join(LEASE_DIR))
            .unwrap()
            .count();
        assert!(
            files <= (KEEP_EPOCHS + 2) as usize,
            "{files} lease files kept"
        );
    }

    #[tokio::test]
    async fn racing_contenders_get_one_winner() {
        let dir = tempfile::tempdir().unwrap();
        let t = TableId::EngagementEvents;
        let attempts = (0..8).map(|i| {
            let s = store(dir.path());
            tokio::spawn(async move {
                Lease::acquire(t, s, format!("c{i}"), Duration::from_secs(60)).await
            })
        });
        let mut winners = 0;
        for a in attempts {
            match a.await.unwrap() {
                Ok(_) => winners += 1,
                Err(CompactorError::LeaseHeld { .. }) => {}
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(winners, 1);
    }
}
