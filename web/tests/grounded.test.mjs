// Ask with documents in real Chromium: a document ingested through the Documents screen,
// its collection picked in the assistant chat, a question whose reply cites it (numbered
// chips under the answer, while streaming and once stored, and after a reload), a chip
// opened to its passage with source and score, and a question the documents do not cover
// answered as a plain reply without citations.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { launch, message, nav, person, register, send, shot, uniqueName } from "./harness.mjs";

const COLLECTION = "coast";
const DOCUMENT = `# The Bell Rock Lighthouse

The Bell Rock lighthouse stands on a reef eleven miles off the coast of Angus in Scotland.
It was built by Robert Stevenson between 1807 and 1810, and its keepers lived in the tower
for weeks at a time, trimming the lamp's wicks every few hours.
`;

let browser;
let eve;

before(async () => {
  browser = await launch();
  eve = await person(browser, "eve");
  await register(eve.page, uniqueName("eve"));
});

after(async () => {
  await browser?.close();
});

/** The stored assistant replies on the page. */
function replies(page) {
  return page.locator(".msg.assistant:not(.streaming)");
}

async function waitStoredReply(page, before) {
  await page.waitForFunction((n) => document.querySelectorAll(".msg.assistant:not(.streaming)").length > n, before, {
    timeout: 180_000,
  });
  await page.getByTestId("assistant-streaming").waitFor({ state: "detached", timeout: 60_000 });
}

test("a reply grounded on an ingested document cites it, and a citation opens to its passage", async () => {
  const page = eve.page;
  await nav(page, "documents");
  await page.getByTestId("new-collection-name").fill(COLLECTION);
  await page.getByTestId("create-collection").click();
  await page.locator(`[data-testid="collection-view"][data-name="${COLLECTION}"]`).waitFor();
  await page.getByTestId("upload-input").setInputFiles({ name: "bellrock.md", mimeType: "text/markdown", buffer: Buffer.from(DOCUMENT) });
  await page.locator('[data-testid="upload"][data-file="bellrock.md"][data-state="succeeded"]').waitFor({ timeout: 180_000 });

  await nav(page, "chats");
  await page.getByTestId("assistant").click();
  await page.getByTestId("chat-title").filter({ hasText: "Assistant" }).waitFor();
  const choice = page.locator(`[data-testid="collection-choice"][data-name="${COLLECTION}"]`);
  await choice.waitFor();
  assert.equal(await choice.isChecked(), false, "no collection is picked until the user picks one");
  await choice.check();
  await page.getByTestId("grounding-state").filter({ hasText: `replies cite ${COLLECTION}` }).waitFor();
  await shot(page, "60-grounded-collection-picked");

  // The chips show while the reply streams (the Citations chunk comes before the first token).
  await page.evaluate(() => {
    window.__chipsWhileStreaming = false;
    new MutationObserver(() => {
      if (document.querySelector('[data-testid="assistant-streaming"] [data-testid="citation"]')) window.__chipsWhileStreaming = true;
    }).observe(document.body, { subtree: true, childList: true });
  });
  const before = await replies(page).count();
  await send(page, "Who built the Bell Rock lighthouse?");
  await message(page, "Who built the Bell Rock").waitFor();
  await waitStoredReply(page, before);
  assert.ok(await page.evaluate(() => window.__chipsWhileStreaming), "the citations did not show while the reply streamed");

  const answer = replies(page).last();
  const chip = answer.getByTestId("citation").first();
  await chip.waitFor();
  assert.equal(await chip.getAttribute("data-number"), "1");
  assert.match((await chip.textContent()) ?? "", /\[1\]\s*The Bell Rock Lighthouse/);
  assert.equal(await answer.getByTestId("citation-passage").count(), 0, "passages stay closed until a chip is clicked");
  await shot(page, "61-grounded-reply-with-citations");

  await chip.click();
  const passage = answer.getByTestId("citation-passage").first();
  await passage.waitFor();
  assert.match((await passage.getByTestId("citation-source").textContent()) ?? "", new RegExp(`\\[1\\] ${COLLECTION} › The Bell Rock Lighthouse.*score 0\\.\\d\\d`));
  assert.match((await passage.getByTestId("citation-text").textContent()) ?? "", /Robert Stevenson/);
  assert.equal(await chip.getAttribute("aria-expanded"), "true");
  await shot(page, "62-grounded-citation-opened");
  await chip.click();
  await passage.waitFor({ state: "detached" });

  // The stored message carries its citations: a reload (another device, in effect) shows them.
  await page.reload();
  await page.locator('[data-testid="conversation"][data-title="Assistant"]').click();
  const reloaded = page.locator(".msg.assistant:not(.streaming)").filter({ has: page.getByTestId("citation") }).last();
  await reloaded.waitFor({ timeout: 30_000 });
  assert.match((await reloaded.getByTestId("citation").first().textContent()) ?? "", /The Bell Rock Lighthouse/);
  await reloaded.getByTestId("citation").first().click();
  await reloaded.getByTestId("citation-text").filter({ hasText: "Robert Stevenson" }).waitFor();
  assert.equal(await page.locator(`[data-testid="collection-choice"][data-name="${COLLECTION}"]`).isChecked(), true, "the pick survives a reload");
  await shot(page, "63-grounded-citations-after-reload");
});

test("a question the documents do not cover gets a normal reply without citations", async () => {
  const page = eve.page;
  const before = await replies(page).count();
  await send(page, "What is the best recipe for chocolate cake?");
  await message(page, "chocolate cake").waitFor();
  await waitStoredReply(page, before);
  const answer = replies(page).last();
  assert.match((await answer.getByTestId("message-text").textContent()) ?? "", /nothing relevant/i);
  assert.equal(await answer.getByTestId("citations").count(), 0, "a reply with nothing relevant shows no citations");
  await shot(page, "64-grounded-nothing-relevant");
});
