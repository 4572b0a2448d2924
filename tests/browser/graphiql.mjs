// Drives the GraphiQL playground in a real Chromium with the internet cut off.
//
//   node tests/browser/graphiql.mjs <base-url> <screenshot.png> [sku]
//
// Every request to a host other than the server's is aborted, so the page can only work if the
// binary serves GraphiQL itself. The script opens /playground, replaces the query with one that
// reads the product `sku` (default BROWSER-1, seeded beforehand by tests/it/browser.rs), runs it
// with the run button and waits until the result pane shows that sku. Exit 0 on success; exit 1
// with the reason, the blocked requests and the browser console otherwise.
//
// Environment: CHROMIUM (default /usr/bin/chromium), GRAPHIQL_TEST_TIMEOUT_MS (default 60000).

import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { chromium } from "playwright-core";

const [baseArg, screenshotPath, sku = "BROWSER-1"] = process.argv.slice(2);
if (!baseArg || !screenshotPath) {
  console.error("usage: node graphiql.mjs <base-url> <screenshot.png> [sku]");
  process.exit(2);
}
const base = new URL(baseArg);
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
const timeout = Number(process.env.GRAPHIQL_TEST_TIMEOUT_MS || 60000);

const blocked = [];
const consoleLines = [];
let step = "launching Chromium";
let browser;
let failed = false;

function fail(message) {
  if (failed) {
    return; // the watchdog already reported; this is the fallout of closing the browser
  }
  failed = true;
  console.error(`graphiql browser test failed while ${step}: ${message}`);
  if (blocked.length > 0) {
    console.error(`requests blocked (not to ${base.host}):\n  ${blocked.join("\n  ")}`);
  }
  if (consoleLines.length > 0) {
    console.error(`browser console:\n  ${consoleLines.join("\n  ")}`);
  }
}

// The whole run is bounded, whatever hangs (launch, navigation, a selector that never appears).
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
  // Shorter than the watchdog, so a stuck step reports its own, more precise error.
  context.setDefaultTimeout(Math.floor(timeout * 0.8));

  // The "no internet" of an air-gapped deployment: only the server itself answers.
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

  step = "opening /playground";
  const response = await page.goto(new URL("/playground", base).href, { waitUntil: "load" });
  if (!response || response.status() !== 200) {
    throw new Error(`GET /playground answered ${response ? response.status() : "nothing"}`);
  }

  step = "waiting for the GraphiQL query editor";
  await page.waitForSelector(".graphiql-query-editor .CodeMirror", { state: "visible" });

  step = "replacing the query";
  const query = `# Written by tests/browser/graphiql.mjs
{
  product(sku: ${JSON.stringify(sku)}) {
    sku
    title
    price
    category {
      name
      slug
    }
  }
}
`;
  // GraphiQL 3 edits with CodeMirror 5, which exposes its editor object on the element; typing
  // would fight its auto-closing brackets.
  await page.evaluate((text) => {
    document.querySelector(".graphiql-query-editor .CodeMirror").CodeMirror.setValue(text);
  }, query);

  step = "running the query";
  await page.click("button.graphiql-execute-button");

  step = `waiting for ${sku} in the result pane`;
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

  console.log(`GraphiQL ran the query offline; result:\n${result}`);
  if (blocked.length > 0) {
    // The page worked, but something in it still tries to reach the internet.
    console.log(`note: requests blocked (not to ${base.host}):\n  ${blocked.join("\n  ")}`);
  }
  console.log(`screenshot: ${screenshotPath}`);
  await browser.close();
  clearTimeout(watchdog);
} catch (err) {
  fail(err instanceof Error ? err.message : String(err));
  await browser?.close().catch(() => {});
  process.exit(1);
}
