//! A result cache bounded in bytes, least recently used out first. Keys are ETags,
//! which change whenever a table the query reads gets a new version, so an entry is
//! never stale: it is simply never asked for again and ages out.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;

/// One cached, encoded result.
#[derive(Debug, Clone)]
pub struct CachedResult {
    /// The response's content type.
    pub content_type: &'static str,
    /// The encoded body.
    pub body: Bytes,
    /// Rows in the result.
    pub rows: usize,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<String, (Arc<CachedResult>, u64)>,
    order: BTreeMap<u64, String>,
    bytes: usize,
    tick: u64,
}

/// The cache; cheap to share.
#[derive(Debug)]
pub struct ResultCache {
    capacity: usize,
    inner: Mutex<Inner>,
}

impl ResultCache {
    /// A cache holding at most `capacity` bytes of bodies.
    pub fn new(capacity: usize) -> ResultCache {
        ResultCache {
            capacity,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// The entry for `key`, marking it recently used.
    pub fn get(&self, key: &str) -> Option<Arc<CachedResult>> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.tick += 1;
        let tick = inner.tick;
        let (value, old_tick) = {
            let entry = inner.entries.get_mut(key)?;
            let old = entry.1;
            entry.1 = tick;
            (entry.0.clone(), old)
        };
        inner.order.remove(&old_tick);
        inner.order.insert(tick, key.to_string());
        Some(value)
    }

    /// Stores `value` unless it alone exceeds the capacity; evicts the least recently
    /// used entries to make room.
    pub fn insert(&self, key: String, value: CachedResult) {
        let size = value.body.len();
        if size > self.capacity {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.tick += 1;
        let tick = inner.tick;
        if let Some((old, old_tick)) = inner.entries.remove(&key) {
            inner.bytes -= old.body.len();
            inner.order.remove(&old_tick);
        }
        while inner.bytes + size > self.capacity {
            let Some((&oldest, _)) = inner.order.iter().next() else {
                break;
            };
            if let Some(evicted) = inner.order.remove(&oldest) {
                if let Some((v, _)) = inner.entries.remove(&evicted) {
                    inner.bytes -= v.body.len();
                }
            }
        }
        inner.bytes += size;
        inner.order.insert(tick, key.clone());
        inner.entries.insert(key, (Arc::new(value), tick));
    }

    /// Bytes held.
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(n: usize) -> CachedResult {
        CachedResult {
            content_type: "text/plain",
            body: Bytes::from(vec![0u8; n]),
            rows: 0,
        }
    }

    #[test]
    fn bounded_in_bytes_least_recently_used_first() {
        let cache = ResultCache::new(100);
        cache.insert("a".into(), result(40));
        cache.insert("b".into(), result(40));
        assert!(cache.get("a").is_some()); // b is now the oldest
        cache.insert("c".into(), result(40));
        assert!(cache.get("b").is_none());
        assert!(cache.get("a").is_some() && cache.get("c").is_some());
        assert_eq!(cache.bytes(), 80);
        cache.insert("huge".into(), result(101));
        assert!(cache.get("huge").is_none());
        assert_eq!(cache.bytes(), 80);
    }
}
