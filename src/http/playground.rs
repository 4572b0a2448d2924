//! GraphiQL at `GET /playground`, with its browser files served by the binary itself.
//!
//! `build.rs` embeds the versions pinned in `assets/graphiql/package.json` (installed by
//! `npm ci --prefix assets/graphiql`, or by the build script itself when npm is available), so
//! the release binary and the container image need no internet access to show the playground. A
//! build on a machine without Node.js falls back to a CDN pinned to the same versions
//! ([`serves_offline`] tells which one this binary is), and the page says what to do when the
//! CDN cannot be reached instead of loading forever.
//!
//! Subscriptions work in the playground: an operation that is a subscription goes over a
//! WebSocket to `/graphql` through the pinned `graphql-ws` client (the
//! `graphql-transport-ws` protocol), everything else over HTTP as before.
//!
//! The asset file names carry the package version, so they are served as `immutable`: upgrading a
//! package changes the URL instead of relying on caches to expire.

use std::sync::LazyLock;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

/// Where the embedded files are served; the page links them from here.
const ASSETS_PATH: &str = "/playground/assets";

/// A browser file the page loads: from [`ASSETS_PATH`] when embedded, from a CDN otherwise.
struct Asset {
    file_name: &'static str,
    cdn_url: &'static str,
}

/// A file compiled into the binary by `build.rs`.
struct EmbeddedFile {
    file_name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

mod generated {
    use super::{Asset, EmbeddedFile};

    include!(concat!(env!("OUT_DIR"), "/graphiql_assets.rs"));
}

/// The query shown when the editor opens for the first time (GraphiQL remembers edits afterwards).
const DEFAULT_QUERY: &str = r#"# Welcome to the gitstore-api playground.
#
# Ctrl-Enter (Cmd-Enter) runs the query; the Docs button lists the whole schema.
# When authentication is on, add {"Authorization": "Bearer <token>"} under Headers
# before running mutations.
#
# Subscriptions run here too: try
#   subscription { catalogChanged { position kind entity id } }
# then run a mutation in another tab (+) and come back to see its changes.

{
  products(first: 5) {
    totalCount
    edges {
      node {
        sku
        title
        price
      }
    }
  }
}
"#;

const PAGE_TEMPLATE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>gitstore-api · GraphiQL</title>
<link rel="stylesheet" href="%GRAPHIQL_CSS%">
<style>html, body, #graphiql { height: 100%; margin: 0; }</style>
</head>
<body>
<div id="graphiql">Loading GraphiQL…</div>
<script>
  // Scripts that cannot load (no route to the CDN) may hang for minutes before failing;
  // say what to do instead of "Loading…" forever.
  window.gitstoreLoadFailure = function () {
    if (window.GraphiQL) { return; }
    var box = document.getElementById("graphiql");
    box.style.cssText = "font: 16px/1.5 sans-serif; max-width: 46em; margin: 3em auto; padding: 0 1em";
    box.innerHTML = %LOAD_FAILURE%;
  };
  setTimeout(window.gitstoreLoadFailure, 10000);
</script>
<script src="%REACT_JS%"></script>
<script src="%REACT_DOM_JS%"></script>
<script src="%GRAPHIQL_JS%"></script>
<script src="%GRAPHQL_WS_JS%"></script>
<script>
(function () {
  "use strict";
  if (!window.GraphiQL || !window.React || !window.ReactDOM || !window.graphqlWs) {
    window.gitstoreLoadFailure();
    return;
  }
  // Host-relative, so the page works under whatever host or port serves it.
  var endpoint = "/graphql";

  function fetcher(params, options) {
    var headers = Object.assign(
      { "Content-Type": "application/json", "Accept": "application/json" },
      options && options.headers
    );
    return fetch(endpoint, {
      method: "POST",
      headers: headers,
      body: JSON.stringify(params),
      credentials: "same-origin"
    }).then(function (response) {
      return response.text().then(function (text) {
        try {
          return JSON.parse(text);
        } catch (_) {
          // A non-GraphQL answer (413, 504 from a proxy, ...) still shows up in the result pane.
          return { errors: [{ message: "HTTP " + response.status + ": " + text }] };
        }
      });
    });
  }

  // Subscriptions go over a WebSocket on the same path (graphql-transport-ws), opened
  // on the first subscription and shared by the next ones.
  var wsUrl = new URL(endpoint, location.href);
  wsUrl.protocol = wsUrl.protocol.replace("http", "ws");
  wsUrl = wsUrl.href;
  var lastHeaders = {};
  var wsClient = null;
  function ws() {
    if (!wsClient) {
      wsClient = graphqlWs.createClient({
        url: wsUrl,
        lazy: true,
        retryAttempts: 0,
        // A token from the Headers pane goes into the init payload (mutations sent on the
        // socket need it; subscriptions are public).
        connectionParams: function () {
          var auth = lastHeaders.Authorization || lastHeaders.authorization;
          return auth ? { Authorization: auth } : {};
        }
      });
    }
    return wsClient;
  }

  // Whether the operation to run is a subscription: the named one, or the first one.
  function isSubscription(params) {
    var text = String(params.query || "")
      .replace(/"""[\s\S]*?"""/g, "")
      .replace(/"(?:[^"\\]|\\.)*"/g, "")
      .replace(/#[^\n]*/g, "");
    var re = /\b(query|mutation|subscription)\b\s*([_A-Za-z][_0-9A-Za-z]*)?|(^|[^.\w\s]|^\s*)\{/g;
    var found;
    while ((found = re.exec(text)) !== null) {
      var kind = found[1] || "query";
      if (!params.operationName || found[2] === params.operationName) {
        return kind === "subscription";
      }
    }
    return false;
  }

  function subscribe(params) {
    return {
      subscribe: function (observer) {
        var dispose = ws().subscribe(params, {
          next: function (value) { observer.next(value); },
          error: function (err) {
            // A closed socket arrives as a CloseEvent: show its code and reason.
            var message = err && err.code
              ? "connection closed (" + err.code + (err.reason ? ": " + err.reason : "") + ")"
              : String((err && err.message) || err);
            observer.next({ errors: [{ message: message }] });
            observer.complete();
          },
          complete: function () { observer.complete(); }
        });
        return { unsubscribe: dispose };
      }
    };
  }

  function graphiqlFetcher(params, options) {
    lastHeaders = (options && options.headers) || {};
    return isSubscription(params) ? subscribe(params) : fetcher(params, options);
  }

  ReactDOM.createRoot(document.getElementById("graphiql")).render(
    React.createElement(GraphiQL, {
      fetcher: graphiqlFetcher,
      defaultQuery: %DEFAULT_QUERY%,
      shouldPersistHeaders: false
    })
  );
})();
</script>
</body>
</html>
"#;

/// The page, rendered once: it depends only on what was compiled in.
static PAGE: LazyLock<String> = LazyLock::new(|| {
    PAGE_TEMPLATE
        .replace("%GRAPHIQL_CSS%", &asset_url(&generated::GRAPHIQL_CSS))
        .replace("%REACT_JS%", &asset_url(&generated::REACT_JS))
        .replace("%REACT_DOM_JS%", &asset_url(&generated::REACT_DOM_JS))
        .replace("%GRAPHIQL_JS%", &asset_url(&generated::GRAPHIQL_JS))
        .replace("%GRAPHQL_WS_JS%", &asset_url(&generated::GRAPHQL_WS_JS))
        .replace("%DEFAULT_QUERY%", &js_string(DEFAULT_QUERY))
        .replace("%LOAD_FAILURE%", &js_string(load_failure()))
});

/// What the page shows when GraphiQL's files did not load.
const fn load_failure() -> &'static str {
    if generated::OFFLINE {
        "<h2>GraphiQL did not load</h2><p>This server embeds GraphiQL's files, but the browser \
         could not fetch them from <code>/playground/assets/</code>. Reload the page; the API \
         itself answers at <code>/graphql</code>.</p>"
    } else {
        "<h2>GraphiQL could not be loaded from the CDN</h2><p>This gitstore-api binary was built \
         on a machine without Node.js and npm, so it does not embed GraphiQL and the page loads \
         it from <code>cdn.jsdelivr.net</code>, which this browser cannot reach.</p><p>To serve \
         the playground offline, install Node.js and npm and rebuild \
         (<code>cargo build --release</code> fetches the pinned bundle itself), or run \
         <code>npm ci --prefix assets/graphiql</code> before building.</p><p>The API works \
         without the playground: send queries to <code>/graphql</code>, e.g. <code>curl -H \
         'Content-Type: application/json' -d '{\"query\":\"{ products { totalCount } }\"}' \
         http://localhost:4000/graphql</code>.</p>"
    }
}

/// Routes for `GET /playground` and `GET /playground/assets/{file}`.
///
/// Stateless, so it merges into a router of any state type.
pub fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/playground", get(page))
        .route("/playground/assets/{file}", get(asset))
}

/// Whether this binary embeds the GraphiQL files (`false`: the page loads them from a CDN, so the
/// playground needs internet access in the browser).
pub fn serves_offline() -> bool {
    generated::OFFLINE
}

async fn page() -> impl IntoResponse {
    (
        // The page names versioned asset URLs, so it must be revalidated to pick up an upgrade.
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"))],
        Html(PAGE.as_str()),
    )
}

async fn asset(Path(file): Path<String>) -> Response {
    let Some(found) = generated::EMBEDDED
        .iter()
        .find(|embedded| embedded.file_name == file)
    else {
        return (StatusCode::NOT_FOUND, "no such playground asset").into_response();
    };
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(found.content_type),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=31536000, immutable"),
            ),
        ],
        found.bytes,
    )
        .into_response()
}

fn asset_url(asset: &Asset) -> String {
    if generated::OFFLINE {
        format!("{ASSETS_PATH}/{}", asset.file_name)
    } else {
        asset.cdn_url.to_owned()
    }
}

/// `text` as a JavaScript string literal that is also safe inside an HTML `<script>` element.
fn js_string(text: &str) -> String {
    // A JSON string is a valid JS string literal; `<` is escaped so that no `</script>` can end
    // the element early.
    serde_json::to_string(text)
        .expect("a string always serialises")
        .replace('<', "\\u003c")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_links_every_asset_and_the_default_query() {
        for asset in [
            &generated::REACT_JS,
            &generated::REACT_DOM_JS,
            &generated::GRAPHIQL_JS,
            &generated::GRAPHQL_WS_JS,
            &generated::GRAPHIQL_CSS,
        ] {
            assert!(
                PAGE.contains(&asset_url(asset)),
                "page misses {}",
                asset.file_name
            );
        }
        assert!(PAGE.contains("products(first: 5)"));
        let advice = if serves_offline() {
            "GraphiQL did not load"
        } else {
            "install Node.js and npm and rebuild"
        };
        assert!(
            PAGE.contains(advice),
            "the page says what to do when loading fails"
        );
        for placeholder in [
            "%GRAPHIQL_CSS%",
            "%REACT_JS%",
            "%REACT_DOM_JS%",
            "%GRAPHIQL_JS%",
            "%GRAPHQL_WS_JS%",
            "%DEFAULT_QUERY%",
            "%LOAD_FAILURE%",
        ] {
            assert!(
                !PAGE.contains(placeholder),
                "{placeholder} left in the page"
            );
        }
    }

    #[test]
    fn embedded_files_match_the_linked_names() {
        if serves_offline() {
            let names: Vec<_> = generated::EMBEDDED
                .iter()
                .map(|file| file.file_name)
                .collect();
            assert_eq!(names.len(), 5);
            for asset in [
                &generated::REACT_JS,
                &generated::REACT_DOM_JS,
                &generated::GRAPHIQL_JS,
                &generated::GRAPHQL_WS_JS,
                &generated::GRAPHIQL_CSS,
            ] {
                assert!(
                    names.contains(&asset.file_name),
                    "{} not embedded",
                    asset.file_name
                );
            }
        } else {
            assert!(generated::EMBEDDED.is_empty());
        }
    }

    #[test]
    fn script_literal_cannot_close_the_script_element() {
        assert_eq!(js_string("a</script>\"b"), r#""a\u003c/script>\"b""#);
    }
}
