//! Stripe's "Transfers" dashboard export (CSV), read into and written from provider records.
//!
//! Amounts are in major units (`12.50`), `Created (UTC)` is `YYYY-MM-DD HH:MM:SS`. The export
//! holds transfers only; the platform's bank payouts are a separate export.

use chrono::{DateTime, NaiveDateTime, Utc};
use rust_decimal::Decimal;

use crate::domain::ids::Rail;
use crate::domain::money::{Currency, Money};
use crate::domain::reconcile::{ProviderRecord, RecordKind};
use crate::domain::tracking::RailState;
use crate::providers::records::{Row, StatementError, StatementFormat};

const ID: &str = "id";
const CREATED: &str = "Created (UTC)";
const AMOUNT: &str = "Amount";
const CURRENCY: &str = "Currency";
const DESTINATION: &str = "Destination";
const TRANSFER_GROUP: &str = "Transfer Group";
const DESCRIPTION: &str = "Description";
const AMOUNT_REVERSED: &str = "Amount Reversed";
const REVERSED: &str = "Reversed";
const PAYOUT_ID: &str = "payout_id (metadata)";

pub static FORMAT: StatementFormat = StatementFormat {
    name: "Stripe transfers export",
    columns: &[
        ID,
        CREATED,
        AMOUNT,
        CURRENCY,
        DESTINATION,
        TRANSFER_GROUP,
        DESCRIPTION,
        AMOUNT_REVERSED,
        REVERSED,
        PAYOUT_ID,
    ],
    required: &[ID, CREATED, AMOUNT, CURRENCY, DESTINATION],
    parse_row,
    to_row,
};

/// The dashboard's date form.
pub(crate) const DATE_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// One row of the export as a transfer record, its state as [`super::observe`] would say.
pub fn parse_row(row: &Row<'_>) -> Result<ProviderRecord, StatementError> {
    let id = row.require(ID)?;
    let created_at = parse_date(row, CREATED)?;
    let code = row.require(CURRENCY)?;
    let currency: Currency = code
        .parse()
        .map_err(|_| row.bad(CURRENCY, code, "is not a currency this system handles"))?;
    let amount = parse_amount(row, AMOUNT, currency)?.unwrap_or(Money::zero(currency));
    let reversed_amount = parse_amount(row, AMOUNT_REVERSED, currency)?;
    let reversed = match row.get(REVERSED) {
        None => false,
        Some(v) if v.eq_ignore_ascii_case("true") => true,
        Some(v) if v.eq_ignore_ascii_case("false") => false,
        Some(v) => return Err(row.bad(REVERSED, v, "is neither true nor false")),
    };
    let minor = |m: Money, column| {
        m.to_minor_units()
            .map_err(|e| row.bad(column, &m.amount().to_string(), &e.to_string()))
    };
    let observation = super::observe_reversal(
        minor(amount, AMOUNT)?,
        match reversed_amount {
            Some(m) => minor(m, AMOUNT_REVERSED)?,
            None => 0,
        },
        reversed,
    );
    Ok(ProviderRecord {
        rail: Rail::Stripe,
        kind: RecordKind::Transfer,
        record_id: id.to_string(),
        reference: row.get(TRANSFER_GROUP).map(str::to_string),
        payout_hint: row.get(PAYOUT_ID).map(str::to_string),
        group_id: None,
        payee: row.require(DESTINATION)?.to_string(),
        amount,
        state: observation.state,
        provider_status: observation.provider_status,
        created_at,
    })
}

/// A transfer record as a row, in [`FORMAT`]'s column order. A record carries no reversed
/// amount: a returned transfer is written reversed in full, and a partially reversed one
/// (`Disputed`) with the smallest reversal (one minor unit), which reads back the same.
pub fn to_row(record: &ProviderRecord) -> Vec<String> {
    let currency = record.amount.currency();
    let reversed_minor = match record.state {
        RailState::Returned => record.amount.to_minor_units().unwrap_or(0),
        RailState::Disputed => 1,
        _ => 0,
    };
    vec![
        record.record_id.clone(),
        record.created_at.format(DATE_FORMAT).to_string(),
        major(&record.amount),
        currency.code().to_ascii_lowercase(),
        record.payee.clone(),
        record.reference.clone().unwrap_or_default(),
        String::new(),
        major(&Money::from_minor_units(reversed_minor, currency)),
        (record.state == RailState::Returned).to_string(),
        record.payout_hint.clone().unwrap_or_default(),
    ]
}

/// `12.50`, `1250` (JPY): the currency's minor decimals, always written out.
pub(crate) fn major(money: &Money) -> String {
    let mut value: Decimal = money.amount();
    value.rescale(money.currency().minor_decimals());
    value.to_string()
}

/// A non-negative amount in whole minor units of `currency`, if the cell is filled.
pub(crate) fn parse_amount(
    row: &Row<'_>,
    column: &'static str,
    currency: Currency,
) -> Result<Option<Money>, StatementError> {
    let Some(value) = row.get(column) else {
        return Ok(None);
    };
    let money = Money::parse(value, currency, currency.minor_decimals()).map_err(|e| {
        row.bad(
            column,
            value,
            &format!("is not an amount in {currency}: {e}"),
        )
    })?;
    if money.is_negative() {
        return Err(row.bad(column, value, "is negative"));
    }
    Ok(Some(money))
}

/// `YYYY-MM-DD HH:MM:SS` in UTC (an RFC 3339 time is accepted too).
pub(crate) fn parse_date(
    row: &Row<'_>,
    column: &'static str,
) -> Result<DateTime<Utc>, StatementError> {
    let value = row.require(column)?;
    NaiveDateTime::parse_from_str(value, DATE_FORMAT)
        .map(|t| t.and_utc())
        .or_else(|_| DateTime::parse_from_rfc3339(value).map(|t| t.with_timezone(&Utc)))
        .map_err(|_| {
            row.bad(
                column,
                value,
                "is not a date and time like 2024-06-01 12:00:00",
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::records::StatementReader;
    use proptest::prelude::*;

    fn record(minor: i64, currency: Currency, state: RailState) -> ProviderRecord {
        let status = match state {
            RailState::Returned => "reversed",
            RailState::Disputed => "partially_reversed",
            _ => "transferred",
        };
        ProviderRecord {
            rail: Rail::Stripe,
            kind: RecordKind::Transfer,
            record_id: "tr_mock0000000001".into(),
            reference: Some("01J0PAYOUT".into()),
            payout_hint: Some("01J0PAYOUT".into()),
            group_id: None,
            payee: "acct_1Nabc".into(),
            amount: Money::from_minor_units(minor, currency),
            state,
            provider_status: status.into(),
            created_at: DateTime::from_timestamp(1_717_243_200, 0).unwrap(),
        }
    }

    fn round_trip(records: &[ProviderRecord]) -> Vec<ProviderRecord> {
        crate::providers::records::round_trip(Rail::Stripe, records)
    }

    #[test]
    fn rows_read_back_as_the_records_they_were_written_from() {
        let records = vec![
            record(1250, Currency::Usd, RailState::Paid),
            record(1250, Currency::Eur, RailState::Returned),
            record(99, Currency::Jpy, RailState::Disputed),
        ];
        assert_eq!(round_trip(&records), records);
        let row = to_row(&records[0]);
        assert_eq!(row[2], "12.50");
        assert_eq!(row[1], "2024-06-01 12:00:00");
        assert_eq!(row[3], "usd");
        assert_eq!(row.len(), FORMAT.columns.len());
    }

    fn read_one(csv: &str) -> Result<ProviderRecord, StatementError> {
        let mut reader = StatementReader::new(&FORMAT, csv.as_bytes())?;
        let row = reader.next_row().unwrap()?;
        parse_row(&row)
    }

    #[test]
    fn bad_cells_are_named_with_their_line_and_column() {
        let head = "id,Created (UTC),Amount,Currency,Destination\n";
        let err = read_one(&format!(
            "{head}tr_1,2024-06-01 12:00:00,12.5x,usd,acct_1\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("line 2") && err.contains("Amount"), "{err}");
        let err = read_one(&format!(
            "{head}tr_1,2024-06-01 12:00:00,12.50,xyz,acct_1\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("Currency") && err.contains("xyz"), "{err}");
        let err = read_one(&format!("{head}tr_1,June 1st,12.50,usd,acct_1\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("Created (UTC)"), "{err}");
        let err = read_one(&format!(
            "{head}tr_1,2024-06-01 12:00:00,12.505,usd,acct_1\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("Amount"), "{err}");
        // Column order and extra columns do not matter; optional columns may be absent.
        let r = read_one(
            "Currency,Amount,Extra,Destination,id,Created (UTC),Amount Reversed\n\
             usd,10.00,x,acct_1,tr_1,2024-06-01 12:00:00,4.00\n",
        )
        .unwrap();
        assert_eq!(r.state, RailState::Disputed);
        assert_eq!(r.reference, None);
        let missing = StatementReader::new(&FORMAT, "id,Amount\n".as_bytes())
            .err()
            .unwrap()
            .to_string();
        assert!(missing.contains("Created (UTC)"), "{missing}");
    }

    fn any_currency() -> impl Strategy<Value = Currency> {
        prop_oneof![
            Just(Currency::Usd),
            Just(Currency::Eur),
            Just(Currency::Gbp),
            Just(Currency::Jpy),
            Just(Currency::Krw),
        ]
    }

    fn any_state() -> impl Strategy<Value = RailState> {
        prop_oneof![
            Just(RailState::Paid),
            Just(RailState::Returned),
            Just(RailState::Disputed),
        ]
    }

    proptest! {
        #[test]
        fn any_transfer_record_round_trips(
            minor in 2i64..1_000_000_000_000,
            currency in any_currency(),
            state in any_state(),
            secs in 0i64..4_000_000_000,
        ) {
            let mut r = record(minor, currency, state);
            r.created_at = DateTime::from_timestamp(secs, 0).unwrap();
            prop_assert_eq!(round_trip(std::slice::from_ref(&r)), vec![r]);
        }
    }
}
