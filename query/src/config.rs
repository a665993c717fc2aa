//! Limits and settings of the query server.

use std::time::Duration;

use hourlake_sql::limits::StatementLimits;
use thiserror::Error;

/// A server setting that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    /// An empty token (a stray comma in a token list) would let in clients without one.
    #[error(transparent)]
    EmptyToken(#[from] hourlake_net::EmptyToken),
    /// A limit that must be positive is zero.
    #[error("`{0}` must be greater than zero")]
    Zero(&'static str),
}

/// Settings of the query server (HTTP and Flight SQL).
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Bearer tokens accepted; empty means no authentication.
    pub tokens: Vec<String>,
    /// Queries planning or running at once, over HTTP and Flight SQL together when they
    /// share an executor; more get 429 / `RESOURCE_EXHAUSTED`.
    pub max_concurrent_queries: usize,
    /// Default per-query timeout (a request may ask for less, never more). It covers
    /// planning, execution and sending the answer.
    pub query_timeout: Duration,
    /// Rows a result may hold; more get 413.
    pub max_result_rows: usize,
    /// Bytes an encoded result may hold; more get 413.
    pub max_result_bytes: usize,
    /// Bytes a request body may hold; more get 413.
    pub max_request_bytes: usize,
    /// Bytes of encoded results kept for repeated queries.
    pub cache_bytes: usize,
    /// Browser origins allowed to call the API (`*` for any); empty: no CORS headers.
    pub cors_origins: Vec<String>,
    /// Size and nesting a statement may have.
    pub statement_limits: StatementLimits,
    /// How long a client may take to send its request headers or body, or leave its
    /// answer unread, before its connection is closed.
    pub client_timeout: Duration,
    /// Flight SQL prepared statements kept at once (the oldest are forgotten beyond).
    pub max_prepared_statements: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            tokens: Vec::new(),
            max_concurrent_queries: 16,
            query_timeout: Duration::from_secs(30),
            max_result_rows: 1_000_000,
            max_result_bytes: 256 * 1024 * 1024,
            max_request_bytes: 1024 * 1024,
            cache_bytes: 64 * 1024 * 1024,
            cors_origins: Vec::new(),
            statement_limits: StatementLimits::default(),
            client_timeout: Duration::from_secs(30),
            max_prepared_statements: 1024,
        }
    }
}

/// What the recommendation lookup index keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LookupConfig {
    /// Served lists kept per user, newest first (a lookup returns at most this many).
    pub lists_per_user: usize,
    /// Lists and clicks older than this (behind the newest event time seen, or now if
    /// that is earlier) are dropped; `None` keeps them until `lists_per_user` newer come.
    pub max_age: Option<Duration>,
}

/// Served lists kept per user when not configured.
pub const DEFAULT_LOOKUP_LISTS_PER_USER: usize = 20;
/// Days a served list stays in the lookup index when not configured.
pub const DEFAULT_LOOKUP_MAX_AGE_DAYS: u64 = 30;

impl Default for LookupConfig {
    fn default() -> Self {
        LookupConfig {
            lists_per_user: DEFAULT_LOOKUP_LISTS_PER_USER,
            max_age: Some(Duration::from_secs(DEFAULT_LOOKUP_MAX_AGE_DAYS * 86_400)),
        }
    }
}

impl LookupConfig {
    /// Refuses an index that would keep nothing.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.lists_per_user == 0 {
            return Err(ConfigError::Zero("lookup_lists_per_user"));
        }
        if self.max_age.is_some_and(|a| a.is_zero()) {
            return Err(ConfigError::Zero("lookup_max_age"));
        }
        Ok(())
    }
}

impl ServerConfig {
    /// Refuses settings that would open the server or make it refuse everything.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.tokens.iter().any(|t| t.trim().is_empty()) {
            return Err(hourlake_net::EmptyToken.into());
        }
        for (name, value) in [
            ("max_concurrent_queries", self.max_concurrent_queries),
            ("max_result_rows", self.max_result_rows),
            ("max_result_bytes", self.max_result_bytes),
            ("max_request_bytes", self.max_request_bytes),
            ("max_statement_bytes", self.statement_limits.max_bytes),
            ("max_prepared_statements", self.max_prepared_statements),
        ] {
            if value == 0 {
                return Err(ConfigError::Zero(name));
            }
        }
        for (name, value) in [
            ("query_timeout", self.query_timeout),
            ("client_timeout", self.client_timeout),
        ] {
            if value.is_zero() {
                return Err(ConfigError::Zero(name));
            }
        }
        Ok(())
    }
}
