// Calls /graphql from a page of another origin in a real Chromium, as the admin web app does.
//
//   node tests/browser/cors.mjs <base-url>
//
// The page is loaded from http://localhost:PORT and posts to http://127.0.0.1:PORT/graphql: a
// different origin, with a JSON body and an X-Request-ID header, so the browser sends a CORS
// preflight first. Prints the fetch outcome as one JSON line ({status, requestId, data}); the
// Rust test checks it. Exit 1 if the browser refuses the call (a CORS failure is a TypeError).
//
// Environment: CHROMIUM (default /usr/bin/chromium), GRAPHIQL_TEST_TIMEOUT_MS (default 60000).

import { chromium } from "playwright-core";

const [baseArg] = process.argv.slice(2);
if (!baseArg) {
  console.error("usage: node cors.mjs <base-url>");
  process.exit(2);
}
const api = new URL(baseArg);
api.hostname = "127.0.0.1";
const page_origin = new URL(baseArg);
page_origin.hostname = "localhost";
const timeout = Number(process.env.GRAPHIQL_TEST_TIMEOUT_MS || 60000);
const watchdog = setTimeout(() => {
  console.error(`timed out after ${timeout} ms`);
  process.exit(1);
}, timeout);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  timeout,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"],
});
try {
  const page = await browser.newPage();
  await page.goto(new URL("/health", page_origin).href);
  const outcome = await page.evaluate(async (url) => {
    const response = await fetch(url, {
      method: "POST",
      headers: {
        "Content-Type": "application/json",
        Accept: "application/graphql-response+json",
        "X-Request-ID": "browser-cors-1",
      },
      body: JSON.stringify({ query: "{ products { totalCount } }" }),
    });
    return {
      status: response.status,
      requestId: response.headers.get("x-request-id"),
      body: await response.json(),
    };
  }, new URL("/graphql", api).href);
  console.log(JSON.stringify(outcome));
} catch (error) {
  console.error(`the cross-origin call failed: ${error}`);
  process.exitCode = 1;
} finally {
  clearTimeout(watchdog);
  await browser.close();
}
