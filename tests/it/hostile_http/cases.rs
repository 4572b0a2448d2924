//! The table of hostile cases: wrong methods, content types, oversize and malformed
//! bodies, odd batches and headers. Several cases carry a mutation that would change the
//! catalogue if it ran.

use serde_json::{Value, json};

use super::{Case, Expect, MUTATION, ORIGIN, QUERY, Send};

fn json_body(value: &Value) -> Option<Vec<u8>> {
    Some(value.to_string().into_bytes())
}

fn post(name: &str, content_type: Option<&str>, body: Vec<u8>, expect: Expect) -> Case {
    let headers = content_type
        .map(|ct| vec![("content-type", ct.to_owned())])
        .unwrap_or_default();
    Case {
        name: name.to_owned(),
        send: Send::Http("POST", "/graphql".to_owned(), headers, Some(body)),
        expect,
    }
}

fn post_json(name: &str, body: impl Into<Vec<u8>>, expect: Expect) -> Case {
    post(name, Some("application/json"), body.into(), expect)
}

fn get_q(name: &str, query_string: &str, expect: Expect) -> Case {
    Case {
        name: name.to_owned(),
        send: Send::Http("GET", format!("/graphql?{query_string}"), Vec::new(), None),
        expect,
    }
}

fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn raw_post(content_type: &[u8], extra_headers: &str, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(b"POST /graphql HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    out.extend_from_slice(format!("Origin: {ORIGIN}\r\n").as_bytes());
    if !content_type.is_empty() {
        out.extend_from_slice(b"Content-Type: ");
        out.extend_from_slice(content_type);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(extra_headers.as_bytes());
    if !extra_headers
        .to_ascii_lowercase()
        .contains("content-length")
        && !extra_headers
            .to_ascii_lowercase()
            .contains("transfer-encoding")
    {
        out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

fn chunked(body: &[u8], chunk: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for part in body.chunks(chunk) {
        out.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        out.extend_from_slice(part);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

pub(super) fn cases(max_body: usize) -> Vec<Case> {
    use Expect::{Batch, Data, DataErrors, Error, Protocol, Status};
    const BAD: &str = "INVALID_ARGUMENT";
    let mutation = json!({ "query": MUTATION });
    let query = json!({ "query": QUERY });
    let mut cases = Vec::new();

    // Wrong methods.
    for method in ["PUT", "DELETE", "PATCH", "TRACE", "FROB"] {
        cases.push(Case {
            name: format!("{method} with a mutation"),
            send: Send::Http(
                method,
                "/graphql".to_owned(),
                vec![("content-type", "application/json".to_owned())],
                json_body(&mutation),
            ),
            expect: Error(405, BAD, "is not allowed on /graphql; use POST"),
        });
    }
    cases.push(Case {
        name: "DELETE without a body".to_owned(),
        send: Send::Http("DELETE", "/graphql".to_owned(), Vec::new(), None),
        expect: Error(405, BAD, "method DELETE is not allowed"),
    });
    cases.push(Case {
        name: "OPTIONS preflight from any origin".to_owned(),
        send: Send::Http(
            "OPTIONS",
            "/graphql".to_owned(),
            vec![("access-control-request-method", "POST".to_owned())],
            None,
        ),
        expect: Status(204),
    });

    // Content types: the simple ones an HTML form can send never reach a mutation.
    let refused = [
        ("text/plain", "content type text/plain is not accepted"),
        ("text/plain; charset=utf-8", "text/plain is not accepted"),
        (
            "application/x-www-form-urlencoded",
            "application/x-www-form-urlencoded is not accepted",
        ),
        (
            "multipart/form-data; boundary=XyZ",
            "multipart/form-data is not accepted",
        ),
        ("application/xml", "application/xml is not accepted"),
        ("text/html", "text/html is not accepted"),
        ("application/jsonp", "application/jsonp is not accepted"),
        ("application/json, text/plain", "is not accepted"),
        ("*/*", "*/* is not accepted"),
        ("application/json; charset=latin1", "charset latin1"),
        ("application/json; charset=utf-16", "charset utf-16"),
        ("not a mime type", "is not accepted"),
        ("", "(empty) is not accepted"),
    ];
    for (ct, message) in refused {
        cases.push(post(
            &format!("mutation as {ct:?}"),
            Some(ct),
            mutation.to_string().into_bytes(),
            Error(415, BAD, message),
        ));
    }
    cases.push(post(
        "form-encoded mutation",
        Some("application/x-www-form-urlencoded"),
        format!("query={}", enc(MUTATION)).into_bytes(),
        Error(415, BAD, "not accepted; send application/json"),
    ));
    cases.push(post(
        "mutation without a content type",
        None,
        mutation.to_string().into_bytes(),
        Error(415, BAD, "request has no content type"),
    ));
    cases.push(Case {
        name: "non-ASCII content type".to_owned(),
        send: Send::Raw(raw_post(
            b"application/json\xff",
            "",
            mutation.to_string().as_bytes(),
        )),
        expect: Error(415, BAD, "not readable text"),
    });

    // Accepted content types (queries only: the catalogue must not change).
    for ct in [
        "application/json; charset=UTF-8",
        "APPLICATION/JSON",
        "  application/json ;  charset=\"utf-8\" ",
        "application/graphql-response+json",
        "application/json; foo=bar",
    ] {
        cases.push(post(
            &format!("query as {ct:?}"),
            Some(ct),
            query.to_string().into_bytes(),
            Data,
        ));
    }
    cases.push(post(
        "application/graphql query text",
        Some("application/graphql"),
        QUERY.as_bytes().to_vec(),
        Data,
    ));

    // Oversize bodies.
    let padded = |len: usize| {
        let mut body = query.to_string().into_bytes();
        body.resize(len, b' ');
        body
    };
    cases.push(post_json(
        "body exactly at the limit",
        padded(max_body),
        Data,
    ));
    cases.push(post_json(
        "body one byte over the limit",
        padded(max_body + 1),
        Error(413, BAD, "request body is larger than the"),
    ));
    cases.push(post(
        "2 MiB mutation without a content type",
        None,
        format!(
            "{{\"query\": {:?}, \"x\": \"{}\"}}",
            MUTATION,
            "a".repeat(2 * max_body)
        )
        .into_bytes(),
        Error(413, BAD, "-byte limit"),
    ));
    cases.push(Case {
        name: "chunked body growing over the limit".to_owned(),
        send: Send::Raw(raw_post(
            b"application/json",
            "Transfer-Encoding: chunked\r\n",
            &chunked(&padded(max_body + 4096), 64 * 1024),
        )),
        expect: Error(413, BAD, "-byte limit"),
    });
    cases.push(Case {
        name: "declared length over the limit, body never sent".to_owned(),
        send: Send::Raw(raw_post(
            b"application/json",
            &format!("Content-Length: {}\r\n", max_body * 8),
            b"",
        )),
        expect: Error(413, BAD, "-byte limit"),
    });

    // Malformed JSON.
    for (name, body) in [
        ("truncated JSON", "{\"query\": "),
        ("lone brace", "{"),
        ("misspelt null", "nul"),
        ("trailing comma", "{\"query\": \"{ __typename }\",}"),
        ("single quotes", "{'query': '{ __typename }'}"),
        ("bad escape", "{\"query\": \"\\x\"}"),
        (
            "NaN variable",
            "{\"query\": \"{ __typename }\", \"variables\": {\"x\": NaN}}",
        ),
        ("byte order mark", "\u{feff}{\"query\": \"{ __typename }\"}"),
        (
            "two documents",
            "{\"query\": \"{ a }\"} {\"query\": \"{ b }\"}",
        ),
    ] {
        cases.push(post_json(
            name,
            body,
            Error(400, BAD, "not a valid GraphQL JSON request"),
        ));
    }
    cases.push(post_json(
        "JSON nested 10000 deep",
        format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)),
        Error(400, BAD, "recursion limit"),
    ));

    // JSON that is not a request object.
    for (name, body, message) in [
        ("string body", "\"{ __typename }\"", "not a string"),
        ("number body", "42", "not a number"),
        ("null body", "null", "not null"),
        ("boolean body", "true", "not a boolean"),
        ("query is a number", "{\"query\": 5}", "invalid type"),
        ("query is null", "{\"query\": null}", "invalid type"),
        (
            "operationName is a number",
            "{\"query\": \"{ __typename }\", \"operationName\": 5}",
            "invalid type",
        ),
        ("no query", "{\"variables\": {}}", "request has no query"),
        ("empty query", "{\"query\": \"\"}", "request has no query"),
        (
            "blank query",
            "{\"query\": \"  \\n \"}",
            "request has no query",
        ),
        ("empty object", "{}", "request has no query"),
    ] {
        cases.push(post_json(name, body, Error(400, BAD, message)));
    }

    // Huge and odd variables.
    let big_list: Vec<u32> = (0..100_000).collect();
    cases.push(post_json(
        "100k-element variable",
        json!({ "query": QUERY, "variables": { "x": big_list } }).to_string(),
        Data,
    ));
    cases.push(post_json(
        "900 KB string variable",
        json!({ "query": QUERY, "variables": { "x": "v".repeat(900_000) } }).to_string(),
        Data,
    ));
    cases.push(post_json(
        "variables nested 100 deep",
        format!(
            "{{\"query\": \"{{ __typename }}\", \"variables\": {{\"x\": {}1{}}}}}",
            "[".repeat(100),
            "]".repeat(100)
        ),
        Data,
    ));
    cases.push(post_json(
        "variables nested 200 deep",
        format!(
            "{{\"query\": \"{{ __typename }}\", \"variables\": {{\"x\": {}1{}}}}}",
            "[".repeat(200),
            "]".repeat(200)
        ),
        Error(400, BAD, "recursion limit"),
    ));
    cases.push(post_json(
        "mutation input variable of the wrong type",
        json!({
            "query": "mutation($i: CreateCategoryInput!) { createCategory(input: $i) { category { id } } }",
            "variables": { "i": { "name": ["Evil"], "slug": 7 } }
        })
        .to_string(),
        DataErrors,
    ));

    // Invalid UTF-8.
    cases.push(post_json(
        "invalid UTF-8 in a JSON string",
        b"{\"query\": \"{ __typename \xff\xfe }\"}".to_vec(),
        Error(400, BAD, "not a valid GraphQL JSON request"),
    ));
    cases.push(post(
        "invalid UTF-8 as application/graphql",
        Some("application/graphql"),
        b"{ __typename \xc3\x28 }".to_vec(),
        Error(400, BAD, "not valid UTF-8"),
    ));
    cases.push(get_q(
        "invalid UTF-8 in the query string",
        "query=%7B%20__typename%20%FF%20%7D",
        // Decoded lossily (U+FFFD), so the engine reports a syntax error.
        DataErrors,
    ));

    // Empty bodies.
    cases.push(post_json(
        "empty JSON body",
        Vec::new(),
        Error(400, BAD, "request body is empty"),
    ));
    cases.push(post(
        "empty application/graphql body",
        Some("application/graphql"),
        Vec::new(),
        Error(400, BAD, "request body is empty"),
    ));
    cases.push(post(
        "empty body without a content type",
        None,
        Vec::new(),
        Error(415, BAD, "no content type"),
    ));

    // GETs.
    cases.push(get_q(
        "GET mutation",
        &format!("query={}", enc(MUTATION)),
        Error(405, BAD, "mutations must be sent with POST"),
    ));
    cases.push(get_q(
        "GET named mutation with operationName",
        &format!(
            "query={}&operationName=M",
            enc("mutation M { createCategory(input: { name: \"E\", slug: \"e\" }) { category { id } } }")
        ),
        Error(405, BAD, "mutations must be sent with POST"),
    ));
    cases.push(get_q(
        "GET document with a query and a mutation, selecting the query",
        &format!(
            "query={}&operationName=Q",
            enc(&format!(
                "query Q {{ __typename }} {}",
                MUTATION.replacen("mutation", "mutation M", 1)
            ))
        ),
        Error(405, BAD, "mutations must be sent with POST"),
    ));
    cases.push(get_q("GET query", &format!("query={}", enc(QUERY)), Data));
    cases.push(get_q(
        "GET query with variables",
        &format!(
            "query={}&variables={}",
            enc("query($s: String!) { category(slug: $s) { name } }"),
            enc("{\"s\":\"books\"}")
        ),
        Data,
    ));
    cases.push(get_q(
        "GET with an empty query",
        "query=",
        Error(400, BAD, "has no query"),
    ));
    cases.push(get_q(
        "GET without a query parameter",
        "foo=bar",
        Error(400, BAD, "has no query"),
    ));
    cases.push(get_q(
        "GET with variables that are not JSON",
        &format!("query={}&variables=not-json", enc(QUERY)),
        Error(400, BAD, "query string is not a valid GraphQL request"),
    ));
    cases.push(get_q("GET with a syntax error", "query=%7B", DataErrors));
    cases.push(get_q(
        "GET subscription",
        &format!("query={}", enc("subscription { x }")),
        DataErrors,
    ));
    cases.push(Case {
        name: "GET without parameters (redirect to the playground, followed)".to_owned(),
        send: Send::Http("GET", "/graphql".to_owned(), Vec::new(), None),
        expect: Status(200),
    });

    // Batches.
    let items = |n: usize, item: &Value| Value::Array(vec![item.clone(); n]);
    cases.push(post_json(
        "empty batch",
        "[]",
        Error(400, BAD, "batch is empty"),
    ));
    cases.push(post_json(
        "batch of 11 queries",
        items(11, &query).to_string(),
        Error(400, BAD, "more than the limit of 10"),
    ));
    cases.push(post_json(
        "batch of 11 mutations",
        items(11, &mutation).to_string(),
        Error(400, BAD, "limit of 10"),
    ));
    cases.push(post_json(
        "batch of 10 000 mutations",
        items(10_000, &mutation).to_string(),
        Error(400, BAD, "batch has 10000 operations"),
    ));
    cases.push(post_json(
        "batch of 10 queries",
        items(10, &query).to_string(),
        Batch(10),
    ));
    cases.push(post_json(
        "mutation then a number",
        json!([mutation, 5]).to_string(),
        Error(400, BAD, "batch item 1"),
    ));
    cases.push(post_json(
        "mutation then an empty object",
        json!([mutation, {}]).to_string(),
        Error(400, BAD, "batch item 1 has no query"),
    ));
    cases.push(post_json(
        "mutation then a bad field type",
        json!([mutation, { "query": QUERY, "variables": 5 }]).to_string(),
        Error(400, BAD, "batch item 1"),
    ));
    cases.push(post_json(
        "nested batch",
        json!([[query]]).to_string(),
        Error(400, BAD, "batch item 0 must be a JSON object"),
    ));
    cases.push(post_json(
        "query and a broken query",
        json!([query, { "query": "{ nope" }]).to_string(),
        Batch(2),
    ));
    cases.push(post(
        "batch as application/graphql-response+json",
        Some("application/graphql-response+json"),
        items(2, &query).to_string().into_bytes(),
        Batch(2),
    ));
    cases.push(post(
        "batch of mutations as text/plain",
        Some("text/plain"),
        items(3, &mutation).to_string().into_bytes(),
        Error(415, BAD, "text/plain"),
    ));

    // Weird headers.
    let with_headers = |name: &str, headers: Vec<(&'static str, String)>, expect| Case {
        name: name.to_owned(),
        send: Send::Http(
            "POST",
            "/graphql".to_owned(),
            [
                vec![("content-type", "application/json".to_owned())],
                headers,
            ]
            .concat(),
            json_body(&query),
        ),
        expect,
    };
    cases.push(with_headers(
        "Accept: text/html",
        vec![("accept", "text/html".to_owned())],
        Data,
    ));
    cases.push(with_headers(
        "Accept: application/graphql-response+json",
        vec![("accept", "application/graphql-response+json".to_owned())],
        Data,
    ));
    cases.push(with_headers(
        "64 KB header",
        vec![("x-junk", "j".repeat(64 * 1024))],
        Data,
    ));
    cases.push(with_headers(
        "Origin: null",
        vec![("origin", "null".to_owned())],
        Data,
    ));
    cases.push(with_headers(
        "X-HTTP-Method-Override: DELETE",
        vec![("x-http-method-override", "DELETE".to_owned())],
        Data,
    ));
    cases.push(Case {
        name: "two content types, the first accepted".to_owned(),
        send: Send::Raw(raw_post(
            b"application/json\r\nContent-Type: text/plain",
            "",
            query.to_string().as_bytes(),
        )),
        expect: Data,
    });
    cases.push(Case {
        name: "non-ASCII bytes in a header".to_owned(),
        send: Send::Raw(raw_post(
            b"application/json",
            "X-Junk: caf\u{e9}\r\n",
            query.to_string().as_bytes(),
        )),
        expect: Data,
    });
    cases.push(Case {
        name: "Expect: 100-continue over the limit".to_owned(),
        send: Send::Raw(raw_post(
            b"application/json",
            &format!(
                "Expect: 100-continue\r\nContent-Length: {}\r\n",
                max_body * 2
            ),
            b"",
        )),
        expect: Error(413, BAD, "-byte limit"),
    });
    cases.push(Case {
        name: "Content-Length that is not a number".to_owned(),
        send: Send::Raw(raw_post(
            b"application/json",
            "Content-Length: abc\r\n",
            b"{}",
        )),
        expect: Protocol,
    });
    cases.push(Case {
        name: "Content-Length and Transfer-Encoding both".to_owned(),
        send: Send::Raw(raw_post(
            b"text/plain",
            "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
            &chunked(mutation.to_string().as_bytes(), 16),
        )),
        // hyper ignores Content-Length under chunked; the content type then refuses it.
        expect: Error(415, BAD, "text/plain"),
    });
    cases
}
