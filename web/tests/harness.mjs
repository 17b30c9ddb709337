// Shared pieces of the browser tests: Debian's Chromium driven by playwright-core (never a
// downloaded browser), unique users, screenshots under build/test-output/web/.

import { mkdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
export const GATEWAY_URL = process.env.CHATMESH_GATEWAY_URL ?? "";
export const CHROMIUM = process.env.CHATMESH_CHROMIUM ?? "/usr/bin/chromium";
export const SHOTS = resolve(process.env.CHATMESH_SCREENSHOTS ?? join(here, "..", "..", "build", "test-output", "web"));
export const PASSWORD = "correct horse battery";

if (!GATEWAY_URL) throw new Error("set CHATMESH_GATEWAY_URL to a running mesh's gateway (http://127.0.0.1:PORT)");
mkdirSync(SHOTS, { recursive: true });

const run = `${Date.now().toString(36)}${Math.floor(Math.random() * 1e4).toString(36)}`;
let counter = 0;

/** A username no other test or run has used: 3-32 chars, [a-z][a-z0-9_.-]*. */
export function uniqueName(prefix) {
  counter += 1;
  return `${prefix}_${run}${counter}`.slice(0, 32);
}

/** Chromium with a fresh profile (playwright's launch makes a new temporary user data dir). */
export async function launch() {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
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
}

/**
 * A person: a browser context of their own (own localStorage, so own device), and its first tab.
 */
export async function person(browser, name) {
  const context = await browser.newContext({ viewport: { width: 1000, height: 700 } });
  const page = await openTab(context, name);
  return { name, context, page };
}

/** A new tab of a person (same context: same localStorage, same device). */
export async function openTab(context, name) {
  const page = await context.newPage();
  page.on("pageerror", (e) => console.error(`[${name}] page error: ${e.message}`));
  await page.goto(GATEWAY_URL);
  return page;
}

export async function shot(page, name) {
  await page.screenshot({ path: join(SHOTS, `${name}.png`) });
}

export async function register(page, username) {
  await page.getByTestId("username").fill(username);
  await page.getByTestId("password").fill(PASSWORD);
  await page.getByTestId("register").click();
  await page.getByTestId("me").waitFor();
  await waitConnected(page);
}

export async function waitConnected(page, timeout = 30_000) {
  await page.locator('[data-testid="connection-state"][data-state="connected"]').waitFor({ timeout });
}

/** The signed-in account's id (kept on the name as data, never shown). */
export async function userId(page) {
  return (await page.getByTestId("me").getAttribute("data-user-id")).trim();
}

/** Goes to a screen from the top navigation ("documents", "forms", "operations", "chats"). */
export async function nav(page, screen) {
  await page.getByTestId(`nav-${screen}`).click();
}

/**
 * Records every value an attribute of the elements matching `selector` takes, from now on,
 * in window[key] (a list per element index).
 */
export async function recordAttribute(page, selector, attribute, key) {
  await page.evaluate(
    ({ selector, attribute, key }) => {
      window[key] = [];
      const look = () => {
        document.querySelectorAll(selector).forEach((el, i) => {
          const seen = (window[key][i] ??= []);
          const v = el.getAttribute(attribute);
          if (v !== null && seen[seen.length - 1] !== v) seen.push(v);
        });
      };
      new MutationObserver(look).observe(document.body, { subtree: true, childList: true, attributes: true });
      look();
    },
    { selector, attribute, key },
  );
}

/** Opens (or creates) the direct chat with `peer` from the sidebar's new-chat box. */
export async function startChat(page, peerUsername) {
  await page.getByTestId("new-chat-username").fill(peerUsername);
  await page.getByTestId("new-chat").click();
  await page.getByTestId("chat-title").waitFor();
}

export async function openChat(page, title) {
  await page.locator(`[data-testid="conversation"][data-title="${title}"]`).click();
  await page.getByTestId("chat-title").filter({ hasText: title }).waitFor();
}

export async function send(page, text) {
  await page.getByTestId("composer").fill(text);
  await page.getByTestId("send").click();
}

export function message(page, text) {
  return page.getByTestId("message").filter({ hasText: text });
}
