//! Limits and settings of the query server.

use std::time::Duration;

/// Settings of the HTTP query server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Bearer tokens accepted; empty means no authentication.
    pub tokens: Vec<String>,
    /// Queries running at once; more get 429.
    pub max_concurrent_queries: usize,
    /// Default per-query timeout (a request may ask for less, never more).
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
        }
    }
}
