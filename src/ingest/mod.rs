//! Ingest: NDJSON platform records into storage, idempotent by record id.
//!
//! Parsing is pure and line-numbered; storage applies the parsed records in one transaction
//! with batched, set-based statements (see `storage::ingest`).

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
    let mut records = Vec::new();
    let mut errors = Vec::new();
    for (index, line) in input.lines().enumerate() {
        let line_no = index + 1;
        let line = match line {
            Ok(line) => line,
            Err(e) => {
                errors.push(LineError {
                    line: line_no,
                    message: format!("unreadable line: {e}"),
                });
                continue;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        match Record::parse_line(&line) {
            Ok(record) => records.push(Numbered {
                line: line_no,
                record,
            }),
            Err(e) => errors.push(LineError {
                line: line_no,
                message: e.to_string(),
            }),
        }
    }
    (records, errors)
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
}
