// Two people chatting in real Chromium through the gateway: both ways, receipts, typing,
// presence, a network drop and the missed messages, a second tab kept in sync, and the
// errors a person can cause. Steps run in order and share the two people.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import {
  PASSWORD,
  launch,
  message,
  openChat,
  openTab,
  person,
  register,
  send,
  shot,
  startChat,
  uniqueName,
  userId,
  waitConnected,
} from "./harness.mjs";

describe("two people chat in the browser", () => {
  let browser;
  let ann;
  let bob;
  const annName = uniqueName("ann");
  const bobName = uniqueName("bob");

  before(async () => {
    browser = await launch();
    ann = await person(browser, "ann");
    bob = await person(browser, "bob");
  });

  after(async () => {
    await browser?.close();
  });

  test("registering, and the errors a person can cause there", async () => {
    await register(ann.page, annName);
    await register(bob.page, bobName);
    await shot(ann.page, "01-ann-registered");
    // The sidebar names the person; the account's UUID is nowhere on the page.
    assert.equal(((await ann.page.getByTestId("me").textContent()) ?? "").trim(), annName);
    const id = await userId(ann.page);
    assert.match(id, /^[0-9a-f-]{36}$/);
    assert.ok(!((await ann.page.locator("body").innerText()) ?? "").includes(id), "the user id is shown");

    const other = await person(browser, "stranger");
    try {
      await other.page.getByTestId("username").fill(annName);
      await other.page.getByTestId("password").fill(PASSWORD);
      await other.page.getByTestId("register").click();
      await other.page.getByTestId("login-error").filter({ hasText: "username is taken" }).waitFor();
      await shot(other.page, "02-username-taken");

      await other.page.getByTestId("password").fill("not the password");
      await other.page.getByTestId("login").click();
      await other.page.getByTestId("login-error").filter({ hasText: "Wrong username or password" }).waitFor();
      await shot(other.page, "03-wrong-password");

      // The right password logs this browser in as a new device of ann's.
      await other.page.getByTestId("password").fill(PASSWORD);
      await other.page.getByTestId("login").click();
      await other.page.getByTestId("me").filter({ hasText: annName }).waitFor();
      await waitConnected(other.page);
    } finally {
      await other.context.close();
    }
  });

  test("an unknown username is named as such", async () => {
    await ann.page.getByTestId("new-chat-username").fill(uniqueName("nobody"));
    await ann.page.getByTestId("new-chat").click();
    const error = ann.page.getByTestId("error");
    await error.filter({ hasText: /no user named|cannot look up usernames/ }).waitFor();
    await shot(ann.page, "04-unknown-user");
  });

  test("ann starts a chat by username and they talk both ways, with ticks, typing and presence", async () => {
    await startChat(ann.page, bobName);
    await ann.page.getByTestId("presence").filter({ hasText: "online" }).waitFor({ timeout: 15_000 });
    await send(ann.page, "hi bob, it is ann");
    const sent = message(ann.page, "hi bob, it is ann");
    await sent.waitFor();
    // Bob's device is connected: delivered comes back without bob opening the chat.
    await ann.page.locator('[data-testid="message"][data-state="delivered"]').filter({ hasText: "hi bob" }).waitFor();
    await shot(ann.page, "05-ann-sent-delivered");

    const row = bob.page.locator(`[data-testid="conversation"][data-title="${annName}"]`);
    await row.waitFor();
    assert.equal((await row.getByTestId("unread").textContent()).trim(), "1");
    assert.match(await row.getByTestId("preview").textContent(), /hi bob, it is ann/);
    await shot(bob.page, "06-bob-unread");

    await openChat(bob.page, annName);
    await message(bob.page, "hi bob, it is ann").waitFor();
    await row.getByTestId("unread").waitFor({ state: "detached" });
    // Bob read it: ann's tick turns to read.
    await ann.page.locator('[data-testid="message"][data-state="read"]').filter({ hasText: "hi bob" }).waitFor();
    await shot(ann.page, "07-ann-read");

    // Bob types: ann sees it.
    await bob.page.getByTestId("composer").pressSequentially("hel", { delay: 30 });
    await ann.page.getByTestId("typing").filter({ hasText: "is typing" }).waitFor();
    await shot(ann.page, "08-ann-sees-typing");
    await bob.page.getByTestId("composer").fill("hello ann, bob here");
    await bob.page.getByTestId("send").click();
    await message(ann.page, "hello ann, bob here").waitFor();
    // The message ends bob's typing indicator at once.
    await ann.page.waitForFunction(() => document.querySelector('[data-testid="typing"]')?.textContent === "");
    await message(bob.page, "hello ann, bob here").and(bob.page.locator('[data-state="read"]')).waitFor();
    await shot(bob.page, "09-bob-reply-read");
  });

  test("a message over 4,000 characters is refused with a clear error, and the text is kept", async () => {
    const long = "x".repeat(4001);
    await send(bob.page, long);
    await bob.page.getByTestId("error").filter({ hasText: "too long" }).waitFor();
    assert.equal((await bob.page.getByTestId("composer").inputValue()).length, 4001);
    await bob.page.getByTestId("composer").fill("");
    await shot(bob.page, "10-too-long");
  });

  test("a rate-limited send says so, with the server's retry-after", async () => {
    // The gateway's answer to a rate-limited gRPC-web call, injected for one call.
    await bob.page.route("**/chatmesh.history.v1.HistoryService/SendMessage", (route) =>
      route.fulfill({
        status: 200,
        headers: {
          "content-type": "application/grpc-web+proto",
          "grpc-status": "8",
          "grpc-message": "rate limited",
          "retry-after-ms": "3000",
        },
        body: "",
      }),
    );
    try {
      await send(bob.page, "one too many");
      await bob.page.getByTestId("error").filter({ hasText: "sending messages too fast. Try again in 3 s" }).waitFor();
      await shot(bob.page, "10b-rate-limited");
      assert.equal(await bob.page.getByTestId("composer").inputValue(), "one too many");
    } finally {
      await bob.page.unroute("**/chatmesh.history.v1.HistoryService/SendMessage");
      await bob.page.getByTestId("composer").fill("");
    }
  });

  test("bob goes offline, misses messages, and sees them when he is back", async () => {
    await bob.context.setOffline(true);
    await bob.page.locator('[data-testid="connection-state"][data-state="offline"]').waitFor();
    // Ann sees bob go offline (his only stream ended), with a last-seen time.
    await ann.page.getByTestId("presence").filter({ hasText: /last seen|offline/ }).waitFor({ timeout: 30_000 });
    await shot(ann.page, "11-ann-sees-bob-offline");
    await send(ann.page, "missed one");
    await send(ann.page, "missed two");
    await ann.page.locator('[data-testid="message"][data-state="sent"]').filter({ hasText: "missed two" }).waitFor();
    await shot(bob.page, "12-bob-offline");
    assert.equal(await message(bob.page, "missed one").count(), 0);

    await bob.context.setOffline(false);
    await waitConnected(bob.page);
    await message(bob.page, "missed one").waitFor();
    await message(bob.page, "missed two").waitFor();
    await shot(bob.page, "13-bob-back-with-missed-messages");
    // Both arrived once, in order.
    const texts = await bob.page.getByTestId("message-text").allTextContents();
    const one = texts.indexOf("missed one");
    assert.ok(one >= 0 && texts[one + 1] === "missed two", texts.join(" | "));
    assert.equal(texts.filter((t) => t === "missed one").length, 1);
    await ann.page.locator('[data-testid="message"][data-state="read"]').filter({ hasText: "missed two" }).waitFor();
    await ann.page.getByTestId("presence").filter({ hasText: "online" }).waitFor({ timeout: 30_000 });
  });

  test("a second tab of ann shows the same chat and stays in sync both ways", async () => {
    const tab = await openTab(ann.context, "ann-tab2");
    try {
      await waitConnected(tab);
      await openChat(tab, bobName);
      await message(tab, "hello ann, bob here").waitFor();
      await send(bob.page, "to both of ann's tabs");
      await message(tab, "to both of ann's tabs").waitFor();
      await message(ann.page, "to both of ann's tabs").waitFor();
      await send(tab, "sent from ann's second tab");
      await message(ann.page, "sent from ann's second tab").waitFor();
      await message(bob.page, "sent from ann's second tab").waitFor();
      await shot(tab, "14-ann-second-tab");
      await shot(ann.page, "15-ann-first-tab");
      const first = await ann.page.getByTestId("message-text").allTextContents();
      const second = await tab.getByTestId("message-text").allTextContents();
      assert.deepEqual(second.slice(-3), first.slice(-3));
    } finally {
      await tab.close();
    }
  });

  test("bob's tokens are refreshed before they expire, and the chat goes on", async () => {
    const auth = () => bob.page.evaluate(() => JSON.parse(localStorage.getItem("chatmesh.auth") ?? "null"));
    const before = await auth();
    // Pretend the access token expires in 61 s: the client refreshes a minute ahead.
    await bob.page.evaluate(() => {
      const a = JSON.parse(localStorage.getItem("chatmesh.auth"));
      a.accessExpiresAt = Date.now() + 61_000;
      localStorage.setItem("chatmesh.auth", JSON.stringify(a));
    });
    await bob.page.reload();
    await waitConnected(bob.page);
    await bob.page.waitForFunction(
      (old) => JSON.parse(localStorage.getItem("chatmesh.auth") ?? "{}").refreshToken !== old,
      before.refreshToken,
      { timeout: 20_000 },
    );
    const after = await auth();
    assert.notEqual(after.accessToken, before.accessToken);
    assert.ok(after.accessExpiresAt - Date.now() > 5 * 60_000, "the new access token should live minutes");
    await openChat(bob.page, annName);
    await send(bob.page, "still here after a token refresh");
    await message(ann.page, "still here after a token refresh").waitFor();
    await shot(bob.page, "16-bob-after-refresh");
  });

  test("bob scrolls back through the history page by page", async () => {
    for (let i = 1; i <= 35; i += 1) await send(ann.page, `backlog ${i}.`);
    await message(bob.page, "backlog 35.").waitFor();
    await bob.page.reload(); // a fresh load shows only the newest page
    await waitConnected(bob.page);
    await openChat(bob.page, annName);
    await message(bob.page, "backlog 35.").waitFor();
    assert.equal(await message(bob.page, "hi bob, it is ann").count(), 0);
    await bob.page.getByTestId("load-older").waitFor();
    await shot(bob.page, "17-bob-newest-page");
    for (let i = 0; i < 10 && (await message(bob.page, "hi bob, it is ann").count()) === 0; i += 1) {
      await bob.page.getByTestId("messages").evaluate((el) => {
        el.scrollTop = 0;
      });
      await bob.page.waitForTimeout(400);
    }
    await message(bob.page, "hi bob, it is ann").waitFor({ timeout: 5_000 });
    await shot(bob.page, "18-bob-scrolled-to-the-start");
    const sequences = (await bob.page.getByTestId("message").evaluateAll((els) => els.map((e) => e.dataset.sequence)))
      .map(Number)
      .filter((n) => n > 0);
    assert.deepEqual(sequences, Array.from({ length: sequences.length }, (_, i) => i + 1), "gapless, in order, once");
    await bob.page.getByTestId("load-older").waitFor({ state: "detached" });
  });
});
