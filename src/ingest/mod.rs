//! Ingest: NDJSON platform records into storage, idempotent by record id.
//!
//! Parsing is pure and line-numbered, a bounded chunk of lines at a time; storage applies
//! each chunk with batched, set-based statements (see `storage::ingest`).

pub mod record;

use std::io::BufRead;

use serde::Serialize;

pub use record::{Record, RecordError};

/// A line that could not be taken, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct LineError {
    pub line: usize,
    pub message: String,
}

/// A parsed record with the line it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Numbered {
    pub line: usize,
    pub record: Record,
}

/// Parses every non-blank line. A bad line never stops the others from being parsed.
pub fn parse_lines(input: impl BufRead) -> (Vec<Numbered>, Vec<LineError>) {
    let mut chunks = Chunks::new(input, usize::MAX);
    let mut records = Vec::new();
    let mut errors = Vec::new();
    while let Some(chunk) = chunks.next_chunk() {
        records.extend(chunk.records);
        errors.extend(chunk.rejected);
    }
    (records, errors)
}

/// Some consecutive lines of an input, parsed.
#[derive(Debug, Default)]
pub struct Chunk {
    pub records: Vec<Numbered>,
    pub rejected: Vec<LineError>,
    /// Lines read, blank ones included.
    pub lines: usize,
    /// Bytes read, for progress.
    pub bytes: u64,
}

/// Where an ingest's lines come from, a bounded chunk at a time, so memory stays flat
/// whatever the input's size.
pub trait ChunkSource {
    /// The next lines, or `None` at the end.
    fn next_chunk(&mut self) -> Option<Chunk>;
}

/// An input read and parsed `size` lines at a time, numbered from 1 across chunks.
pub struct Chunks<R> {
    input: R,
    size: usize,
    next_line: usize,
    done: bool,
}

impl<R: BufRead> Chunks<R> {
    pub fn new(input: R, size: usize) -> Chunks<R> {
        Chunks {
            input,
            size: size.max(1),
            next_line: 1,
            done: false,
        }
    }
}

impl<R: BufRead> ChunkSource for Chunks<R> {
    fn next_chunk(&mut self) -> Option<Chunk> {
        if self.done {
            return None;
        }
        let mut chunk = Chunk::default();
        let mut line = String::new();
        while chunk.lines < self.size {
            line.clear();
            let line_no = self.next_line;
            match self.input.read_line(&mut line) {
                Ok(0) => {
                    self.done = true;
                    break;
                }
                Ok(n) => chunk.bytes += n as u64,
                Err(e) => {
                    // A line that is not UTF-8 is that line's problem (it has been consumed);
                    // any other read error ends the input rather than looping on it.
                    chunk.rejected.push(LineError {
                        line: line_no,
                        message: format!("unreadable line: {e}"),
                    });
                    if e.kind() != std::io::ErrorKind::InvalidData {
                        self.done = true;
                    }
                    self.next_line += 1;
                    chunk.lines += 1;
                    continue;
                }
            }
            self.next_line += 1;
            chunk.lines += 1;
            if line.trim().is_empty() {
                continue;
            }
            match Record::parse_line(line.trim_end_matches(['\n', '\r'])) {
                Ok(record) => chunk.records.push(Numbered {
                    line: line_no,
                    record,
                }),
                Err(e) => chunk.rejected.push(LineError {
                    line: line_no,
                    message: e.to_string(),
                }),
            }
        }
        (chunk.lines > 0).then_some(chunk)
    }
}

/// Chunks read and parsed on a thread of their own, one chunk ahead of the chunk being
/// applied: parsing (CPU) overlaps the database's work, and at most two chunks are in memory
/// at once (the reader takes a slot before it parses, and the slot frees only when the
/// consumer takes the chunk before).
pub struct Feed {
    rx: tokio::sync::mpsc::Receiver<Option<Chunk>>,
    ended: bool,
}

/// The reader stopped before the end of its input: what arrived is not the whole input, so
/// nothing may treat it as such.
#[derive(Debug, thiserror::Error)]
#[error("the input's reader stopped before the end of the input")]
pub struct ReaderStopped;

impl Feed {
    /// Starts reading `source` on its own thread.
    pub fn spawn<S: ChunkSource + Send + 'static>(mut source: S) -> std::io::Result<Feed> {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        std::thread::Builder::new()
            .name("ingest-reader".into())
            .spawn(move || {
                loop {
                    // The consumer has gone (it failed, or stopped early): nothing to read for.
                    let Ok(slot) = futures::executor::block_on(tx.reserve()) else {
                        return;
                    };
                    let chunk = source.next_chunk();
                    let end = chunk.is_none();
                    slot.send(chunk);
                    if end {
                        return;
                    }
                }
            })?;
        Ok(Feed { rx, ended: false })
    }

    /// The next chunk, `None` at the end of the input, or [`ReaderStopped`] when the reader
    /// went away without reaching the end.
    pub async fn next(&mut self) -> Result<Option<Chunk>, ReaderStopped> {
        if self.ended {
            return Ok(None);
        }
        match self.rx.recv().await {
            Some(Some(chunk)) => Ok(Some(chunk)),
            Some(None) => {
                self.ended = true;
                Ok(None)
            }
            None => Err(ReaderStopped),
        }
    }
}

/// Counts for one record type.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct KindCounts {
    pub inserted: usize,
    pub updated: usize,
    pub unchanged: usize,
}

/// What an ingest did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct IngestReport {
    pub lines_read: usize,
    pub by_type: std::collections::BTreeMap<&'static str, KindCounts>,
    pub rejected: Vec<LineError>,
    /// Referrals judged during this ingest (qualified or not).
    pub referrals_judged: usize,
    /// Ledger transactions written for commissions and clawbacks.
    pub accruals_posted: usize,
    /// Held payouts released because the tax form they waited for arrived.
    pub payouts_released: u64,
    /// True when nothing was written because `--strict` met a bad line.
    pub rolled_back: bool,
}

impl IngestReport {
    pub fn counts(&mut self, kind: &'static str) -> &mut KindCounts {
        self.by_type.entry(kind).or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_bad_lines_by_number_and_keeps_going() {
        let input = "\n{\"type\":\"link\",\"a\":\"x\",\"b\":\"y\"}\nnope\n{\"type\":\"link\",\"a\":\"x\",\"b\":\"x\"}\n";
        let (ok, bad) = parse_lines(input.as_bytes());
        assert_eq!(ok.len(), 1);
        assert_eq!(ok[0].line, 2);
        assert_eq!(bad.iter().map(|e| e.line).collect::<Vec<_>>(), vec![3, 4]);
    }

    /// A source whose reader fails after its first chunk, as a panicking parser would.
    struct FailsAfterOne(usize);

    impl ChunkSource for FailsAfterOne {
        fn next_chunk(&mut self) -> Option<Chunk> {
            self.0 += 1;
            if self.0 > 1 {
                panic!("the reader fails (as this test intends)");
            }
            Some(Chunk {
                lines: 1,
                ..Chunk::default()
            })
        }
    }

    #[tokio::test]
    async fn a_feed_delivers_every_chunk_in_order_then_the_end() {
        let input = "{\"type\":\"link\",\"a\":\"x\",\"b\":\"y\"}\n".repeat(5);
        let mut feed = Feed::spawn(Chunks::new(std::io::Cursor::new(input), 2)).unwrap();
        let mut lines = Vec::new();
        while let Some(chunk) = feed.next().await.unwrap() {
            lines.push(chunk.records.iter().map(|r| r.line).collect::<Vec<_>>());
        }
        assert_eq!(lines, vec![vec![1, 2], vec![3, 4], vec![5]]);
        assert!(
            feed.next().await.unwrap().is_none(),
            "the end stays the end"
        );
    }

    #[tokio::test]
    async fn a_feed_whose_reader_dies_says_so_instead_of_ending() {
        let mut feed = Feed::spawn(FailsAfterOne(0)).unwrap();
        assert_eq!(feed.next().await.unwrap().map(|c| c.lines), Some(1));
        assert!(
            feed.next().await.is_err(),
            "a reader that stopped early must not look like the end of the input"
        );
    }

    #[test]
    fn chunks_number_lines_across_their_bounds_and_skip_unreadable_ones() {
        let mut input = b"\n{\"type\":\"link\",\"a\":\"x\",\"b\":\"y\"}\nnope\n".to_vec();
        input.extend_from_slice(b"\xff\xfe bad bytes\n{\"type\":\"link\",\"a\":\"p\",\"b\":\"q\"}");
        let mut chunks = Chunks::new(input.as_slice(), 2);
        let mut seen = Vec::new();
        while let Some(c) = chunks.next_chunk() {
            assert!(c.lines <= 2);
            seen.push((
                c.records.iter().map(|r| r.line).collect::<Vec<_>>(),
                c.rejected.iter().map(|e| e.line).collect::<Vec<_>>(),
            ));
        }
        assert_eq!(
            seen,
            vec![(vec![2], vec![]), (vec![], vec![3, 4]), (vec![5], vec![])]
        );
    }
}
