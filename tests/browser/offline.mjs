// What the GraphiQL browser tests share: a real Chromium with the internet cut off (every
// request to a host other than the server's is aborted, so a page can only work if the binary
// serves everything itself), a watchdog over the whole run, the playground's editor, and a
// failure report naming the step, the blocked requests, any extra sections and the browser
// console.
//
// Environment: CHROMIUM (default /usr/bin/chromium), GRAPHIQL_TEST_TIMEOUT_MS (default 60000).

import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { chromium } from "playwright-core";

/**
 * Runs `body({ page, setStep })` in an offline page against `base` (a URL) and exits 1 with a
 * report if it throws or the watchdog fires. `sections` maps a heading to an array that the
 * body fills (WebSocket frames, say); non-empty ones are printed on failure.
 */
export async function runOffline(name, base, body, sections = {}) {
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
    console.error(`${name} browser test failed while ${step}: ${message}`);
    const report = {
      [`requests blocked (not to ${base.host})`]: blocked,
      ...sections,
      "browser console": consoleLines,
    };
    for (const [heading, lines] of Object.entries(report)) {
      if (lines.length > 0) {
        console.error(`${heading}:\n  ${lines.join("\n  ")}`);
      }
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
    await body({
      page,
      setStep: (next) => {
        step = next;
      },
    });
    if (blocked.length > 0) {
      // The page worked, but something in it still tries to reach the internet.
      console.log(`note: requests blocked (not to ${base.host}):\n  ${blocked.join("\n  ")}`);
    }
    await browser.close();
    clearTimeout(watchdog);
  } catch (err) {
    fail(err instanceof Error ? err.message : String(err));
    await browser?.close().catch(() => {});
    process.exit(1);
  }
}

/** Opens /playground and waits for its query editor. */
export async function openPlayground(page, base, setStep) {
  setStep("opening /playground");
  const response = await page.goto(new URL("/playground", base).href, { waitUntil: "load" });
  if (!response || response.status() !== 200) {
    throw new Error(`GET /playground answered ${response ? response.status() : "nothing"}`);
  }
  setStep("waiting for the GraphiQL query editor");
  await page.waitForSelector(".graphiql-query-editor .CodeMirror", { state: "visible" });
}

/** Replaces the editor's text and presses the run button. */
export async function runInEditor(page, text) {
  // GraphiQL 3 edits with CodeMirror 5, which exposes its editor object on the element; typing
  // would fight its auto-closing brackets.
  await page.evaluate((value) => {
    document.querySelector(".graphiql-query-editor .CodeMirror").CodeMirror.setValue(value);
  }, text);
  await page.click("button.graphiql-execute-button");
}

/** Waits until the result pane names product `sku`; returns the pane's text. */
export async function resultWithSku(page, sku) {
  await page.waitForFunction((expected) => {
    const result = document.querySelector(".graphiql-response .CodeMirror");
    return result !== null && result.CodeMirror.getValue().includes(`"sku": "${expected}"`);
  }, sku);
  return page.evaluate(
    () => document.querySelector(".graphiql-response .CodeMirror").CodeMirror.getValue(),
  );
}

/** Saves a full-page screenshot, creating its directory. */
export async function screenshot(page, path) {
  mkdirSync(dirname(path), { recursive: true });
  await page.screenshot({ path, fullPage: true });
}
