//! Bulk reads of many narrow rows as one packed value per chunk.
//!
//! sqlx hands every row of a SQLite result from the connection's worker thread to the reader
//! on its own, at about 5 µs a row: far more than SQLite spends producing it. A bulk read
//! (a payout run's million balances) therefore asks the database to join each row's fields
//! with tabs and the rows with newlines into one value, and splits it here. Only fields that
//! cannot hold a tab or a newline go in as they are: ids and codes validated when written,
//! and integers. Free text goes in hex (`hex_text`).

use super::{StoreError, StoreResult};

/// One row's fields as one SQL expression: the fields joined with tabs. A NULL field makes
/// the whole line NULL (and drops the row), so nullable fields are wrapped by the caller.
pub(crate) fn line(fields: &[&str]) -> String {
    fields.join(" || '\t' || ")
}

/// Wraps `inner`, a query with a `line` column (see [`line`]), into one that returns
/// `(rows, packed)`: the number of lines and the lines joined with newlines, in `order`.
pub(crate) fn packed(inner: &str, order: &str) -> String {
    format!(
        "SELECT COUNT(*), COALESCE(string_agg(line, '\n' ORDER BY {order}), '') \
         FROM ({inner}) packed_rows"
    )
}

/// The lines of a packed value, each split into its `N` fields.
pub(crate) fn unpack<const N: usize>(
    packed: &str,
) -> impl Iterator<Item = StoreResult<[&str; N]>> + '_ {
    packed.split('\n').filter(|l| !l.is_empty()).map(|l| {
        let wrong = || StoreError::Corrupt(format!("a packed row does not have {N} fields: {l:?}"));
        let mut fields = l.split('\t');
        let mut out = [""; N];
        for slot in &mut out {
            *slot = fields.next().ok_or_else(wrong)?;
        }
        match fields.next() {
            Some(_) => Err(wrong()),
            None => Ok(out),
        }
    })
}

/// A packed integer field.
pub(crate) fn int(field: &str) -> StoreResult<i64> {
    field
        .parse()
        .map_err(|_| StoreError::Corrupt(format!("a packed integer field reads {field:?}")))
}

/// A packed hex field (see `hex_text`), back to its text.
pub(crate) fn text_from_hex(field: &str) -> StoreResult<String> {
    hex::decode(field)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| StoreError::Corrupt(format!("a packed text field reads {field:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_into_their_fields_and_a_wrong_count_is_an_error() {
        let rows: Vec<[&str; 3]> = unpack::<3>("a\tb\t1\nc\t\t2\n")
            .collect::<StoreResult<_>>()
            .unwrap();
        assert_eq!(rows, [["a", "b", "1"], ["c", "", "2"]]);
        assert!(unpack::<3>("").next().is_none());
        assert!(unpack::<3>("a\tb").next().unwrap().is_err());
        assert!(unpack::<3>("a\tb\tc\td").next().unwrap().is_err());
        assert_eq!(int("-42").unwrap(), -42);
        assert!(int("4x").is_err());
        assert_eq!(text_from_hex("6163637431").unwrap(), "acct1");
        assert_eq!(text_from_hex("").unwrap(), "");
        assert!(text_from_hex("zz").is_err());
    }
}
