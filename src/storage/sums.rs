//! Exact totals of stored units that cannot overflow, computed by the database.
//!
//! One stored amount fits an `i64` (that is the per-amount cap), but a total of many need not:
//! SQLite's `SUM` of integers fails with "integer overflow", and PostgreSQL's NUMERIC sum
//! fails when cast back to BIGINT. So a total is summed as two columns, the sums of each
//! amount's high and low halves (split at 2^32; `/` and `%` truncate alike on both backends),
//! which stay within an `i64` for up to 2^31 rows, and [`join`]ed into an `i128` in Rust.
//! Exact, and as set-based as a plain `SUM`.

/// Where amounts are split: 2^32.
const SPLIT: i64 = 1 << 32;

/// Two SQL columns: the sums of the high and low halves of the integer expression `expr`
/// (rows where it is NULL are skipped; no rows give 0 and 0). Read them back with [`join`].
pub(crate) fn wide_sum(expr: &str) -> String {
    let [high, low] = halves(expr);
    format!("CAST(COALESCE(SUM({high}), 0) AS BIGINT), CAST(COALESCE(SUM({low}), 0) AS BIGINT)")
}

/// The high and low halves of one row's `expr`, for totals [`wide_sum`] does not fit (a sum
/// of per-row subquery sums): sum each half separately, all the way up, then [`join`].
pub(crate) fn halves(expr: &str) -> [String; 2] {
    [
        format!("CAST({expr} AS BIGINT) / {SPLIT}"),
        format!("CAST({expr} AS BIGINT) % {SPLIT}"),
    ]
}

/// The exact total of the two columns of a [`wide_sum`].
pub(crate) fn join(high: i64, low: i64) -> i128 {
    i128::from(high) * i128::from(SPLIT) + i128::from(low)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the database computes, row by row, with truncating division and remainder.
    fn halves(values: &[i64]) -> (i64, i64) {
        values
            .iter()
            .fold((0, 0), |(h, l), v| (h + v / SPLIT, l + v % SPLIT))
    }

    #[test]
    fn the_halves_join_to_the_exact_total_past_the_i64_range() {
        let cases: [&[i64]; 4] = [
            &[],
            &[-9, 4, 1 << 40, -(1 << 33) - 7],
            &[i64::MAX, i64::MAX, i64::MAX],
            &[i64::MIN, i64::MIN, 5, i64::MAX],
        ];
        for values in cases {
            let (h, l) = halves(values);
            let exact: i128 = values.iter().map(|v| i128::from(*v)).sum();
            assert_eq!(join(h, l), exact, "{values:?}");
        }
    }

    #[test]
    fn the_sql_names_the_expression_in_both_halves() {
        let sql = wide_sum("-p.units");
        assert!(
            sql.contains("SUM(CAST(-p.units AS BIGINT) / 4294967296)"),
            "{sql}"
        );
        assert!(
            sql.contains("SUM(CAST(-p.units AS BIGINT) % 4294967296)"),
            "{sql}"
        );
    }
}
