//! The Wise balance statement (CSV export of a balance's movements), as far as payouts show
//! in it: one row per transfer that took money out of the balance.
//!
//! - `TransferWise ID` is `TRANSFER-<transfer id>`; the record id is the number.
//! - `Amount` is signed from the balance's point of view: a payout is money out, so negative
//!   (`-12.50`); the record holds the positive amount. A positive amount is money in (a
//!   top-up or a refund), which is not reconciled against payouts and is refused by name.
//! - `Date` is `YYYY-MM-DD HH:MM:SS` in UTC.
//! - `Payee Account Number` is the recipient account id, the payouts' Wise destination form.
//! - `Payment Reference` carries our payout id, `Customer Transaction ID` our attempt token,
//!   `Status` the Wise status word. Without a `Status` column a row only says the money left
//!   the balance: it reads as `outgoing_payment_sent` (paid), the most the file can say.

use std::str::FromStr;

use chrono::{DateTime, NaiveDateTime, Utc};
use rust_decimal::Decimal;

use super::classify::observe_status;
use crate::domain::ids::Rail;
use crate::domain::money::{Currency, Money};
use crate::domain::reconcile::{ProviderRecord, RecordKind};
use crate::domain::tracking::RailState;
use crate::providers::records::{Row, StatementError, StatementFormat};

pub const ID: &str = "TransferWise ID";
pub const DATE: &str = "Date";
pub const AMOUNT: &str = "Amount";
pub const CURRENCY: &str = "Currency";
pub const DESCRIPTION: &str = "Description";
pub const PAYMENT_REFERENCE: &str = "Payment Reference";
pub const RUNNING_BALANCE: &str = "Running Balance";
pub const PAYEE_NAME: &str = "Payee Name";
pub const PAYEE_ACCOUNT: &str = "Payee Account Number";
pub const CUSTOMER_TRANSACTION_ID: &str = "Customer Transaction ID";
pub const STATUS: &str = "Status";

/// The prefix of a transfer's `TransferWise ID`.
pub const TRANSFER_PREFIX: &str = "TRANSFER-";

/// The status a row without a `Status` column is read as.
const DEBITED: &str = "outgoing_payment_sent";

const DATE_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

pub static FORMAT: StatementFormat = StatementFormat {
    name: "Wise balance statement",
    columns: &[
        ID,
        DATE,
        AMOUNT,
        CURRENCY,
        DESCRIPTION,
        PAYMENT_REFERENCE,
        RUNNING_BALANCE,
        PAYEE_NAME,
        PAYEE_ACCOUNT,
        CUSTOMER_TRANSACTION_ID,
        STATUS,
    ],
    required: &[ID, DATE, AMOUNT, CURRENCY, PAYEE_ACCOUNT],
    parse_row,
    to_row,
};

fn parse_date(text: &str) -> Option<DateTime<Utc>> {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
        .ok()
        .map(|t| t.and_utc())
        .or_else(|| {
            DateTime::parse_from_rfc3339(text)
                .ok()
                .map(|t| t.with_timezone(&Utc))
        })
}

/// One statement row as a Wise transfer record.
pub fn parse_row(row: &Row<'_>) -> Result<ProviderRecord, StatementError> {
    let id = row.require(ID)?;
    let number = id
        .get(..TRANSFER_PREFIX.len())
        .filter(|p| p.eq_ignore_ascii_case(TRANSFER_PREFIX))
        .map(|_| &id[TRANSFER_PREFIX.len()..])
        .unwrap_or(id);
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(row.bad(
            ID,
            id,
            "is not a transfer (expected TRANSFER-<number>); only transfers are reconciled",
        ));
    }
    let date = row.require(DATE)?;
    let created_at = parse_date(date)
        .ok_or_else(|| row.bad(DATE, date, "is not a UTC time as YYYY-MM-DD HH:MM:SS"))?;
    let amount_text = row.require(AMOUNT)?;
    let signed = Decimal::from_str_exact(amount_text).map_err(|_| {
        row.bad(
            AMOUNT,
            amount_text,
            "is not a decimal amount such as -12.50",
        )
    })?;
    if signed > Decimal::ZERO {
        return Err(row.bad(
            AMOUNT,
            amount_text,
            "is money into the balance; only outgoing transfers (negative amounts) are reconciled",
        ));
    }
    if signed.is_zero() {
        return Err(row.bad(AMOUNT, amount_text, "is zero: no money moved"));
    }
    let code = row.require(CURRENCY)?;
    let currency = Currency::from_str(code).map_err(|e| row.bad(CURRENCY, code, &e.to_string()))?;
    let (state, provider_status) = match row.get(STATUS) {
        Some(s) => (observe_status(s).state, s.to_string()),
        None => (RailState::Paid, DEBITED.to_string()),
    };
    Ok(ProviderRecord {
        rail: Rail::Wise,
        kind: RecordKind::Transfer,
        record_id: number.to_string(),
        reference: row.get(CUSTOMER_TRANSACTION_ID).map(str::to_string),
        payout_hint: row.get(PAYMENT_REFERENCE).map(str::to_string),
        group_id: None,
        payee: row.require(PAYEE_ACCOUNT)?.to_string(),
        amount: Money::new(-signed, currency),
        state,
        provider_status,
        created_at,
    })
}

/// One Wise transfer record as a statement row, in [`FORMAT`] column order.
pub fn to_row(record: &ProviderRecord) -> Vec<String> {
    vec![
        format!("{TRANSFER_PREFIX}{}", record.record_id),
        record.created_at.format(DATE_FORMAT).to_string(),
        record.amount.negate().display_amount(),
        record.amount.currency().code().to_string(),
        format!("Sent money to recipient {}", record.payee),
        record.payout_hint.clone().unwrap_or_default(),
        String::new(),
        String::new(),
        record.payee.clone(),
        record.reference.clone().unwrap_or_default(),
        record.provider_status.clone(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::records::{StatementReader, write_statement};

    fn record() -> ProviderRecord {
        ProviderRecord {
            rail: Rail::Wise,
            kind: RecordKind::Transfer,
            record_id: "50000123".into(),
            reference: Some("6f1c2d9e-0000-5000-8000-000000000001".into()),
            payout_hint: Some("po_01JTEST".into()),
            group_id: None,
            payee: "1002".into(),
            amount: Money::new(Decimal::new(1250, 2), Currency::Usd),
            state: RailState::Returned,
            provider_status: "funds_refunded".into(),
            created_at: parse_date("2025-03-04 05:06:07").unwrap(),
        }
    }

    fn read(csv: &str) -> Vec<Result<ProviderRecord, String>> {
        let mut reader = StatementReader::new(&FORMAT, csv.as_bytes()).unwrap();
        let mut out = Vec::new();
        while let Some(row) = reader.next_row() {
            out.push(parse_row(&row.unwrap()).map_err(|e| e.to_string()));
        }
        out
    }

    #[test]
    fn a_record_round_trips_through_a_row() {
        let r = record();
        let row = to_row(&r);
        assert_eq!(row.len(), FORMAT.columns.len());
        assert_eq!(row[0], "TRANSFER-50000123");
        assert_eq!(row[2], "-12.50");
        let mut csv = Vec::new();
        write_statement(&FORMAT, [row], &mut csv).unwrap();
        let parsed = read(std::str::from_utf8(&csv).unwrap());
        assert_eq!(parsed, vec![Ok(r)]);
    }

    #[test]
    fn money_in_and_other_rows_are_refused_by_name() {
        let csv = "TransferWise ID,Date,Amount,Currency,Payee Account Number\n\
                   TRANSFER-1,2025-03-04 05:06:07,12.50,USD,1002\n\
                   BALANCE-7,2025-03-04 05:06:07,-1.00,USD,1002\n\
                   TRANSFER-2,2025-03-04 05:06:07,-1.00,USD,1002\n";
        let rows = read(csv);
        let e = rows[0].as_ref().unwrap_err();
        assert!(
            e.contains("only outgoing transfers") && e.contains("line 2"),
            "{e}"
        );
        assert!(rows[1].as_ref().unwrap_err().contains("not a transfer"));
        // Without a Status column the debit reads as paid.
        let ok = rows[2].as_ref().unwrap();
        assert_eq!((ok.state, ok.record_id.as_str()), (RailState::Paid, "2"));
        assert_eq!(ok.amount, Money::new(Decimal::ONE, Currency::Usd));
    }

    #[test]
    fn a_missing_required_column_names_the_format() {
        let e = StatementReader::new(&FORMAT, "TransferWise ID,Date,Amount\n".as_bytes())
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("Currency") && e.contains("Wise balance statement"),
            "{e}"
        );
    }
}
