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
