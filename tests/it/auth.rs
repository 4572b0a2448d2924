//! Authentication over HTTP: login (GraphQL and `POST /api/login`), the mutation gate,
//! every kind of bad token, refresh and logout, revocations shared by two instances on
//! one SQLite file, failed-login rate limits, and the settings' validation.

use base64::Engine as _;
use gitstore_api::app::App;
use gitstore_api::config::{Config, Secret};
use gitstore_api::datastore::{AnyDatastore, MemdbStore, SqliteStore};
use serde_json::{Value, json};

use crate::support::{TestApp, spawn_with};

const SECRET: &str = "test-secret-that-is-at-least-32-bytes-long";
const PASSWORD: &str = "correct horse battery staple";

/// Defaults with authentication on for `admin` / [`PASSWORD`] (bcrypt cost 4: fast).
fn auth_config() -> Config {
    let mut config = Config::defaults();
    config.auth.admin_username = Some("admin".to_owned());
    config.auth.admin_password_hash = Some(Secret::from(bcrypt::hash(PASSWORD, 4).unwrap()));
    config.auth.jwt_secret = Some(Secret::from(SECRET.to_owned()));
    config
}

async fn spawn_auth() -> TestApp {
    spawn_with(auth_config(), AnyDatastore::Memdb(MemdbStore::new())).await
}

async fn gql(app: &TestApp, query: &str, variables: Value, token: Option<&str>) -> Value {
    let mut request = app
        .client
        .post(app.url("/graphql"))
        .json(&json!({ "query": query, "variables": variables }));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap().json().await.unwrap()
}

const LOGIN: &str = "mutation($u: String!, $p: String!) { login(input: { username: $u, password: $p }) \
    { session { token expiresAt user { username isAdmin } } } }";
const CREATE: &str = "mutation($slug: String!) { createCategory(input: { name: \"N\", slug: $slug }) \
    { category { slug } } }";
const LIST: &str = "{ categories { slug } }";

async fn login(app: &TestApp) -> String {
    let r = gql(app, LOGIN, json!({ "u": "admin", "p": PASSWORD }), None).await;
    let session = &r["data"]["login"]["session"];
    assert_eq!(
        session["user"],
        json!({ "username": "admin", "isAdmin": true }),
        "{r:#}"
    );
    session["token"].as_str().expect("a token").to_owned()
}

/// The one error of a response: its code and message.
fn error(r: &Value) -> (String, String) {
    let err = &r["errors"][0];
    (
        err["extensions"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        err["message"].as_str().unwrap_or_default().to_owned(),
    )
}

fn assert_unauthenticated(r: &Value, needle: &str) {
    let (code, message) = error(r);
    assert_eq!(code, "UNAUTHENTICATED", "{r:#}");
    assert!(
        message.contains(needle),
        "{message:?} should say {needle:?}"
    );
    assert!(!message.contains(SECRET), "{message}");
    assert!(r["data"].is_null(), "nothing ran: {r:#}");
}

#[tokio::test]
async fn login_over_graphql_and_api_login() {
    let app = spawn_auth().await;
    let token = login(&app).await;
    assert_eq!(token.split('.').count(), 3);

    let ok = app
        .client
        .post(app.url("/api/login"))
        .basic_auth("admin", Some(PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let body: Value = ok.json().await.unwrap();
    assert_eq!(body["username"], "admin");
    assert_eq!(body["isAdmin"], true);
    assert!(
        body["token"]
            .as_str()
            .is_some_and(|t| t.split('.').count() == 3)
    );
    assert!(body["expiresAt"].as_str().is_some_and(|t| t.ends_with('Z')));

    let wrong = app
        .client
        .post(app.url("/api/login"))
        .basic_auth("admin", Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let body: Value = wrong.json().await.unwrap();
    assert_eq!(body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED");
    let none = app.client.post(app.url("/api/login")).send().await.unwrap();
    assert_eq!(none.status(), 401);

    let r = gql(&app, LOGIN, json!({ "u": "admin", "p": "nope" }), None).await;
    let (code, message) = error(&r);
    assert_eq!(
        (code.as_str(), message.as_str()),
        ("UNAUTHENTICATED", "invalid username or password")
    );

    let ready: Value = app
        .client
        .get(app.url("/ready"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["auth"], "enabled");
}

#[tokio::test]
async fn mutations_need_a_token_and_queries_do_not() {
    let app = spawn_auth().await;
    let r = gql(&app, CREATE, json!({ "slug": "shoes" }), None).await;
    assert_unauthenticated(&r, "Authorization: Bearer");
    let r = gql(&app, LIST, json!({}), None).await;
    assert_eq!(
        r["data"]["categories"],
        json!([]),
        "nothing was written: {r:#}"
    );

    let token = login(&app).await;
    let r = gql(&app, CREATE, json!({ "slug": "shoes" }), Some(&token)).await;
    assert_eq!(
        r["data"]["createCategory"]["category"]["slug"], "shoes",
        "{r:#}"
    );

    // A batch is checked operation by operation: the query runs, the mutation does not.
    let batch: Value = app
        .client
        .post(app.url("/graphql"))
        .json(&json!([
            { "query": LIST },
            { "query": CREATE, "variables": { "slug": "hats" } },
        ]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(batch[0]["data"]["categories"], json!([{ "slug": "shoes" }]));
    assert_unauthenticated(&batch[1], "Authorization: Bearer");
    let r = gql(&app, LIST, json!({}), None).await;
    assert_eq!(r["data"]["categories"], json!([{ "slug": "shoes" }]));
}

fn signed(claims: &Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()).unwrap(),
    )
    .unwrap()
}

fn claims(exp_offset: i64, iss: &str) -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({ "sub": "admin", "iss": iss, "iat": now, "exp": now + exp_offset,
            "jti": ulid::Ulid::new().to_string(), "admin": true })
}

#[tokio::test]
async fn every_bad_token_is_refused_with_its_reason() {
    let app = spawn_auth().await;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let none = format!(
        "{}.{}.",
        b64.encode(br#"{"alg":"none","typ":"JWT"}"#),
        b64.encode(claims(3600, "gitstore").to_string())
    );
    let revoked = login(&app).await;
    let r = gql(
        &app,
        "mutation { logout { success } }",
        json!({}),
        Some(&revoked),
    )
    .await;
    assert_eq!(r["data"]["logout"]["success"], true, "{r:#}");
    let cases = [
        ("not.a-jwt", "malformed"),
        ("garbage", "malformed"),
        (&*signed(&claims(-3600, "gitstore"), SECRET), "expired"),
        (
            &*signed(
                &claims(3600, "gitstore"),
                "another-secret-of-at-least-32-bytes!!",
            ),
            "signature is invalid",
        ),
        (
            &*signed(&claims(3600, "someone-else"), SECRET),
            "wrong issuer",
        ),
        (&*none, "algorithm \"none\" is not accepted"),
        (&*revoked, "revoked"),
    ];
    for (token, reason) in cases {
        let r = gql(&app, CREATE, json!({ "slug": "x" }), Some(token)).await;
        assert_unauthenticated(&r, reason);
    }
    // A scheme other than Bearer.
    let r: Value = app
        .client
        .post(app.url("/graphql"))
        .basic_auth("admin", Some(PASSWORD))
        .json(&json!({ "query": CREATE, "variables": { "slug": "x" } }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_unauthenticated(&r, "must be Bearer");
    let r = gql(&app, LIST, json!({}), None).await;
    assert_eq!(r["data"]["categories"], json!([]), "nothing was written");
}

#[tokio::test]
async fn refresh_revokes_the_old_token_and_logout_ends_the_session() {
    let app = spawn_auth().await;
    let old = login(&app).await;
    let r = gql(
        &app,
        "mutation($input: RefreshTokenInput!) { refreshToken(input: $input) { clientMutationId session { token user { username } } } }",
        json!({ "input": { "clientMutationId": "r1" } }),
        Some(&old),
    )
    .await;
    assert_eq!(r["data"]["refreshToken"]["clientMutationId"], "r1", "{r:#}");
    let new = r["data"]["refreshToken"]["session"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(new, old);
    assert_unauthenticated(
        &gql(&app, CREATE, json!({ "slug": "a" }), Some(&old)).await,
        "revoked",
    );
    let r = gql(&app, CREATE, json!({ "slug": "a" }), Some(&new)).await;
    assert!(r["errors"].is_null(), "{r:#}");

    // Go clients send a required input.
    let r = gql(
        &app,
        "mutation($input: LogoutInput!) { logout(input: $input) { clientMutationId success } }",
        json!({ "input": { "clientMutationId": "bye" } }),
        Some(&new),
    )
    .await;
    assert_eq!(
        r["data"]["logout"],
        json!({ "clientMutationId": "bye", "success": true })
    );
    assert_unauthenticated(
        &gql(&app, CREATE, json!({ "slug": "b" }), Some(&new)).await,
        "revoked",
    );
    assert_unauthenticated(
        &gql(
            &app,
            "mutation { logout { success } }",
            json!({}),
            Some(&new),
        )
        .await,
        "revoked",
    );
}

#[tokio::test]
async fn two_instances_on_one_sqlite_file_share_revocations() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    let path = path.to_str().unwrap();
    let open = || async {
        AnyDatastore::Sqlite(
            SqliteStore::connect(path)
                .await
                .expect("open the shared file"),
        )
    };
    let a = spawn_with(auth_config(), open().await).await;
    let b = spawn_with(auth_config(), open().await).await;
    let token = login(&a).await;
    let r = gql(&b, CREATE, json!({ "slug": "from-b" }), Some(&token)).await;
    assert!(r["errors"].is_null(), "a token from A works on B: {r:#}");
    let r = gql(
        &a,
        "mutation { logout { success } }",
        json!({}),
        Some(&token),
    )
    .await;
    assert_eq!(r["data"]["logout"]["success"], true, "{r:#}");
    assert_unauthenticated(
        &gql(&b, CREATE, json!({ "slug": "again" }), Some(&token)).await,
        "revoked",
    );
}

#[tokio::test]
async fn failed_logins_are_rate_limited() {
    let app = spawn_auth().await;
    for _ in 0..5 {
        let r = gql(&app, LOGIN, json!({ "u": "admin", "p": "guess" }), None).await;
        assert_unauthenticated(&r, "invalid username or password");
    }
    // Even the right password is refused now.
    let r = gql(&app, LOGIN, json!({ "u": "admin", "p": PASSWORD }), None).await;
    assert_unauthenticated(&r, "too many attempts");
    let limited = app
        .client
        .post(app.url("/api/login"))
        .basic_auth("admin", Some(PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(limited.status(), 429);
    assert!(limited.headers().contains_key("retry-after"));
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("gitstore_auth_failed_logins_total"),
        "{metrics}"
    );
}

#[tokio::test]
async fn auth_off_keeps_mutations_open() {
    let app = crate::support::spawn_app().await;
    let ready: Value = app
        .client
        .get(app.url("/ready"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["auth"], "disabled");
    let r = gql(&app, CREATE, json!({ "slug": "open" }), None).await;
    assert!(r["errors"].is_null(), "{r:#}");
    let r = gql(&app, LOGIN, json!({ "u": "admin", "p": "x" }), None).await;
    assert_unauthenticated(&r, "authentication is not configured on this server");
    let r = app
        .client
        .post(app.url("/api/login"))
        .basic_auth("a", Some("b"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[test]
fn partial_or_weak_settings_are_refused() {
    let store = || AnyDatastore::Memdb(MemdbStore::new());
    let mut partial = Config::defaults();
    partial.auth.admin_username = Some("admin".to_owned());
    let err = App::with_store(partial, store())
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.contains("GITSTORE_AUTH_ADMIN_PASSWORD_HASH")
            && err.contains("GITSTORE_AUTH_JWT_SECRET"),
        "{err}"
    );
    assert!(!err.contains("GITSTORE_AUTH_ADMIN_USERNAME must"), "{err}");

    let mut short = auth_config();
    short.auth.jwt_secret = Some(Secret::from("too-short".to_owned()));
    let err = App::with_store(short, store())
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("at least 32"), "{err}");
    assert!(
        !err.contains("too-short"),
        "the secret is not echoed: {err}"
    );

    let mut not_bcrypt = auth_config();
    not_bcrypt.auth.admin_password_hash = Some(Secret::from("plaintext".to_owned()));
    let err = App::with_store(not_bcrypt, store())
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.contains("not a bcrypt hash") && !err.contains("plaintext"),
        "{err}"
    );

    assert!(App::with_store(auth_config(), store()).is_ok());
    assert!(Config::defaults().auth.settings().unwrap().is_none());
}

#[test]
fn secrets_never_show_in_debug_output() {
    let config = auth_config();
    let hash = config
        .auth
        .admin_password_hash
        .as_ref()
        .unwrap()
        .expose()
        .to_owned();
    let settings = config.auth.settings().unwrap().unwrap();
    for shown in [format!("{config:?}"), format!("{settings:?}")] {
        assert!(!shown.contains(SECRET), "{shown}");
        assert!(!shown.contains(&hash), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }
    let app = App::with_store(config, AnyDatastore::Memdb(MemdbStore::new())).unwrap();
    let auth = format!("{:?}", app.state().auth);
    assert!(!auth.contains(SECRET) && !auth.contains(&hash), "{auth}");
}
