// Drives the GraphiQL playground in a real Chromium with the internet cut off.
//
//   node tests/browser/graphiql.mjs <base-url> <screenshot.png> [sku]
//
// Every request to a host other than the server's is aborted (see offline.mjs), so the page can
// only work if the binary serves GraphiQL itself. The script opens /playground, replaces the
// query with one that reads the product `sku` (default BROWSER-1, seeded beforehand by
// tests/it/browser.rs), runs it with the run button and waits until the result pane shows that
// sku. Exit 0 on success; exit 1 with the reason, the blocked requests and the browser console
// otherwise.

import { openPlayground, resultWithSku, runInEditor, runOffline, screenshot } from "./offline.mjs";

const [baseArg, screenshotPath, sku = "BROWSER-1"] = process.argv.slice(2);
if (!baseArg || !screenshotPath) {
  console.error("usage: node graphiql.mjs <base-url> <screenshot.png> [sku]");
  process.exit(2);
}
const base = new URL(baseArg);

await runOffline("graphiql", base, async ({ page, setStep }) => {
  await openPlayground(page, base, setStep);

  setStep("running the query");
  await runInEditor(
    page,
    `# Written by tests/browser/graphiql.mjs
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
`,
  );

  setStep(`waiting for ${sku} in the result pane`);
  const result = await resultWithSku(page, sku);

  setStep("saving the screenshot");
  await screenshot(page, screenshotPath);
  console.log(`GraphiQL ran the query offline; result:\n${result}`);
  console.log(`screenshot: ${screenshotPath}`);
});
