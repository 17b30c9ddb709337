// Forms in real Chromium: the owner builds a form; an anonymous visitor (a browser context
// with no account) opens its public link, gets each broken value named in words under its
// field, then succeeds; the owner sees the submission with every consumer's status turn
// processed. Then a consumer really fails (the sheets consumer's folder for one form is
// made unwritable: a plain file where its directory should be), the submission becomes a
// dead letter, the folder is fixed, and Redrive on the page gets it processed.

import assert from "node:assert/strict";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { launch, nav, person, recordAttribute, register, shot, uniqueName } from "./harness.mjs";

const STATE_DIR = process.env.CHATMESH_MESH_STATE_DIR ?? "";
// The mesh must let the sheets consumer give up after a few quick tries (its own default,
// ten tries over about seven minutes, is too long for a test): tests/conftest_mesh.py
// starts the mesh with CHATMESH_FORMS_CONSUMERS='{"sheets": {"max_deliveries": 2}}'.
const overrides = JSON.parse(process.env.CHATMESH_FORMS_CONSUMERS || "{}");
const SHEETS_GIVE_UP_FAST = (overrides.sheets?.max_deliveries ?? 10) <= 3;

async function buildForm(page, { name, title, fields }) {
  await nav(page, "forms");
  await page.getByTestId("new-form").click();
  const builder = page.getByTestId("form-builder");
  await builder.waitFor();
  await page.getByTestId("form-name").fill(name);
  await page.getByTestId("form-title-input").fill(title);
  for (const [i, f] of fields.entries()) {
    if (i > 0) await page.getByTestId("add-field").click();
    const row = page.locator(`[data-testid="builder-field"][data-index="${i}"]`);
    await row.getByTestId("field-key").fill(f.key);
    await row.getByTestId("field-label").fill(f.label);
    await row.getByTestId("field-type").selectOption({ label: f.type });
    if (f.required) await row.getByTestId("field-required").check();
    if (f.maxLength) await row.getByTestId("field-max-length").fill(String(f.maxLength));
    if (f.pattern) await row.getByTestId("field-pattern").fill(f.pattern);
    if (f.minValue !== undefined) await row.getByTestId("field-min-value").fill(String(f.minValue));
    if (f.maxValue !== undefined) await row.getByTestId("field-max-value").fill(String(f.maxValue));
    if (f.choices) await row.getByTestId("field-choices").fill(f.choices.join(", "));
  }
}

async function createForm(page) {
  await page.getByTestId("create-form").click();
  const view = page.getByTestId("form-view");
  await view.waitFor();
  return { formId: await view.getAttribute("data-form-id"), link: await page.getByTestId("public-link").getAttribute("href") };
}

describe("forms in the browser", () => {
  let browser;
  let owner;
  let visitor;
  let contact;

  before(async () => {
    browser = await launch();
    owner = await person(browser, "owner");
    await register(owner.page, uniqueName("own"));
    // No account at all: a fresh context that never logs in.
    const context = await browser.newContext({ viewport: { width: 800, height: 800 } });
    visitor = { context, page: await context.newPage() };
    visitor.page.on("pageerror", (e) => console.error(`[visitor] page error: ${e.message}`));
  });

  after(async () => {
    await browser?.close();
  });

  test("the owner builds a form; a bad limit is named on its field", async () => {
    const page = owner.page;
    await buildForm(page, {
      name: "contact",
      title: "Contact us",
      fields: [
        { key: "name", label: "Your name", type: "Text", required: true, maxLength: 40, pattern: "([a-z" },
        { key: "email", label: "Email", type: "Email", required: true },
        { key: "age", label: "Age", type: "Whole number", minValue: 18, maxValue: 120 },
        { key: "topic", label: "Topic", type: "Choice", required: true, choices: ["billing", "support"] },
      ],
    });
    await shot(page, "40-forms-builder");
    await page.getByTestId("create-form").click();
    const rowError = page.locator('[data-testid="builder-field"][data-index="0"] [data-testid="builder-field-error"]');
    await rowError.filter({ hasText: "pattern" }).waitFor();
    await shot(page, "41-forms-builder-bad-pattern");
    await page.locator('[data-testid="builder-field"][data-index="0"] [data-testid="field-pattern"]').fill("");
    contact = await createForm(page);
    assert.match(contact.link, new RegExp(`/f/${contact.formId}$`));
    await shot(page, "42-forms-created-with-link");
  });

  test("an anonymous visitor gets every broken value named in words, then succeeds", async () => {
    const page = visitor.page;
    await page.goto(contact.link);
    await page.getByTestId("form-title").filter({ hasText: "Contact us" }).waitFor();
    assert.equal(await page.getByTestId("me").count(), 0, "the visitor is not signed in");
    await page.getByTestId("input-email").fill("not an email");
    await page.getByTestId("input-age").fill("12");
    await page.getByTestId("submit-form").click();
    await page.getByTestId("submit-error").filter({ hasText: "correct the fields" }).waitFor();
    const errors = {};
    for (const key of ["name", "email", "age", "topic"]) {
      errors[key] = ((await page.getByTestId(`field-error-${key}`).textContent()) ?? "").trim();
    }
    // Words, not codes: each says what is wrong with that one field.
    assert.match(errors.name, /required/i, errors.name);
    assert.match(errors.email, /email/i, errors.email);
    assert.match(errors.age, /18/, errors.age);
    assert.match(errors.topic, /required/i, errors.topic);
    for (const text of Object.values(errors)) assert.doesNotMatch(text, /values\[|INVALID_ARGUMENT/);
    await shot(page, "43-forms-visitor-field-errors");

    await page.getByTestId("input-name").fill("Vera Visitor");
    await page.getByTestId("input-email").fill("vera@Example.org");
    await page.getByTestId("input-age").fill("33");
    await page.getByTestId("input-topic").selectOption("support");
    await page.getByTestId("submit-form").click();
    await page.getByTestId("submit-success").waitFor();
    await page.getByTestId("submission-state").filter({ hasText: "Processed." }).waitFor({ timeout: 60_000 });
    await shot(page, "44-forms-visitor-success");
  });

  test("the owner sees the submission, every consumer's status, and it turns processed", async () => {
    const page = owner.page;
    await recordAttribute(page, '[data-testid="submission"]', "data-processed", "__processed");
    const row = page.getByTestId("submission").filter({ hasText: "Vera Visitor" });
    await row.waitFor({ timeout: 30_000 });
    await page.locator('[data-testid="submission"][data-processed="true"]').filter({ hasText: "Vera Visitor" }).waitFor({ timeout: 60_000 });
    assert.match((await row.textContent()) ?? "", /vera@example\.org/); // sanitised: the domain lowercased
    for (const consumer of ["store", "sheets", "screen"]) {
      assert.equal(await row.locator(`[data-testid="consumer-status"][data-consumer="${consumer}"]`).getAttribute("data-state"), "done");
    }
    assert.equal(((await row.getByTestId("processed").textContent()) ?? "").trim(), "processed");
    const seen = (await page.evaluate(() => window.__processed))[0] ?? [];
    assert.equal(seen[seen.length - 1], "true", `processed states seen: ${seen}`);
    await shot(page, "45-forms-owner-submission-processed");
  });

  test(
    "a consumer that fails makes a dead letter, and Redrive on the page gets it processed",
    { skip: !STATE_DIR || !SHEETS_GIVE_UP_FAST ? "needs the mesh's state folder and a sheets consumer that gives up after a few tries (tests/web/conftest.py)" : false },
    async () => {
      const page = owner.page;
      await buildForm(page, {
        name: "signup",
        title: "Sign up",
        fields: [{ key: "name", label: "Name", type: "Text", required: true }],
      });
      const signup = await createForm(page);
      // Break the sheets consumer's folder for this form only: a file where it makes a directory.
      const sheets = join(STATE_DIR, "sheets");
      const blocker = join(sheets, signup.formId);
      mkdirSync(sheets, { recursive: true });
      writeFileSync(blocker, "not a directory\n");
      try {
        await visitor.page.goto(signup.link);
        await visitor.page.getByTestId("input-name").fill("Dora Deadletter");
        await visitor.page.getByTestId("submit-form").click();
        await visitor.page.getByTestId("submit-success").waitFor();

        const letter = page.locator('[data-testid="dead-letter"][data-consumer="sheets"]');
        await letter.waitFor({ timeout: 90_000 });
        const row = page.getByTestId("submission").filter({ hasText: "Dora Deadletter" });
        await row.locator('[data-testid="consumer-status"][data-consumer="sheets"][data-state="dead_lettered"]').waitFor({ timeout: 30_000 });
        assert.equal(await row.getAttribute("data-processed"), "false");
        assert.equal(await row.locator('[data-testid="consumer-status"][data-consumer="store"]').getAttribute("data-state"), "done");
        assert.ok(((await letter.textContent()) ?? "").length > 0);
        await shot(page, "46-forms-dead-letter");
      } finally {
        rmSync(blocker, { force: true }); // the folder is fixed
      }
      await page.locator('[data-testid="dead-letter"][data-consumer="sheets"] [data-testid="redrive"]').click();
      await page.getByTestId("redrive-note").filter({ hasText: "Sent back: 1" }).waitFor();
      await page.locator('[data-testid="dead-letter"]').waitFor({ state: "detached", timeout: 30_000 });
      await page
        .locator('[data-testid="submission"][data-processed="true"]')
        .filter({ hasText: "Dora Deadletter" })
        .waitFor({ timeout: 60_000 });
      await shot(page, "47-forms-redriven-processed");
    },
  );
});
