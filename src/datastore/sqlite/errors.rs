//! Turning sqlx errors (and the conditions SQLite reports obscurely) into datastore
//! errors that say what was attempted.

use std::path::Path;

use sqlx::error::ErrorKind;

use crate::datastore::{Error, Result};

/// Checks what SQLite would report obscurely (or, as root, not at all) before opening.
pub(super) fn preflight(path: &str) -> Result<()> {
    let fail = |reason: String, source: std::io::Error| {
        Error::unavailable(format!("sqlite database {path:?}: {reason}"), source)
    };
    if path.is_empty() {
        return Err(fail(
            "the path is empty".to_owned(),
            std::io::Error::from(std::io::ErrorKind::InvalidInput),
        ));
    }
    let file = Path::new(path);
    let dir = match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(fail(
                format!("{:?} is not a directory", dir.display().to_string()),
                std::io::Error::from(std::io::ErrorKind::NotADirectory),
            ));
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Err(fail(
                format!("directory {:?} does not exist", dir.display().to_string()),
                err,
            ));
        }
        Err(err) => {
            return Err(fail(
                format!(
                    "cannot inspect directory {:?}: {err}",
                    dir.display().to_string()
                ),
                err,
            ));
        }
    }
    match std::fs::metadata(file) {
        Ok(meta) if meta.is_dir() => Err(fail(
            "it is a directory".to_owned(),
            std::io::Error::from(std::io::ErrorKind::IsADirectory),
        )),
        // The permission bits are checked rather than trying to open for writing, because
        // root may write anyway and the operator's intent is what counts.
        Ok(meta) if meta.permissions().readonly() => Err(fail(
            "the file is read-only".to_owned(),
            std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        )),
        Ok(_) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(fail(format!("cannot inspect the file: {err}"), err)),
    }
}

/// Turns a failure to open or configure the database into a one-line startup error.
pub(super) fn open_error(path: &str, err: sqlx::Error) -> Error {
    let reason = match err.as_database_error() {
        // SQLITE_NOTADB: the file exists but holds something else.
        Some(db) if db.code().as_deref() == Some("26") => {
            "the file is not a SQLite database".to_owned()
        }
        Some(db) => db.message().to_owned(),
        None => err.to_string(),
    };
    Error::unavailable(format!("sqlite database {path:?}: {reason}"), err)
}

/// Wraps a driver error as [`Error::Unavailable`] saying what was attempted.
///
/// A value the driver could not decode from a stored row is [`Error::Internal`] instead:
/// the database answered, and that row is what is wrong.
pub(super) fn unavailable(what: &str, err: sqlx::Error) -> Error {
    match err {
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => {
            Error::internal(what.to_owned(), err)
        }
        err => Error::unavailable(what.to_owned(), err),
    }
}

/// The `table.column` a unique-constraint violation names, if `err` is one.
pub(super) fn unique_violation(err: &sqlx::Error) -> Option<&str> {
    let db = err.as_database_error()?;
    if db.kind() != ErrorKind::UniqueViolation {
        return None;
    }
    // SQLite does not report constraint names, only the columns: `UNIQUE constraint
    // failed: products.sku`.
    db.message().strip_prefix("UNIQUE constraint failed: ")
}

/// Maps a failed insert or update of a row with a unique id and a unique `field`.
pub(super) fn write_error(
    err: sqlx::Error,
    table: &str,
    entity: &'static str,
    id: &str,
    field: &'static str,
    value: &str,
    what: &str,
) -> Error {
    match unique_violation(&err) {
        Some(column) if column == format!("{table}.{field}") => {
            Error::already_exists(entity, field, value)
        }
        Some(column) if column == format!("{table}.id") => Error::already_exists(entity, "id", id),
        _ => unavailable(what, err),
    }
}

#[cfg(test)]
mod tests {
    use super::unavailable;
    use crate::datastore::Error;

    #[test]
    fn an_undecodable_column_is_internal_not_unavailable() {
        let err = sqlx::Error::ColumnDecode {
            index: "\"created_at\"".to_owned(),
            source: "not an integer".into(),
        };
        match unavailable("reading product \"P1\"", err) {
            Error::Internal { message, .. } => assert_eq!(message, "reading product \"P1\""),
            other => panic!("expected Internal, got {other:?}"),
        }
        assert!(matches!(
            unavailable("listing products", sqlx::Error::PoolTimedOut),
            Error::Unavailable { .. }
        ));
    }
}
