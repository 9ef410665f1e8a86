//! Applying ingested records: parse errors and apply errors together, and what to keep.
//!
//! Default: good records go in and bad ones are reported (with line numbers). `strict`: any
//! bad record, at parse time or at apply time, rolls the whole batch back.

use super::{Store, StoreResult};
use crate::ingest::{IngestReport, LineError, Numbered};

impl Store {
    /// Applies parsed records beside the ones that failed to parse (a file's lines or an API
    /// batch's records, numbered from 1).
    pub async fn ingest_parsed(
        &self,
        records: Vec<Numbered>,
        mut rejected: Vec<LineError>,
        strict: bool,
    ) -> StoreResult<IngestReport> {
        let mut report = IngestReport {
            lines_read: records.len() + rejected.len(),
            ..IngestReport::default()
        };
        if strict && !rejected.is_empty() {
            report.rejected = rejected;
            report.rolled_back = true;
            return Ok(report);
        }
        let apply_errors = self.ingest_batch(&records, &mut report, strict).await?;
        rejected.extend(apply_errors);
        rejected.sort_by_key(|e| e.line);
        report.rejected = rejected;
        if strict && !report.rejected.is_empty() {
            let lines_read = report.lines_read;
            report = IngestReport {
                lines_read,
                rejected: report.rejected,
                rolled_back: true,
                ..IngestReport::default()
            };
            return Ok(report);
        }
        Ok(report)
    }
}
