//! Migrations that change data already stored, run on databases that hold some: on SQLite
//! always, on PostgreSQL when `ZAPHOOK_TEST_DATABASE_URL` is set.

mod common;

use common::backend::{Backend, TestDb};
use zaphook::store::{self, NewContact, StoreError};

/// The migration that gives Brazil's eight-digit mobile numbers their ninth digit, by backend.
fn ninth_digit_migration(backend: Backend) -> i64 {
    match backend {
        Backend::Sqlite => 5,
        Backend::Postgres => 2,
    }
}

async fn brazilian_mobiles_stored_without_the_ninth_digit_get_it(db: TestDb) {
    let numbers = [
        "551187654321",  // an old mobile: becomes 5511987654321
        "552187654321",  // an old mobile whose nine-digit form is a contact too: kept
        "5521987654321", // that other contact
        "551133334444",  // a landline: kept
        "16505551234",   // not Brazil: kept
    ];
    let store = db.open();
    let company = store::write(&store, move |tx| {
        let company = tx.insert_company("C", 0)?;
        for number in numbers {
            let contact = NewContact {
                number: Some(number),
                bsuid: None,
                username: None,
                name: number,
                pushname: None,
                email: None,
                is_group: false,
            };
            tx.insert_contact(company, &contact, 0)?;
        }
        Ok::<_, StoreError>(company)
    })
    .await
    .unwrap();
    store.close();
    drop(store);
    // As a database written before the migration: run it again on these rows.
    let version = ninth_digit_migration(db.backend);
    db.sql(&format!(
        "DELETE FROM schema_migrations WHERE version = {version}"
    ));
    let store = db.open();
    let stored: Vec<String> = store::read(&store, move |tx| {
        let contacts = tx.contacts(company, None)?;
        Ok::<_, StoreError>(contacts.into_iter().filter_map(|c| c.number).collect())
    })
    .await
    .unwrap();
    let mut stored = stored;
    stored.sort();
    assert_eq!(
        stored,
        [
            "16505551234",
            "551133334444",
            "5511987654321",
            "552187654321",
            "5521987654321"
        ]
    );
}

#[tokio::test]
async fn brazilian_mobiles_get_the_ninth_digit_on_sqlite() {
    brazilian_mobiles_stored_without_the_ninth_digit_get_it(TestDb::sqlite()).await;
}

#[tokio::test]
async fn brazilian_mobiles_get_the_ninth_digit_on_postgres() {
    if let Some(db) = TestDb::postgres() {
        brazilian_mobiles_stored_without_the_ninth_digit_get_it(db).await;
    }
}
