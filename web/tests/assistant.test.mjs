// A chat with the assistant in real Chromium: the reply streams token by token
// (inference.Reply) and is stored; Stop (inference.Cancel) ends a reply mid-way, and a
// stopped reply is not stored.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { launch, message, openChat, openTab, person, register, send, shot, uniqueName, waitConnected } from "./harness.mjs";

const STREAMING_TEXT = '[data-testid="assistant-streaming"] .text';

let browser;
let cat;

before(async () => {
  browser = await launch();
  cat = await person(browser, "cat");
  await register(cat.page, uniqueName("cat"));
});

after(async () => {
  await browser?.close();
});

/**
 * Counts, from now on, the times a streaming bubble appears while a stored assistant reply
 * with more than `stored` replies already on the page is shown (window.__bubblesAfterStored).
 */
async function recordBubblesAfterStored(page) {
  await page.evaluate(() => {
    const before = document.querySelectorAll(".msg.assistant:not(.streaming)").length;
    window.__bubblesAfterStored = 0;
    let had = false;
    new MutationObserver(() => {
      const stored = document.querySelectorAll(".msg.assistant:not(.streaming)").length > before;
      const bubble = !!document.querySelector('[data-testid="assistant-streaming"]');
      if (stored && bubble && !had) window.__bubblesAfterStored += 1;
      had = stored && bubble;
    }).observe(document.body, { subtree: true, childList: true, characterData: true });
  });
}

/** Records every length the streaming bubble's text takes, from now on. */
async function recordStreamLengths(page) {
  await page.evaluate((selector) => {
    window.__streamLengths = [];
    new MutationObserver(() => {
      const text = document.querySelector(selector)?.textContent ?? "";
      const seen = window.__streamLengths;
      if (text && seen[seen.length - 1] !== text.length) seen.push(text.length);
    }).observe(document.body, { subtree: true, childList: true, characterData: true });
  }, STREAMING_TEXT);
}

test("the assistant's reply streams in token by token and is stored", async () => {
  const page = cat.page;
  await page.getByTestId("assistant").click();
  await page.getByTestId("chat-title").filter({ hasText: "Assistant" }).waitFor();
  await recordStreamLengths(page);
  // A second tab of the same person watches the reply arrive through its own Connect stream.
  const tab = await openTab(cat.context, "cat-tab2");
  await waitConnected(tab);
  await openChat(tab, "Assistant");
  await recordStreamLengths(tab);
  await recordBubblesAfterStored(page);
  await recordBubblesAfterStored(tab);

  await send(page, "Tell me about lighthouses in two sentences.");
  await message(page, "Tell me about lighthouses").waitFor();
  await page.getByTestId("assistant-streaming").waitFor({ timeout: 60_000 });
  await shot(page, "20-assistant-streaming");
  await page.getByTestId("assistant-streaming").waitFor({ state: "detached", timeout: 120_000 });
  const replies = page.locator(".msg.assistant:not(.streaming)");
  await replies.first().waitFor();
  const stored = ((await replies.first().textContent()) ?? "").trim();
  assert.ok(stored.length > 0);
  const lengths = await page.evaluate(() => window.__streamLengths);
  assert.ok(lengths.length >= 3, `the reply should arrive in steps, saw lengths ${lengths}`);
  assert.deepEqual([...lengths].sort((a, b) => a - b), lengths, "the streamed text only grows");
  await shot(page, "21-assistant-reply-stored");
  // The reply's last tokens may come on the Connect stream after the stored message: no
  // bubble (empty or not) opens again under the finished reply.
  await page.waitForTimeout(3_500);
  assert.equal(await page.getByTestId("assistant-streaming").count(), 0, "a bubble was left under the finished reply");
  assert.equal(await page.evaluate(() => window.__bubblesAfterStored), 0, "a bubble showed under the stored reply");

  await message(tab, "Tell me about lighthouses").waitFor();
  await tab.locator(".msg.assistant:not(.streaming)").filter({ hasText: stored.slice(0, 20) }).waitFor();
  await tab.getByTestId("assistant-streaming").waitFor({ state: "detached", timeout: 30_000 });
  await tab.waitForTimeout(3_500);
  assert.equal(await tab.getByTestId("assistant-streaming").count(), 0, "the other tab kept a bubble under the finished reply");
  assert.equal(await tab.evaluate(() => window.__bubblesAfterStored), 0, "the other tab showed a bubble under the stored reply");
  const seenByTab = await tab.evaluate(() => window.__streamLengths);
  assert.ok(seenByTab.length >= 2, `the other tab should see the tokens live, saw lengths ${seenByTab}`);
  await shot(tab, "21b-assistant-reply-in-second-tab");
  await tab.close();
});

test("Stop ends a reply mid-way, and the stopped reply is not stored", async () => {
  const page = cat.page;
  const replies = page.locator(".msg.assistant:not(.streaming)");
  const stop = page.getByTestId("stop");
  // A small model may finish a reply before Stop lands; then it is stored, and we try again.
  const prompts = [
    "Write a long essay about the history of lighthouses, in ten paragraphs.",
    "Count from 1 to 300, one number per line.",
    "List one hundred animals, one per line, each with a sentence about it.",
  ];
  let stopped = false;
  for (const [i, prompt] of prompts.entries()) {
    const before = await replies.count();
    await send(page, prompt);
    await stop.waitFor({ timeout: 60_000 });
    await page.waitForFunction((s) => (document.querySelector(s)?.textContent ?? "").length > 0, STREAMING_TEXT, {
      timeout: 60_000,
    });
    await shot(page, `22-assistant-tokens-before-stop-${i + 1}`);
    // A click event on the button itself: the bubble above it grows with every token.
    await stop.dispatchEvent("click");
    await stop.waitFor({ state: "hidden", timeout: 10_000 });
    await page.waitForFunction(
      () => document.querySelector('[data-testid="assistant-stopped"]') || !document.querySelector('[data-testid="assistant-streaming"]'),
      undefined,
      { timeout: 30_000 },
    );
    if ((await page.getByTestId("assistant-stopped").count()) === 0) continue; // it had finished: stored
    const atStop = (await page.locator(STREAMING_TEXT).textContent()) ?? "";
    await page.waitForTimeout(1_500);
    assert.equal((await page.locator(STREAMING_TEXT).textContent()) ?? "", atStop, "tokens kept coming after Stop");
    assert.equal(await replies.count(), before, "a stopped reply must not be stored");
    await shot(page, "23-assistant-stopped");
    stopped = true;
    break;
  }
  assert.ok(stopped, "every reply finished before Stop could end it");
  // The page still works: the next question gets a whole reply.
  const before = await replies.count();
  await send(page, "Thanks!");
  await page.getByTestId("assistant-streaming").waitFor({ state: "detached", timeout: 120_000 });
  await page.waitForFunction((n) => document.querySelectorAll(".msg.assistant:not(.streaming)").length > n, before, {
    timeout: 30_000,
  });
});
