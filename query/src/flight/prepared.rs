//! Prepared statements of all Flight SQL clients, bounded in count and in SQL bytes.

use std::collections::HashMap;
use std::time::Instant;

use datafusion::common::ParamValues;
use prost::bytes::Bytes;

/// Bytes of SQL text all prepared statements together may keep.
const MAX_PREPARED_SQL_BYTES: usize = 64 * 1024 * 1024;

/// A statement prepared by a client, with the parameters it last bound.
#[derive(Debug, Clone)]
pub(super) struct Prepared {
    pub(super) sql: String,
    pub(super) params: Option<ParamValues>,
    pub(super) created: Instant,
}

/// The prepared statements of all clients, bounded in count and in SQL bytes (the
/// oldest are forgotten first; a client then gets NOT_FOUND and prepares again).
#[derive(Debug, Default)]
pub(super) struct PreparedStatements {
    pub(super) statements: HashMap<Bytes, Prepared>,
    sql_bytes: usize,
}

impl PreparedStatements {
    pub(super) fn insert(&mut self, handle: Bytes, prepared: Prepared, max_count: usize) {
        while !self.statements.is_empty()
            && (self.statements.len() >= max_count
                || self.sql_bytes + prepared.sql.len() > MAX_PREPARED_SQL_BYTES)
        {
            let oldest = self
                .statements
                .iter()
                .min_by_key(|(_, p)| p.created)
                .map(|(h, _)| h.clone());
            match oldest {
                Some(oldest) => {
                    self.remove(&oldest);
                }
                None => break,
            }
        }
        self.sql_bytes += prepared.sql.len();
        self.statements.insert(handle, prepared);
    }

    pub(super) fn remove(&mut self, handle: &Bytes) {
        if let Some(p) = self.statements.remove(handle) {
            self.sql_bytes -= p.sql.len();
        }
    }
}
