//! Ingest use case: parse a file's lines, then apply them (`Store::ingest_parsed`).

use std::io::BufRead;

use crate::ingest::{IngestReport, parse_lines};
use crate::storage::{Store, StoreResult};

pub async fn ingest(store: &Store, input: impl BufRead, strict: bool) -> StoreResult<IngestReport> {
    let (records, rejected) = parse_lines(input);
    store.ingest_parsed(records, rejected, strict).await
}
