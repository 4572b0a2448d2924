//! The binary's command line: schema, help, migrate, healthcheck, shutdown, config errors.

use std::process::Command;

use clap::CommandFactory as _;
use gitstore_api::config::Cli;

use crate::support::BinaryApp;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_gitstore-api"))
}

#[test]
fn clap_definition_is_consistent() {
    Cli::command().debug_assert();
}

#[test]
fn schema_graphql_is_in_sync_with_the_code() {
    let generated = gitstore_api::graphql::sdl();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql");
    let checked_in = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        generated == checked_in,
        "schema.graphql is out of date; regenerate it with `cargo run -- schema > schema.graphql` and review the diff"
    );
    let out = bin().arg("schema").output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap(), generated);
}

#[test]
fn schema_keeps_the_go_surface() {
    let sdl = gitstore_api::graphql::sdl();
    for needle in [
        "node(id: ID!): Node",
        "nodes(ids: [ID!]!): [Node]!",
        "product(sku: String!): Product",
        "productById(id: ID!): Product",
        "products(first: Int, after: String, last: Int, before: String, filter: ProductFilter): ProductConnection!",
        "categories: [Category!]!",
        "collections: [Collection!]!",
        "catalogVersion: CatalogVersion!",
        "updateProduct(input: UpdateProductInput!): UpdateProductPayload!",
        "publishCatalog(input: PublishCatalogInput!): PublishCatalogPayload!",
        "login(input: LoginInput!): LoginPayload!",
        "logout(input: LogoutInput): LogoutPayload!",
        "refreshToken(input: RefreshTokenInput): RefreshTokenPayload!",
        "input LogoutInput {\n\t\"\"\"\n\tEchoed in the payload.\n\t\"\"\"\n\tclientMutationId: String\n}",
        "input RefreshTokenInput {\n\t\"\"\"\n\tEchoed in the payload.\n\t\"\"\"\n\tclientMutationId: String\n}",
        "scalar Decimal",
        "scalar DateTime",
        "scalar JSON",
        "interface Node",
        "enum InventoryStatus",
    ] {
        assert!(sdl.contains(needle), "SDL lacks `{needle}`");
    }
    // The session payloads of the Go SDL, field by field (descriptions aside).
    for (ty, fields) in [
        (
            "type LogoutPayload {",
            &["clientMutationId: String", "success: Boolean!"][..],
        ),
        (
            "type RefreshTokenPayload {",
            &["clientMutationId: String", "session: AuthSession"][..],
        ),
        (
            "type AuthSession {",
            &["token: String!", "expiresAt: DateTime!", "user: User!"][..],
        ),
        (
            "type User {",
            &["username: String!", "isAdmin: Boolean!"][..],
        ),
    ] {
        let start = sdl.find(ty).unwrap_or_else(|| panic!("SDL lacks `{ty}`"));
        let body = &sdl[start..=start + sdl[start..].find("\n}").unwrap()];
        for field in fields {
            assert!(
                body.contains(&format!("\t{field}\n")),
                "`{ty}` lacks `{field}`"
            );
        }
    }
}

#[test]
fn help_documents_every_environment_variable() {
    let out = bin().arg("--help").output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    let names = gitstore_api::config::env_var_names();
    assert!(names.len() >= 20, "{names:?}");
    for name in names {
        assert!(help.contains(&name), "--help does not mention {name}");
    }
}

#[test]
fn secrets_never_show_in_debug_output_or_help() {
    use clap::Parser as _;
    let cli = Cli::parse_from(["gitstore-api", "--scylla-password", "hunter2"]);
    assert_eq!(
        cli.config
            .datastore
            .scylla_password
            .as_ref()
            .map(|p| p.expose()),
        Some("hunter2")
    );
    assert!(!format!("{cli:?}").contains("hunter2"));
    let out = bin()
        .arg("--help")
        .env("GITSTORE_DATASTORE_SCYLLA_PASSWORD", "hunter2")
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&out.stdout).contains("hunter2"));
}

#[test]
fn migrate_on_memdb_says_there_is_nothing_to_do() {
    let out = bin()
        .arg("migrate")
        .env("GITSTORE_DATASTORE_BACKEND", "memory")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("nothing to migrate"));
}

#[test]
fn bad_configuration_fails_with_one_clear_line() {
    let out = bin()
        .env("GITSTORE_DATASTORE_BACKEND", "postgres")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("postgres") && err.contains("memdb"), "{err}");
    let out = bin()
        .env("GITSTORE_API_PORT", "not-a-port")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not-a-port"));
}

#[tokio::test]
async fn healthcheck_and_graceful_shutdown() {
    let mut app = BinaryApp::start(&[]).await.expect("binary starts");
    let port = app.base.rsplit(':').next().unwrap().to_owned();
    let ok = bin()
        .arg("healthcheck")
        .env("GITSTORE_API_PORT", &port)
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let status = app.terminate().expect("exits after SIGTERM");
    assert!(status.success(), "clean exit on SIGTERM: {status}");
    let down = bin()
        .arg("healthcheck")
        .env("GITSTORE_API_PORT", &port)
        .output()
        .unwrap();
    assert!(!down.status.success());
}

/// Runs the binary in `dir` with only `envs` in its environment; returns (success, stderr).
fn run_in(dir: &std::path::Path, args: &[&str], envs: &[(&str, &str)]) -> (bool, String) {
    let out = bin()
        .args(args)
        .current_dir(dir)
        .env_clear()
        .envs(envs.iter().copied())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The port `healthcheck` tried (nothing listens on these low ports), from its error.
fn port_tried(dir: &std::path::Path, args: &[&str], envs: &[(&str, &str)]) -> String {
    let mut all = vec!["healthcheck"];
    all.extend_from_slice(args);
    let (ok, err) = run_in(dir, &all, envs);
    assert!(!ok, "nothing listens there: {err}");
    let at = err.find("127.0.0.1:").unwrap_or_else(|| panic!("{err}"));
    err[at + "127.0.0.1:".len()..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect()
}

#[test]
fn config_dotenv_is_read_and_the_environment_and_flags_beat_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(".env"), "GITSTORE_API_PORT=11\n").unwrap();
    assert_eq!(port_tried(dir.path(), &[], &[]), "11");
    let env = [("GITSTORE_API_PORT", "12")];
    assert_eq!(port_tried(dir.path(), &[], &env), "12");
    assert_eq!(port_tried(dir.path(), &["--port", "13"], &env), "13");
}

#[test]
fn config_toml_is_read_below_dotenv_and_may_be_named() {
    let dir = tempfile::tempdir().unwrap();
    let toml = "[api]\nport = 14\ncors_origins = [\"https://a.example\", \"https://b.example\"]\n";
    std::fs::write(dir.path().join("config.toml"), toml).unwrap();
    assert_eq!(port_tried(dir.path(), &[], &[]), "14");
    std::fs::write(dir.path().join("other.toml"), "GITSTORE_API_PORT = 15\n").unwrap();
    assert_eq!(
        port_tried(dir.path(), &["--config", "other.toml"], &[]),
        "15"
    );
    assert_eq!(
        port_tried(dir.path(), &["--config-file=other.toml"], &[]),
        "15"
    );
    let named = [("GITSTORE_CONFIG", "other.toml")];
    assert_eq!(port_tried(dir.path(), &[], &named), "15");
    std::fs::write(dir.path().join(".env"), "GITSTORE_API_PORT=11\n").unwrap();
    assert_eq!(
        port_tried(dir.path(), &[], &[]),
        "11",
        ".env beats config.toml"
    );
    let (ok, err) = run_in(dir.path(), &["--config", "missing.toml", "schema"], &[]);
    assert!(!ok && err.contains("missing.toml"), "{err}");
}

#[test]
fn config_unknown_toml_keys_and_malformed_dotenv_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.toml"), "[api]\nprot = 4000\n").unwrap();
    let (ok, err) = run_in(dir.path(), &["migrate"], &[]);
    assert!(!ok, "a typo must not be silent");
    assert!(
        err.contains("config.toml") && err.contains("api.prot"),
        "{err}"
    );
    std::fs::remove_file(dir.path().join("config.toml")).unwrap();
    std::fs::write(dir.path().join(".env"), "A=1\nnot a pair\n").unwrap();
    let (ok, err) = run_in(dir.path(), &["migrate"], &[]);
    assert!(!ok);
    assert!(err.contains(".env line 2"), "{err}");
}

#[test]
fn config_files_read_are_logged_and_unread_settings_warned_once() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, err) = run_in(dir.path(), &["migrate"], &[]);
    assert!(ok, "{err}");
    assert!(
        !err.contains("configuration files read"),
        "quiet without files: {err}"
    );
    assert!(!err.contains("WARN"), "{err}");
    std::fs::write(dir.path().join(".env"), "GITSTORE_GIT_WS=ws://git:8080\n").unwrap();
    std::fs::write(dir.path().join("config.toml"), "[cache]\nttl = 300\n").unwrap();
    let env = [("GITSTORE_FOO", "1"), ("GITSTORE_LOG__LEVEL", "info")];
    let (ok, err) = run_in(dir.path(), &["migrate"], &env);
    assert!(ok, "Go settings are ignored, not refused: {err}");
    assert!(
        err.contains("configuration files read: .env, config.toml"),
        "{err}"
    );
    let warnings: Vec<&str> = err.lines().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warnings.len(), 1, "{err}");
    for needle in [
        "GITSTORE_FOO",
        "GITSTORE_GIT_WS",
        "GITSTORE_CACHE_TTL",
        "use GITSTORE_LOG_LEVEL",
        "no effect",
    ] {
        assert!(warnings[0].contains(needle), "{needle}: {err}");
    }
}
