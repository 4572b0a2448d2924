// A subscription in the GraphiQL playground, in a real Chromium with the internet cut off.
//
//   node tests/browser/subscription.mjs <base-url> <screenshot.png> <category-id> [sku]
//
// Opens /playground, runs `subscription { catalogChanged { ... } }` with the run button (GraphiQL
// opens a WebSocket to /graphql through the embedded graphql-ws client), waits for that socket,
// then creates product `sku` (default BROWSER-SUB-1) in `category-id` with a plain HTTP POST from
// this script, and waits until the event naming that sku appears in the result pane. Exit 0 on
// success; exit 1 with the reason, the blocked requests, the WebSocket frames and the browser
// console otherwise.
//
// Environment: CHROMIUM (default /usr/bin/chromium), GRAPHIQL_TEST_TIMEOUT_MS (default 60000).

import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { chromium } from "playwright-core";

const [baseArg, screenshotPath, categoryId, sku = "BROWSER-SUB-1"] = process.argv.slice(2);
if (!baseArg || !screenshotPath || !categoryId) {
  console.error("usage: node subscription.mjs <base-url> <screenshot.png> <category-id> [sku]");
  process.exit(2);
}
const base = new URL(baseArg);
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
const timeout = Number(process.env.GRAPHIQL_TEST_TIMEOUT_MS || 60000);

const blocked = [];
const consoleLines = [];
const frames = [];
let step = "launching Chromium";
let browser;
let failed = false;

function fail(message) {
  if (failed) {
    return;
  }
  failed = true;
  console.error(`subscription browser test failed while ${step}: ${message}`);
  if (blocked.length > 0) {
    console.error(`requests blocked (not to ${base.host}):\n  ${blocked.join("\n  ")}`);
  }
  if (frames.length > 0) {
    console.error(`websocket frames:\n  ${frames.join("\n  ")}`);
  }
  if (consoleLines.length > 0) {
    console.error(`browser console:\n  ${consoleLines.join("\n  ")}`);
  }
}

const watchdog = setTimeout(async () => {
  fail(`timed out after ${timeout} ms`);
  await browser?.close().catch(() => {});
  process.exit(1);
}, timeout);

try {
  browser = await chromium.launch({
    executablePath,
    headless: true,
    timeout,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  context.setDefaultTimeout(Math.floor(timeout * 0.8));
  await context.route("**/*", (route) => {
    const url = new URL(route.request().url());
    if (url.host === base.host) {
      return route.continue();
    }
    blocked.push(url.href);
    return route.abort("internetdisconnected");
  });

  const page = await context.newPage();
  page.on("console", (msg) => consoleLines.push(`[${msg.type()}] ${msg.text()}`));
  page.on("pageerror", (err) => consoleLines.push(`[pageerror] ${err.message}`));
  let socketOpen;
  const socketOpened = new Promise((resolve) => {
    socketOpen = resolve;
  });
  page.on("websocket", (ws) => {
    frames.push(`open ${ws.url()}`);
    ws.on("framesent", (f) => frames.push(`> ${String(f.payload).slice(0, 200)}`));
    ws.on("framereceived", (f) => {
      frames.push(`< ${String(f.payload).slice(0, 200)}`);
      if (String(f.payload).includes("connection_ack")) {
        socketOpen();
      }
    });
    ws.on("close", () => frames.push("closed"));
  });

  step = "opening /playground";
  const response = await page.goto(new URL("/playground", base).href, { waitUntil: "load" });
  if (!response || response.status() !== 200) {
    throw new Error(`GET /playground answered ${response ? response.status() : "nothing"}`);
  }

  step = "waiting for the GraphiQL query editor";
  await page.waitForSelector(".graphiql-query-editor .CodeMirror", { state: "visible" });

  step = "replacing the query with a subscription";
  const query = `# Written by tests/browser/subscription.mjs
subscription {
  catalogChanged {
    position
    kind
    entity
    id
    node {
      ... on Product {
        sku
        title
      }
    }
  }
}
`;
  await page.evaluate((text) => {
    document.querySelector(".graphiql-query-editor .CodeMirror").CodeMirror.setValue(text);
  }, query);

  step = "starting the subscription";
  await page.click("button.graphiql-execute-button");

  step = "waiting for the WebSocket to be acknowledged";
  await socketOpened;
  // The subscribe message follows the ack; give the server a moment to register it.
  await new Promise((resolve) => setTimeout(resolve, 500));

  step = "creating the product over HTTP";
  const created = await fetch(new URL("/graphql", base), {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({
      query: `mutation ($sku: String!, $categoryId: ID!) {
        createProduct(input: { sku: $sku, title: "Live in the browser", price: "1.00", categoryId: $categoryId }) {
          product { id }
        }
      }`,
      variables: { sku, categoryId },
    }),
  }).then((r) => r.json());
  if (created.errors) {
    throw new Error(`createProduct failed: ${JSON.stringify(created.errors)}`);
  }

  step = `waiting for the event of ${sku} in the result pane`;
  await page.waitForFunction((expected) => {
    const result = document.querySelector(".graphiql-response .CodeMirror");
    return result !== null && result.CodeMirror.getValue().includes(`"sku": "${expected}"`);
  }, sku);
  const result = await page.evaluate(
    () => document.querySelector(".graphiql-response .CodeMirror").CodeMirror.getValue(),
  );

  step = "saving the screenshot";
  mkdirSync(dirname(screenshotPath), { recursive: true });
  await page.screenshot({ path: screenshotPath, fullPage: true });

  console.log(`GraphiQL showed the subscription event offline; result:\n${result}`);
  console.log(`screenshot: ${screenshotPath}`);
  await browser.close();
  clearTimeout(watchdog);
} catch (err) {
  fail(err instanceof Error ? err.message : String(err));
  await browser?.close().catch(() => {});
  process.exit(1);
}
