//! Admin::grant (Python's Admin.grant): least privileges through the server functions.

mod common;

use common::TestDb;
use pgqrs::{ErrorKind, Grants};

#[tokio::test]
async fn grant_gives_a_role_its_functions_and_refuses_bad_requests() {
    let (db, admin) = TestDb::installed().await;
    let role = format!("{}_producer", db.schema);
    let raw = db.raw().await;
    raw.batch_execute(&format!("CREATE ROLE \"{role}\" NOLOGIN")).await.unwrap();

    let statements = admin.grant(&role, Grants { producer: true, ..Grants::default() }).await.unwrap();
    assert!(statements[0].starts_with("GRANT USAGE ON SCHEMA"), "{statements:?}");
    assert!(statements.iter().any(|s| s.contains("message_enqueue")), "{statements:?}");
    assert!(!statements.iter().any(|s| s.contains("message_dequeue")), "{statements:?}");
    let check = format!("SELECT has_schema_privilege($1, '{}', 'USAGE')", db.schema);
    let usage: bool = raw.query_one(&check, &[&role]).await.unwrap().get(0);
    assert!(usage);
    // Idempotent.
    assert_eq!(admin.grant(&role, Grants { producer: true, ..Grants::default() }).await.unwrap(), statements);

    let err = admin.grant(&role, Grants::default()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(err.to_string().contains("nothing to grant"), "{err}");
    let err = admin.grant("no such role", Grants { admin: true, ..Grants::default() }).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(err.to_string().contains("does not exist"), "{err}");
    let err = admin.grant(&"r".repeat(64), Grants { admin: true, ..Grants::default() }).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);

    raw.batch_execute(&format!("DROP OWNED BY \"{role}\"; DROP ROLE \"{role}\"")).await.unwrap();
    db.drop().await;
}
