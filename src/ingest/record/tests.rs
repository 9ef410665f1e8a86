use super::*;

#[test]
fn parses_each_record_type() {
    let lines = [
        r#"{"type":"account","id":"a1","created_at":"2026-01-01T00:00:00Z","email":"a@x.com","payment_fingerprint":"fp","country":"us","hosted_machines":true}"#,
        r#"{"type":"referral","program":"vast","referrer":"a1","referred":"b1","at":"2026-01-02T00:00:00Z","template_id":"t1"}"#,
        r#"{"type":"usage","id":"u1","account":"b1","at":"2026-01-03T00:00:00Z","category":"instance","amount":"10.50","currency":"USD"}"#,
        r#"{"type":"refund","id":"r1","usage_id":"u1","amount":"1.5"}"#,
        r#"{"type":"purchase","id":"p1","account":"b1","at":"2026-01-03T00:00:00Z","amount":"100","currency":"USD"}"#,
        r#"{"type":"payout_method","account":"a1","rail":"stripe","destination":"acct_123"}"#,
        r#"{"type":"link","a":"b1","b":"a1","reason":"same device"}"#,
    ];
    let kinds: Vec<_> = lines
        .iter()
        .map(|l| Record::parse_line(l).unwrap().kind())
        .collect();
    assert_eq!(
        kinds,
        [
            "account",
            "referral",
            "usage",
            "refund",
            "purchase",
            "payout_method",
            "link"
        ]
    );
    match Record::parse_line(lines[6]).unwrap() {
        Record::Link(l) => assert_eq!((l.a.as_str(), l.b.as_str()), ("a1", "b1")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn rejects_float_amounts_with_advice() {
    let err = Record::parse_line(
        r#"{"type":"usage","id":"u1","account":"b1","at":"2026-01-03T00:00:00Z","category":"pod","amount":10.5,"currency":"USD"}"#,
    )
    .unwrap_err();
    assert!(err.to_string().contains("decimal strings"), "{err}");
}

#[test]
fn rejects_bad_values_with_reasons() {
    let cases = [
        (
            r#"{"type":"usage","id":"u1","account":"b1","at":"2026-01-03T00:00:00Z","category":"pod","amount":"-1","currency":"USD"}"#,
            "greater than zero",
        ),
        (
            r#"{"type":"usage","id":"u1","account":"b1","at":"2026-01-03T00:00:00Z","category":"pod","amount":"1","currency":"DOGE"}"#,
            "unknown currency",
        ),
        (
            r#"{"type":"usage","id":"u1","account":"b1","at":"2026-01-03T00:00:00Z","category":"gpu","amount":"1","currency":"USD"}"#,
            "usage category",
        ),
        (
            r#"{"type":"payout_method","account":"a1","rail":"stripe","destination":"bank-123"}"#,
            "not a valid stripe destination",
        ),
        (
            r#"{"type":"account","id":"a 1","created_at":"2026-01-01T00:00:00Z","email":"a@x.com"}"#,
            "may only contain",
        ),
        (
            r#"{"type":"account","id":"a1","created_at":"2026-01-01T00:00:00Z","email":"a@x.com","color":"red"}"#,
            "unknown field",
        ),
        (
            r#"{"type":"usage","id":"u1","account":"b1","at":"2026-01-03T00:00:00Z","category":"pod","amount":"1000000000","currency":"USD"}"#,
            "over the largest single amount",
        ),
        (
            r#"{"type":"refund","id":"r1","usage_id":"u1","amount":"922337204"}"#,
            "over the largest single amount",
        ),
        (r#"{"type":"bonus","id":"x"}"#, "unknown variant"),
        (r#"not json"#, "not a valid record"),
    ];
    for (line, expected) in cases {
        let err = Record::parse_line(line).unwrap_err().to_string();
        assert!(err.contains(expected), "{line} -> {err}");
    }
}

#[test]
fn wise_recipient_ids_must_fit_the_providers_integer() {
    // Wise's recipient (target account) ids are u64 on the wire (providers/wise/wire.rs).
    assert!(validate_destination(Rail::Wise, "9999999999999999999").is_ok());
    assert!(validate_destination(Rail::Wise, "12345678").is_ok());
    for too_big in ["18446744073709551616", &"9".repeat(64)] {
        let Err(err) = validate_destination(Rail::Wise, too_big) else {
            panic!("{too_big} is accepted");
        };
        let err = err.to_string();
        assert!(err.contains("not a valid wise destination"), "{err}");
        let line = format!(
            r#"{{"type":"payout_method","account":"a1","rail":"wise","destination":"{too_big}"}}"#
        );
        assert!(Record::parse_line(&line).is_err(), "{line} is accepted");
    }
}

#[test]
fn content_hash_separates_fields() {
    assert_ne!(content_hash(&["ab", "c"]), content_hash(&["a", "bc"]));
    assert_eq!(content_hash(&["x"]), content_hash(&["x"]));
}

#[test]
fn a_bad_timestamp_names_its_field_and_the_format() {
    let e = Record::parse_line(
        r#"{"type":"account","id":"a1","created_at":"yesterday","email":"a@x.com"}"#,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("created_at") && e.contains("RFC 3339") && e.contains("yesterday"),
        "{e}"
    );
    let e = Record::parse_line(
        r#"{"type":"purchase","id":"p1","account":"b1","at":"2026-13-01","amount":"1","currency":"USD"}"#,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("at:") && e.contains("RFC 3339"), "{e}");
}

#[test]
fn a_tax_profile_keeps_the_last_four_digits_and_never_a_full_tax_id() {
    let line = r#"{"type":"tax_profile","account":"a1","status":"w9","country":"us","tax_id_last4":"6789","received_at":"2026-02-01T00:00:00Z"}"#;
    match Record::parse_line(line).unwrap() {
        Record::TaxProfile(p) => {
            assert_eq!(p.form, crate::domain::tax::TaxForm::W9);
            assert_eq!(
                (p.country.as_str(), p.tin_last4.as_deref()),
                ("US", Some("6789"))
            );
        }
        other => panic!("{other:?}"),
    }
    // A full tax id is refused without repeating it anywhere.
    let full = r#"{"type":"tax_profile","account":"a1","status":"w9","country":"US","tax_id":"123-45-6789","received_at":"2026-02-01T00:00:00Z"}"#;
    let err = Record::parse_line(full).unwrap_err().to_string();
    assert!(err.contains("never stored"), "{err}");
    assert!(!err.contains("6789"), "{err}");
    let long = r#"{"type":"tax_profile","account":"a1","status":"w9","country":"US","tax_id_last4":"123456789","received_at":"2026-02-01T00:00:00Z"}"#;
    let err = Record::parse_line(long).unwrap_err().to_string();
    assert!(
        err.contains("last 4 digits") && !err.contains("123456789"),
        "{err}"
    );
}
