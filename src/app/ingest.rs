//! Ingest use case: a file's lines read and applied a chunk at a time
//! (`Store::ingest_stream`), so memory stays flat whatever the file's size.

use std::io::BufRead;

use crate::ingest::{Chunks, IngestReport};
use crate::storage::{Store, StoreResult};

/// Lines per chunk (`PAYOUTS_INGEST_CHUNK_LINES`). Each chunk is one transaction with its
/// accruals, and the accrual of a chunk reads the whole history of every stream it touches:
/// smaller chunks hold less in memory and release SQLite's write lock sooner, but re-read
/// that history once per chunk. A million lines keeps a typical day's file to one pass (as
/// fast as before) and bounds what a larger file holds at once.
pub const CHUNK_LINES: usize = 1_000_000;

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
