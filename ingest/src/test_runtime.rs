//! The runtime the crate's tests run the pipeline's blocking parts on.

/// A multi-thread runtime with one worker and its I/O and time drivers: decoding and
/// the flusher task run on it while the test thread plays the poll thread.
pub(crate) fn one_worker_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("test runtime")
}
