//! What a prune did (or, dry, would do), table by table.

use serde::Serialize;

/// One table's rows before and after, and how many went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TablePruned {
    pub table: &'static str,
    /// What its rows are, and after how many days they go.
    pub what: String,
    pub days: u32,
    pub before: i64,
    pub deleted: i64,
    pub after: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PruneReport {
    pub dry_run: bool,
    pub tables: Vec<TablePruned>,
}
