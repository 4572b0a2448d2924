//! The server's CORS against tower-http's `CorsLayer` configured as the Go service answers
//! (the layer the server used before it answered CORS itself): the same headers for
//! every method, origin and route, and `204` where that layer's preflight was `200`.

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Method, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use gitstore_api::config::Config;
use tower::ServiceExt as _;
use tower_http::cors::{AllowOrigin, Any, CorsLayer};

/// The CORS headers compared.
const CORS_HEADERS: [header::HeaderName; 5] = [
    header::ACCESS_CONTROL_ALLOW_ORIGIN,
    header::ACCESS_CONTROL_ALLOW_METHODS,
    header::ACCESS_CONTROL_ALLOW_HEADERS,
    header::ACCESS_CONTROL_MAX_AGE,
    header::ACCESS_CONTROL_EXPOSE_HEADERS,
];

fn routes() -> Router {
    Router::new()
        .route("/plain", get(|| async { "ok" }).post(|| async { "posted" }))
        // A handler's own CORS header is replaced, as the layer's `extend` replaced it.
        .route(
            "/own",
            get(|| async {
                (
                    [(header::ACCESS_CONTROL_ALLOW_ORIGIN, "https://own.example")],
                    "own",
                )
                    .into_response()
            }),
        )
}

/// The layer as the server configured it for `origins`.
fn oracle(origins: &[String]) -> CorsLayer {
    let allow = if origins.iter().any(|o| o.trim() == "*") {
        AllowOrigin::from(Any)
    } else {
        AllowOrigin::list(
            origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o.trim()).ok()),
        )
    };
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers([
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            header::HeaderName::from_static("x-request-id"),
        ])
        .expose_headers([header::HeaderName::from_static("x-request-id")])
        .max_age(std::time::Duration::from_secs(3600))
        .vary([])
}

fn cors_headers(response: &Response) -> Vec<(String, Vec<String>)> {
    CORS_HEADERS
        .iter()
        .map(|name| {
            let values = response
                .headers()
                .get_all(name)
                .iter()
                .map(|v| v.to_str().unwrap().to_owned())
                .collect();
            (name.to_string(), values)
        })
        .collect()
}

#[tokio::test]
async fn cors_answers_as_the_layer_it_replaced() {
    let listed = vec![
        "https://shop.example".to_owned(),
        " https://admin.example ".to_owned(),
    ];
    let any = vec!["https://shop.example".to_owned(), "*".to_owned()];
    let mut compared = 0;
    for origins in [any, listed] {
        let mut config = Config::defaults().http;
        config.cors_origins.clone_from(&origins);
        let ours = gitstore_api::http::with_middleware(routes(), &config);
        let theirs = routes().layer(oracle(&origins));
        for method in ["GET", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"] {
            for path in ["/plain", "/own", "/missing"] {
                for origin in [
                    None,
                    Some("https://shop.example"),
                    Some("https://admin.example"),
                    Some("https://evil.example"),
                ] {
                    for asks in [false, true] {
                        let request = || {
                            let mut request = Request::builder()
                                .method(method)
                                .uri(path)
                                .body(Body::empty())
                                .unwrap();
                            if let Some(origin) = origin {
                                request
                                    .headers_mut()
                                    .insert(header::ORIGIN, HeaderValue::from_static(origin));
                            }
                            if asks {
                                request.headers_mut().insert(
                                    header::ACCESS_CONTROL_REQUEST_METHOD,
                                    HeaderValue::from_static("POST"),
                                );
                            }
                            request
                        };
                        let what = format!("{method} {path} from {origin:?} ({origins:?})");
                        let mine = ours.clone().oneshot(request()).await.unwrap();
                        let expected = theirs.clone().oneshot(request()).await.unwrap();
                        assert_eq!(cors_headers(&mine), cors_headers(&expected), "{what}");
                        let status = if expected.status() == StatusCode::OK && method == "OPTIONS" {
                            StatusCode::NO_CONTENT
                        } else {
                            expected.status()
                        };
                        assert_eq!(mine.status(), status, "{what}");
                        compared += 1;
                    }
                }
            }
        }
    }
    assert_eq!(compared, 2 * 6 * 3 * 4 * 2);
}
