//! The embedded migration files: their list, checksums and how their text splits into
//! statements.
//!
//! Files `migrations/scylla/NNNN_name.cql` are embedded in the binary ([`MIGRATIONS`]) and
//! split into statements on `;` (comments and quoted text are respected,
//! [`split_statements`]). `ALTER TABLE t ADD c type` has no portable `IF NOT EXISTS`, so
//! the runner recognises it ([`added_column`]) to skip it when the column exists.

use sha2::{Digest, Sha256};

/// One embedded migration file.
#[derive(Clone, Copy, Debug)]
pub struct Migration {
    /// The number the file name starts with; migrations apply in this order.
    pub version: i32,
    /// The file name, e.g. `0001_catalogue.cql`.
    pub file: &'static str,
    /// The file's content.
    pub cql: &'static str,
}

impl Migration {
    /// The path of the file in the repository, as error messages name it.
    #[must_use]
    pub fn path(&self) -> String {
        format!("migrations/scylla/{}", self.file)
    }

    /// SHA-256 of the file, hex encoded; recorded when the migration is applied.
    #[must_use]
    pub fn checksum(&self) -> String {
        hex::encode(Sha256::digest(self.cql.as_bytes()))
    }

    /// The file's statements, without comments, in order.
    #[must_use]
    pub fn statements(&self) -> Vec<String> {
        split_statements(self.cql)
    }
}

/// Every migration of the scylla backend, in version order. A test checks that this list
/// and the `migrations/scylla/` directory agree, so a new file cannot be forgotten here.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        file: "0001_catalogue.cql",
        cql: include_str!("../../../../migrations/scylla/0001_catalogue.cql"),
    },
    Migration {
        version: 2,
        file: "0002_integrity.cql",
        cql: include_str!("../../../../migrations/scylla/0002_integrity.cql"),
    },
    Migration {
        version: 3,
        file: "0003_revoked_tokens.cql",
        cql: include_str!("../../../../migrations/scylla/0003_revoked_tokens.cql"),
    },
    Migration {
        version: 4,
        file: "0004_change_log.cql",
        cql: include_str!("../../../../migrations/scylla/0004_change_log.cql"),
    },
    Migration {
        version: 5,
        file: "0005_change_stamp.cql",
        cql: include_str!("../../../../migrations/scylla/0005_change_stamp.cql"),
    },
    Migration {
        version: 6,
        file: "0006_change_tombstones.cql",
        cql: include_str!("../../../../migrations/scylla/0006_change_tombstones.cql"),
    },
];

/// `(table, column)` when `statement` is `ALTER TABLE <table> ADD <column> <type>`.
#[must_use]
pub fn added_column(statement: &str) -> Option<(String, String)> {
    let words: Vec<&str> = statement.split_whitespace().collect();
    match words.as_slice() {
        [alter, table_kw, table, add, column, _type, ..]
            if alter.eq_ignore_ascii_case("ALTER")
                && table_kw.eq_ignore_ascii_case("TABLE")
                && add.eq_ignore_ascii_case("ADD")
                && !column.starts_with('(')
                && !column.eq_ignore_ascii_case("IF") =>
        {
            Some((table.to_ascii_lowercase(), column.to_ascii_lowercase()))
        }
        _ => None,
    }
}

/// Splits CQL text into statements on `;`, dropping `--`, `//` and `/* */` comments and
/// respecting `'strings'`, `"identifiers"` and `$$pg-style$$` literals.
#[must_use]
pub fn split_statements(text: &str) -> Vec<String> {
    let mut statements = Vec::new();
    let mut current = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '-' if chars.peek() == Some(&'-') => skip_line(&mut chars),
            '/' if chars.peek() == Some(&'/') => skip_line(&mut chars),
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut prev = '\0';
                for c in chars.by_ref() {
                    if prev == '*' && c == '/' {
                        break;
                    }
                    prev = c;
                }
                current.push(' ');
            }
            '\'' | '"' => {
                current.push(c);
                // A doubled quote inside is an escaped quote: it closes and reopens.
                for inner in chars.by_ref() {
                    current.push(inner);
                    if inner == c {
                        break;
                    }
                }
            }
            '$' if chars.peek() == Some(&'$') => {
                chars.next();
                current.push_str("$$");
                let mut prev = '\0';
                for inner in chars.by_ref() {
                    current.push(inner);
                    if prev == '$' && inner == '$' {
                        break;
                    }
                    prev = inner;
                }
            }
            ';' => push_statement(&mut statements, &mut current),
            _ => current.push(c),
        }
    }
    push_statement(&mut statements, &mut current);
    statements
}

fn skip_line(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    for c in chars.by_ref() {
        if c == '\n' {
            break;
        }
    }
}

fn push_statement(statements: &mut Vec<String>, current: &mut String) {
    let statement = current.trim();
    if !statement.is_empty() {
        statements.push(statement.to_owned());
    }
    current.clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_on_semicolons_outside_comments_and_literals() {
        let text = "-- a comment; with a semicolon\n\
                    CREATE TABLE a (x int PRIMARY KEY) WITH comment = 'x;y';\n\
                    /* block; comment */ INSERT INTO \"we;ird\" (x) VALUES (1);\n\
                    // another; one\n\
                    SELECT $$a;b$$ FROM t  ;  ;\n\
                    UPDATE t SET s = 'it''s; fine' WHERE x = 1";
        assert_eq!(
            split_statements(text),
            vec![
                "CREATE TABLE a (x int PRIMARY KEY) WITH comment = 'x;y'",
                "INSERT INTO \"we;ird\" (x) VALUES (1)",
                "SELECT $$a;b$$ FROM t",
                "UPDATE t SET s = 'it''s; fine' WHERE x = 1",
            ]
        );
    }

    #[test]
    fn embedded_migrations_match_the_directory() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/scylla");
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|name| {
                std::path::Path::new(name)
                    .extension()
                    .is_some_and(|e| e == "cql")
            })
            .collect();
        files.sort();
        let embedded: Vec<&str> = MIGRATIONS.iter().map(|m| m.file).collect();
        assert_eq!(
            files,
            embedded,
            "MIGRATIONS must list every file of {}",
            dir.display()
        );
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.file[..4].parse::<i32>().unwrap(), m.version, "{}", m.file);
            assert_eq!(
                m.version,
                i32::try_from(i).unwrap() + 1,
                "versions are 1, 2, 3, …"
            );
            assert_eq!(std::fs::read_to_string(dir.join(m.file)).unwrap(), m.cql);
            assert!(!m.statements().is_empty(), "{} has statements", m.file);
        }
    }

    #[test]
    fn every_migration_statement_is_idempotent_ddl() {
        for m in MIGRATIONS {
            for s in m.statements() {
                let upper = s.to_uppercase();
                assert!(
                    (upper.starts_with("CREATE") && upper.contains("IF NOT EXISTS"))
                        || added_column(&s).is_some(),
                    "{}: a migration statement must be re-runnable: {s}",
                    m.file
                );
            }
        }
    }

    #[test]
    fn alter_add_is_recognised_for_the_runner_to_skip() {
        assert_eq!(
            added_column("ALTER TABLE categories ADD deleting text"),
            Some(("categories".to_owned(), "deleting".to_owned()))
        );
        assert_eq!(
            added_column("alter table Categories add Pending_Refs set<text>"),
            Some(("categories".to_owned(), "pending_refs".to_owned()))
        );
        assert_eq!(added_column("ALTER TABLE t ADD (a int, b int)"), None);
        assert_eq!(added_column("ALTER TABLE t ADD IF NOT EXISTS a int"), None);
        assert_eq!(
            added_column("CREATE TABLE IF NOT EXISTS t (a int PRIMARY KEY)"),
            None
        );
    }
}
