//! The bonus seed as the binary sees it: missing, it fails only what needs a draw; changed,
//! it stops every command until a rotation is asked for explicitly.

use crate::common;

use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_payouts");
const SEED: &str = "cli-bonus-seed-0123456789";
const NEW_SEED: &str = "cli-bonus-seed-rotated-9876543210";

/// Runs the binary with no bonus seed unless `env` sets one.
fn payouts(db: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env("DATABASE_URL", db)
        .env_remove("RUNPOD_BONUS_SEED")
        .env_remove("PAYOUTS_ROTATE_BONUS_SEED")
        .env_remove("PAYOUTS_PROGRAMS");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run payouts")
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn write(dir: &std::path::Path, name: &str, lines: &[&str]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, lines.join("\n")).expect("write records");
    path.display().to_string()
}

const VAST: &[&str] = &[
    r#"{"type":"account","id":"vr","created_at":"2025-01-01T00:00:00Z","email":"vr@x.com"}"#,
    r#"{"type":"account","id":"vn","created_at":"2025-02-01T00:00:00Z","email":"vn@x.com"}"#,
    r#"{"type":"referral","program":"vast","referrer":"vr","referred":"vn","at":"2025-02-01T00:00:00Z"}"#,
    r#"{"type":"usage","id":"vu","account":"vn","at":"2025-02-02T00:00:00Z","category":"instance","amount":"100","currency":"USD"}"#,
];

const RUNPOD: &[&str] = &[
    r#"{"type":"account","id":"rr","created_at":"2025-01-01T00:00:00Z","email":"rr@x.com"}"#,
    r#"{"type":"account","id":"rn","created_at":"2025-07-01T00:00:00Z","email":"rn@x.com"}"#,
    r#"{"type":"referral","program":"runpod","referrer":"rr","referred":"rn","at":"2025-07-01T00:00:00Z"}"#,
    r#"{"type":"usage","id":"ru","account":"rn","at":"2025-07-02T00:00:00Z","category":"pod","amount":"20","currency":"USD"}"#,
];

#[test]
fn without_the_bonus_seed_only_a_bonus_draw_fails() {
    let tdb = common::TestDb::blocking("noseed");
    let db = &tdb.url;
    let vast = write(tdb.dir.path(), "vast.ndjson", VAST);
    let o = payouts(db, &["ingest", &vast], &[]);
    assert!(o.status.success(), "{}", text(&o));
    let o = payouts(db, &["balance", "vr"], &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("3.00"), "{}", text(&o));
    let o = payouts(db, &["programs"], &[]);
    assert!(o.status.success(), "{}", text(&o));

    // Runpod spend that reaches the bonus threshold needs a draw: that ingest fails, with the
    // same message a missing seed always gave, and writes nothing.
    let runpod = write(tdb.dir.path(), "runpod.ndjson", RUNPOD);
    let o = payouts(db, &["ingest", &runpod], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("runpod-bonus")
            && text(&o).contains("RUNPOD_BONUS_SEED")
            && text(&o).contains("it is not set"),
        "{}",
        text(&o)
    );
    let o = payouts(db, &["balance", "rr"], &[]);
    assert!(
        text(&o).contains("account rr is not known"),
        "nothing of the failed file was written: {}",
        text(&o)
    );

    // With the seed, the same file goes in.
    let o = payouts(db, &["ingest", &runpod], &[("RUNPOD_BONUS_SEED", SEED)]);
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn a_changed_seed_is_refused_until_a_rotation_is_requested() {
    let tdb = common::TestDb::blocking("rotate");
    let db = &tdb.url;
    let runpod = write(tdb.dir.path(), "runpod.ndjson", RUNPOD);
    let o = payouts(db, &["ingest", &runpod], &[("RUNPOD_BONUS_SEED", SEED)]);
    assert!(o.status.success(), "{}", text(&o));
    let before = payouts(
        db,
        &["balance", "rn", "--json"],
        &[("RUNPOD_BONUS_SEED", SEED)],
    );
    assert!(before.status.success(), "{}", text(&before));

    let o = payouts(db, &["balance", "rn"], &[("RUNPOD_BONUS_SEED", NEW_SEED)]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("RUNPOD_BONUS_SEED") && text(&o).contains("PAYOUTS_ROTATE_BONUS_SEED"),
        "{}",
        text(&o)
    );
    assert!(!text(&o).contains(NEW_SEED) && !text(&o).contains(SEED));

    let rotate = [
        ("RUNPOD_BONUS_SEED", NEW_SEED),
        ("PAYOUTS_ROTATE_BONUS_SEED", "1"),
    ];
    let o = payouts(db, &["accrue"], &rotate);
    assert!(o.status.success(), "{}", text(&o));
    // Once rotated, the new seed is the accepted one; the old draw stands.
    let after = payouts(
        db,
        &["balance", "rn", "--json"],
        &[("RUNPOD_BONUS_SEED", NEW_SEED)],
    );
    assert!(after.status.success(), "{}", text(&after));
    assert_eq!(after.stdout, before.stdout);
    let o = payouts(db, &["balance", "rn"], &[("RUNPOD_BONUS_SEED", SEED)]);
    assert_eq!(o.status.code(), Some(1), "the old seed is now the stranger");
}
