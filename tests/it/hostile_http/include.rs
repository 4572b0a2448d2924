//! The `__typename @include(if: "yes")` hole: a non-boolean directive argument is an
//! error, whatever the field.

use serde_json::{Value, json};

use crate::support::spawn_app;

#[tokio::test]
async fn include_with_a_non_boolean_is_an_error() {
    let app = spawn_app().await;
    let r = app
        .gql("{ __typename @include(if: \"yes\") }", json!({}))
        .await;
    assert_eq!(
        r["errors"][0]["extensions"]["code"], "INVALID_ARGUMENT",
        "{r}"
    );
    assert!(
        r["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("expected type \"Boolean!\""),
        "{r}"
    );
    assert!(r.get("data").is_none_or(Value::is_null), "{r}");
    // The same through a variable of the wrong type, and through GET.
    let r = app
        .gql(
            "query($v: String) { __typename @skip(if: $v) }",
            json!({ "v": "yes" }),
        )
        .await;
    assert_eq!(
        r["errors"][0]["extensions"]["code"], "INVALID_ARGUMENT",
        "{r}"
    );
    let r: Value = app
        .client
        .get(app.url("/graphql"))
        .query(&[("query", "{ __typename @include(if: \"yes\") }")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        r["errors"][0]["extensions"]["code"], "INVALID_ARGUMENT",
        "{r}"
    );
    // Well-formed directives still work, and other fields were never affected. (The
    // variable is also used on `categories`: async-graphql's validator, which skips
    // `__typename`, would otherwise call it unused.)
    let r = app
        .gql(
            "query($v: Boolean!) { a: __typename @include(if: true) b: __typename @skip(if: $v) categories @skip(if: $v) { slug } }",
            json!({ "v": true }),
        )
        .await;
    assert_eq!(r, json!({ "data": { "a": "Query" } }));
    let r = app
        .gql("{ categories @include(if: \"yes\") { slug } }", json!({}))
        .await;
    assert_eq!(
        r["errors"][0]["extensions"]["code"], "INVALID_ARGUMENT",
        "{r}"
    );
}
