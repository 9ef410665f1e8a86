//! Ingest use case: a file's lines read and applied a chunk at a time
//! (`Store::ingest_stream`), so memory stays flat whatever the file's size.

use std::io::BufRead;

use crate::ingest::{Chunks, Feed, IngestReport};
use crate::storage::{Store, StoreError, StoreResult};

/// Lines per chunk (`PAYOUTS_INGEST_CHUNK_LINES`). Each chunk is one transaction with its
/// accruals. New charges are accrued from the chunk alone (no re-read of history), so a
/// chunk's cost does not grow with the database and small chunks are cheap: 100,000 lines
/// hold about 100 MiB at the peak (a million held 1.1 GiB), release SQLite's write lock
/// every second or so, and still post one accrual per touched referral per chunk, not per
/// line.
pub const CHUNK_LINES: usize = 100_000;

pub async fn ingest(
    store: &Store,
    input: impl BufRead + Send + 'static,
    strict: bool,
) -> StoreResult<IngestReport> {
    ingest_with_progress(store, input, strict, CHUNK_LINES, &|_, _| {}).await
}

/// As [`ingest`], with `progress` told the report so far and the bytes read after each chunk.
/// The input is read and parsed on a thread of its own, a chunk ahead (`Feed`).
pub async fn ingest_with_progress(
    store: &Store,
    input: impl BufRead + Send + 'static,
    strict: bool,
    chunk_lines: usize,
    progress: &(dyn Fn(&IngestReport, u64) + Sync),
) -> StoreResult<IngestReport> {
    let mut feed = Feed::spawn(Chunks::new(input, chunk_lines))
        .map_err(|e| StoreError::Input(format!("starting the reader: {e}")))?;
    store.ingest_stream(&mut feed, strict, progress).await
}
