//! The providers' own records of money moved, for reconciliation: read page by page from
//! each provider's API, or from a statement file in the provider's export format.
//!
//! Each rail module has a `records` part (wire object → [`ProviderRecord`], and the listing)
//! and a `statement` part (its CSV columns). Both yield records in bounded batches, so a
//! month of a large platform never sits in memory at once.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use futures::stream::BoxStream;

use super::ProviderError;
use crate::domain::ids::Rail;
use crate::domain::reconcile::ProviderRecord;

/// Pages of records, in the provider's order, until the window is exhausted.
pub type RecordPages<'a> = BoxStream<'a, Result<Vec<ProviderRecord>, ProviderError>>;

/// A provider that can list what it moved.
pub trait RecordSource: Send + Sync {
    fn rail(&self) -> Rail;

    /// Every record the provider created in `[from, to)`, page by page, following the
    /// provider's pagination to the end.
    fn record_pages<'a>(&'a self, from: DateTime<Utc>, to: DateTime<Utc>) -> RecordPages<'a>;
}

/// A statement file that cannot be read. Every variant names the line, so a person can open
/// the file and fix it.
#[derive(Debug, thiserror::Error)]
pub enum StatementError {
    #[error("line {line}: not valid CSV: {message}")]
    Csv { line: u64, message: String },
    #[error("the statement has no {column:?} column; a {format} has the columns: {expected}")]
    MissingColumn {
        column: &'static str,
        format: &'static str,
        expected: String,
    },
    #[error("line {line}, column {column:?}: {value:?} {why}")]
    BadValue {
        line: u64,
        column: &'static str,
        value: String,
        why: String,
    },
    #[error("could not read the statement: {0}")]
    Io(#[from] std::io::Error),
}

/// One rail's export format: its name and its columns, in the order the provider writes them.
pub struct StatementFormat {
    /// e.g. "Stripe transfers export".
    pub name: &'static str,
    pub columns: &'static [&'static str],
    /// Columns that must be present to read a file.
    pub required: &'static [&'static str],
    /// One row as a provider record.
    pub parse_row: fn(&Row<'_>) -> Result<ProviderRecord, StatementError>,
    /// One provider record as a row, in `columns` order.
    pub to_row: fn(&ProviderRecord) -> Vec<String>,
}

/// A CSV statement being read: rows by column name, so column order and extra columns do not
/// matter (exports change their layout; names are what finance recognises).
pub struct StatementReader<R: std::io::Read> {
    format: &'static StatementFormat,
    rows: csv::StringRecordsIntoIter<R>,
    index: HashMap<String, usize>,
}

impl<R: std::io::Read> StatementReader<R> {
    pub fn new(format: &'static StatementFormat, reader: R) -> Result<Self, StatementError> {
        let mut csv = csv::ReaderBuilder::new()
            .flexible(true)
            .trim(csv::Trim::All)
            .from_reader(reader);
        let headers = csv.headers().map_err(|e| StatementError::Csv {
            line: 1,
            message: e.to_string(),
        })?;
        let index: HashMap<String, usize> = headers
            .iter()
            .enumerate()
            .map(|(i, h)| (h.trim_start_matches('\u{feff}').to_ascii_lowercase(), i))
            .collect();
        for column in format.required {
            if !index.contains_key(&column.to_ascii_lowercase()) {
                return Err(StatementError::MissingColumn {
                    column,
                    format: format.name,
                    expected: format.columns.join(", "),
                });
            }
        }
        Ok(StatementReader {
            format,
            rows: csv.into_records(),
            index,
        })
    }

    /// The next row, or `None` at the end of the file.
    pub fn next_row(&mut self) -> Option<Result<Row<'_>, StatementError>> {
        let record = match self.rows.next()? {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map(|p| p.line()).unwrap_or(0);
                return Some(Err(StatementError::Csv {
                    line,
                    message: e.to_string(),
                }));
            }
        };
        let line = record.position().map(|p| p.line()).unwrap_or(0);
        Some(Ok(Row {
            line,
            record,
            index: &self.index,
            format: self.format,
        }))
    }
}

/// One statement row.
pub struct Row<'a> {
    pub line: u64,
    record: csv::StringRecord,
    index: &'a HashMap<String, usize>,
    format: &'static StatementFormat,
}

impl Row<'_> {
    /// The cell, or `None` when the column is absent or the cell empty.
    pub fn get(&self, column: &'static str) -> Option<&str> {
        let i = *self.index.get(&column.to_ascii_lowercase())?;
        self.record.get(i).filter(|v| !v.is_empty())
    }

    /// A cell that must be there.
    pub fn require(&self, column: &'static str) -> Result<&str, StatementError> {
        self.get(column)
            .ok_or_else(|| self.bad(column, "", "is empty"))
    }

    /// A typed error about one cell.
    pub fn bad(&self, column: &'static str, value: &str, why: &str) -> StatementError {
        StatementError::BadValue {
            line: self.line,
            column,
            value: value.to_string(),
            why: format!("{why} (in a {})", self.format.name),
        }
    }
}

/// Writes a statement in a rail's format: the header, then one row per record.
pub fn write_statement<W: std::io::Write>(
    format: &StatementFormat,
    rows: impl IntoIterator<Item = Vec<String>>,
    out: W,
) -> Result<(), StatementError> {
    let mut csv = csv::Writer::from_writer(out);
    let map = |e: csv::Error| StatementError::Csv {
        line: 0,
        message: e.to_string(),
    };
    csv.write_record(format.columns).map_err(map)?;
    for row in rows {
        csv.write_record(&row).map_err(map)?;
    }
    csv.flush()?;
    Ok(())
}

/// The export format finance downloads from a rail (each rail's `statement::FORMAT`).
pub fn statement_format(rail: Rail) -> &'static StatementFormat {
    super::rail_statement_format(rail)
}

/// One provider record as a statement row, in its rail's column order.
pub fn statement_row(record: &ProviderRecord) -> Vec<String> {
    (statement_format(record.rail).to_row)(record)
}

/// Reads a whole statement in batches of at most `batch` records, handing each to `sink`.
/// Memory stays bounded by one batch whatever the file's size.
pub fn read_statement<R: std::io::Read>(
    rail: Rail,
    reader: R,
    batch: usize,
    mut sink: impl FnMut(Vec<ProviderRecord>) -> Result<(), StatementError>,
) -> Result<u64, StatementError> {
    let format = statement_format(rail);
    let mut rows = StatementReader::new(format, reader)?;
    let mut pending = Vec::with_capacity(batch);
    let mut total = 0u64;
    while let Some(row) = rows.next_row() {
        pending.push((format.parse_row)(&row?)?);
        total += 1;
        if pending.len() >= batch {
            sink(std::mem::take(&mut pending))?;
        }
    }
    if !pending.is_empty() {
        sink(pending)?;
    }
    Ok(total)
}

/// Writes records as a rail's statement and reads them back: the formats' round-trip tests.
#[cfg(test)]
pub(crate) fn round_trip(rail: Rail, records: &[ProviderRecord]) -> Vec<ProviderRecord> {
    let mut out = Vec::new();
    let format = statement_format(rail);
    write_statement(format, records.iter().map(statement_row), &mut out).unwrap();
    let mut reader = StatementReader::new(format, out.as_slice()).unwrap();
    let mut back = Vec::new();
    while let Some(row) = reader.next_row() {
        back.push((format.parse_row)(&row.unwrap()).unwrap());
    }
    back
}
