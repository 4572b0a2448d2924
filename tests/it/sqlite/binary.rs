//! The real binary on a SQLite file: startup on bad paths fails clearly, and `migrate`
//! applies once while an edited migration stops startup.

use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use sqlx::{Connection as _, SqliteConnection};

const BIN: &str = env!("CARGO_BIN_EXE_gitstore-api");

/// `gitstore-api` with the sqlite backend on `db`, isolated from the caller's
/// `GITSTORE_*` settings that would change what is tested.
pub(super) fn command(db: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env("GITSTORE_DATASTORE_BACKEND", "sqlite")
        .env("GITSTORE_DATASTORE_SQLITE_PATH", db)
        .env("GITSTORE_API_HOST", "127.0.0.1")
        .env_remove("GITSTORE_AUTH_JWT_SECRET")
        .env_remove("GITSTORE_AUTH_ADMIN_USERNAME")
        .env_remove("GITSTORE_AUTH_ADMIN_PASSWORD_HASH")
        .env_remove("GITSTORE_LOG_LEVEL")
        .env_remove("GITSTORE_LOG_FORMAT")
        .stdin(Stdio::null());
    cmd
}

/// Runs `cmd` to completion (at most 60 s) and returns its status and stderr.
fn finish(mut cmd: Command) -> (ExitStatus, String) {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start gitstore-api");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("poll gitstore-api").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("gitstore-api did not exit within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child
        .wait_with_output()
        .expect("collect gitstore-api output");
    (
        output.status,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Asserts that starting the server on `db` fails at once with exactly one stderr line
/// naming the file and containing `reason`.
fn assert_startup_fails(db: &Path, reason: &str) {
    let mut cmd = command(db);
    cmd.arg("serve").env("GITSTORE_API_PORT", "0");
    let (status, stderr) = finish(cmd);
    assert!(!status.success(), "startup must fail; stderr: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line on stderr, got: {stderr}");
    assert!(
        lines[0].contains(&format!("{:?}", db.display().to_string())) && lines[0].contains(reason),
        "the line names the file and says {reason:?}: {stderr}"
    );
}

#[test]
fn startup_fails_clearly_when_the_directory_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    assert_startup_fails(
        &dir.path().join("missing").join("gitstore.db"),
        "does not exist",
    );
}

#[test]
fn startup_fails_clearly_when_the_file_is_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("gitstore.db");
    std::fs::write(&db, b"").unwrap();
    let mut permissions = std::fs::metadata(&db).unwrap().permissions();
    permissions.set_readonly(true);
    std::fs::set_permissions(&db, permissions).unwrap();
    assert_startup_fails(&db, "read-only");
}

#[test]
fn startup_fails_clearly_when_the_file_is_not_a_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("gitstore.db");
    std::fs::write(&db, "these are notes, not a database\n".repeat(64)).unwrap();
    assert_startup_fails(&db, "not a SQLite database");
}

#[tokio::test]
async fn migrate_applies_once_and_an_edited_migration_stops_startup() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("gitstore.db");
    for _ in 0..2 {
        let mut cmd = command(&db);
        cmd.arg("migrate");
        let (status, stderr) = finish(cmd);
        assert!(
            status.success(),
            "migrate succeeds, also when up to date: {stderr}"
        );
    }

    // Pretend the applied migration's file was edited since: its checksum differs.
    let url = format!("sqlite://{}", db.display());
    let mut conn = SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("UPDATE _sqlx_migrations SET checksum = X'00' WHERE version = 1")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();

    let expected = "migration 1 was previously applied but has been modified";
    let mut cmd = command(&db);
    cmd.arg("migrate");
    let (status, stderr) = finish(cmd);
    assert!(!status.success(), "migrate must fail: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains(expected), "{stderr}");

    let mut cmd = command(&db);
    cmd.arg("serve").env("GITSTORE_API_PORT", "0");
    let (status, stderr) = finish(cmd);
    assert!(!status.success(), "serve must stop: {stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.contains(expected), "the last line says why: {stderr}");
}
