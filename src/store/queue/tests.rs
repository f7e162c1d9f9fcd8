//! SQL of the queue tables on SQLite; the MariaDB side runs in `tests/it/queue_database/`.

use super::*;

#[test]
fn skip_locked_needs_mariadb_10_6_or_mysql_8() {
    assert!(skip_locked_supported("10.11.19-MariaDB-0+deb12u1"));
    assert!(skip_locked_supported("10.6.0-MariaDB"));
    assert!(!skip_locked_supported("10.5.23-MariaDB-log"));
    assert!(skip_locked_supported("8.0.36"));
    assert!(!skip_locked_supported("5.7.44-log"));
    assert!(!skip_locked_supported("garbage"));
}

#[test]
fn times_are_fixed_width_and_read_back() {
    let t = DateTime::from_timestamp(1_800_000_000, 123_456_000).unwrap();
    assert_eq!(db_time(t), "2027-01-15 08:00:00.123456");
    assert_eq!(parse_time(&db_time(t)), t);
    assert_eq!(
        parse_time("2027-01-15 08:00:00"),
        t - chrono::TimeDelta::microseconds(123_456)
    );
    assert_eq!(parse_time("nonsense"), DateTime::UNIX_EPOCH);
    assert_eq!(
        db_time(DateTime::<Utc>::MAX_UTC),
        "9999-12-31 23:59:59.000000"
    );
}

#[tokio::test]
async fn rows_round_trip_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("q.db").display());
    let (store, _) = Store::open(&url).await.unwrap();
    let t = |s: i64| DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap();
    let body: Vec<u8> = (0..CHUNK * 2 + 7).map(|i| (i % 251) as u8).collect();
    let row = NewQueueRow {
        id: "0123456789abcdef01234567",
        sender: "a@example.org",
        created: t(0),
        size: body.len() as u64,
        record: "{}",
        next_attempt: t(0),
    };
    let mut tx = store.begin_queue().await.unwrap();
    assert!(tx.queue_insert(&row, &body).await.unwrap());
    assert!(!tx.queue_insert(&row, &body).await.unwrap(), "id taken");
    tx.commit().await.unwrap();

    let mut tx = store.begin_queue().await.unwrap();
    assert_eq!(tx.queue_body(row.id).await.unwrap().unwrap(), body);
    assert!(
        tx.queue_lock_due(t(-1), 10, DueLocking::Wait)
            .await
            .unwrap()
            .is_empty()
    );
    let due = tx.queue_lock_due(t(0), 10, DueLocking::Wait).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].lease, None);
    let lease = QueueLeaseRow {
        holder: "node".into(),
        claim: 1,
        pid: 7,
        expires: t(60),
    };
    let update = QueueUpdate {
        record: "{\"x\":1}",
        hold: false,
        next_attempt: t(60),
        lease: Some(&lease),
    };
    tx.queue_update(row.id, &update).await.unwrap();
    tx.commit().await.unwrap();

    let mut tx = store.begin_queue().await.unwrap();
    assert!(
        tx.queue_lock_due(t(59), 10, DueLocking::Wait)
            .await
            .unwrap()
            .is_empty()
    );
    let locked = tx.queue_lock(row.id).await.unwrap().unwrap();
    assert_eq!(locked.lease, Some(lease));
    assert_eq!(locked.record, "{\"x\":1}");
    assert_eq!(tx.queue_ids().await.unwrap(), [row.id]);
    assert!(tx.queue_delete(row.id).await.unwrap());
    assert!(!tx.queue_delete(row.id).await.unwrap());
    assert_eq!(tx.queue_body(row.id).await.unwrap(), None);
    assert_eq!(tx.queue_row(row.id).await.unwrap(), None);
    tx.commit().await.unwrap();
}
