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

import { openPlayground, resultWithSku, runInEditor, runOffline, screenshot } from "./offline.mjs";

const [baseArg, screenshotPath, categoryId, sku = "BROWSER-SUB-1"] = process.argv.slice(2);
if (!baseArg || !screenshotPath || !categoryId) {
  console.error("usage: node subscription.mjs <base-url> <screenshot.png> <category-id> [sku]");
  process.exit(2);
}
const base = new URL(baseArg);
const frames = [];

await runOffline(
  "subscription",
  base,
  async ({ page, setStep }) => {
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

    await openPlayground(page, base, setStep);

    setStep("starting the subscription");
    await runInEditor(
      page,
      `# Written by tests/browser/subscription.mjs
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
`,
    );

    setStep("waiting for the WebSocket to be acknowledged");
    await socketOpened;
    // The subscribe message follows the ack; give the server a moment to register it.
    await new Promise((resolve) => setTimeout(resolve, 500));

    setStep("creating the product over HTTP");
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

    setStep(`waiting for the event of ${sku} in the result pane`);
    const result = await resultWithSku(page, sku);

    setStep("saving the screenshot");
    await screenshot(page, screenshotPath);
    console.log(`GraphiQL showed the subscription event offline; result:\n${result}`);
    console.log(`screenshot: ${screenshotPath}`);
  },
  { "websocket frames": frames },
);
