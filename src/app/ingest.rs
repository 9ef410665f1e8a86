//! Ingest use case: a file's lines read and applied a chunk at a time
//! (`Store::ingest_stream`), so memory stays flat whatever the file's size.

use std::io::BufRead;

use crate::ingest::{Chunks, IngestReport};
use crate::storage::{Store, StoreResult};

/// Lines per chunk. Each chunk is one transaction with its accruals: 100,000 lines keep a
/// chunk's parsed records to tens of MiB and its SQLite write lock to about a second, while
/// a commit (and the accrual pass over the streams it touched) is paid once per 100,000
/// records rather than per record.
pub const CHUNK_LINES: usize = 100_000;

pub async fn ingest(
    store: &Store,
    input: impl BufRead + Send,
    strict: bool,
) -> StoreResult<IngestReport> {
    ingest_with_progress(store, input, strict, CHUNK_LINES, &|_, _| {}).await
}

/// As [`ingest`], with `progress` told the report so far and the bytes read after each chunk.
pub async fn ingest_with_progress(
    store: &Store,
    input: impl BufRead + Send,
    strict: bool,
    chunk_lines: usize,
    progress: &(dyn Fn(&IngestReport, u64) + Sync),
) -> StoreResult<IngestReport> {
    let mut chunks = Chunks::new(input, chunk_lines);
    store.ingest_stream(&mut chunks, strict, progress).await
}
