// Documents in real Chromium: a collection created, files uploaded (Markdown, PDF, JSONL)
// with the progress bar fed by WatchJob reaching 100%, a search whose results name their
// source, an upload cancelled mid-way, and a snapshot taken and restored.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { launch, nav, person, recordAttribute, register, shot, uniqueName } from "./harness.mjs";

const MARKDOWN = `# Lighthouses

The Bell Rock lighthouse stands on a reef off the coast of Angus in Scotland. Its keepers
lived in the tower for weeks at a time and trimmed the lamp's wicks every few hours.

# Sourdough

A sourdough starter is a culture of wild yeast and lactic acid bacteria. Feed it flour
and water every day and keep it at room temperature so that the bread rises.

# Volcanoes

Mount Etna on Sicily is one of the most active volcanoes in the world; its eruptions have
been recorded for thousands of years.
`;

/** A one-page PDF whose text is `text` (Helvetica), with a correct cross-reference table. */
export function pdfWith(text) {
  const escaped = text.replace(/[\\()]/g, (c) => `\\${c}`);
  const stream = `BT /F1 12 Tf 40 760 Td (${escaped}) Tj ET`;
  const objects = [
    "<< /Type /Catalog /Pages 2 0 R >>",
    "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
    "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
    `<< /Length ${stream.length} >>\nstream\n${stream}\nendstream`,
    "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
  ];
  let body = "%PDF-1.4\n";
  const offsets = [];
  objects.forEach((o, i) => {
    offsets.push(body.length);
    body += `${i + 1} 0 obj\n${o}\nendobj\n`;
  });
  const xref = body.length;
  body += `xref\n0 ${objects.length + 1}\n0000000000 65535 f \n`;
  for (const off of offsets) body += `${String(off).padStart(10, "0")} 00000 n \n`;
  body += `trailer\n<< /Size ${objects.length + 1} /Root 1 0 R >>\nstartxref\n${xref}\n%%EOF\n`;
  return Buffer.from(body, "latin1");
}

async function upload(page, name, mimeType, buffer) {
  await page.getByTestId("upload-input").setInputFiles({ name, mimeType, buffer });
}

function uploadOf(page, name) {
  return page.locator(`[data-testid="upload"][data-file="${name}"]`).first();
}

async function pointsCount(page, collection) {
  const text = await page.locator(`[data-testid="collection"][data-name="${collection}"] [data-testid="points-count"]`).textContent();
  return Number.parseInt(text ?? "", 10);
}

describe("documents in the browser", () => {
  let browser;
  let dot;
  const collection = "notes";

  before(async () => {
    browser = await launch();
    dot = await person(browser, "dot");
    await register(dot.page, uniqueName("dot"));
  });

  after(async () => {
    await browser?.close();
  });

  test("a collection is created and a Markdown file's progress bar reaches 100%", async () => {
    const page = dot.page;
    await nav(page, "documents");
    await page.getByTestId("new-collection-name").fill("Bad Name!");
    await page.getByTestId("create-collection").click();
    await page.getByTestId("collection-error").filter({ hasText: "lowercase letters" }).waitFor();
    await page.getByTestId("new-collection-name").fill(collection);
    await page.getByTestId("create-collection").click();
    await page.locator(`[data-testid="collection-view"][data-name="${collection}"]`).waitFor();
    await shot(page, "30-documents-collection-created");

    await recordAttribute(page, '[data-testid="upload-progress"]', "data-percent", "__percents");
    await upload(page, "topics.md", "text/markdown", Buffer.from(MARKDOWN));
    const row = uploadOf(page, "topics.md");
    await row.waitFor();
    await shot(page, "31-documents-upload-started");
    await page.locator('[data-testid="upload"][data-file="topics.md"][data-state="succeeded"]').waitFor({ timeout: 180_000 });
    assert.equal(await row.getByTestId("upload-progress").getAttribute("data-percent"), "100");
    assert.match((await row.getByTestId("upload-percent").textContent()) ?? "", /100% · 3 of 3 passages/);
    const seen = (await page.evaluate(() => window.__percents))[0].map(Number);
    assert.deepEqual([...seen].sort((a, b) => a - b), seen, `the bar only grows: ${seen}`);
    assert.equal(seen[seen.length - 1], 100);
    await shot(page, "32-documents-upload-100-percent");
    await page.waitForFunction(
      (name) =>
        Number.parseInt(document.querySelector(`[data-testid="collection"][data-name="${name}"] [data-testid="points-count"]`)?.textContent ?? "", 10) === 3,
      collection,
      { timeout: 15_000 },
    );
  });

  test("a search finds the passage and names its source", async () => {
    const page = dot.page;
    await page.getByTestId("search-input").fill("Who lived in the lighthouse tower and trimmed the lamp?");
    await page.getByTestId("search").click();
    const results = page.getByTestId("search-result");
    await results.first().waitFor({ timeout: 60_000 });
    assert.equal(await results.count(), 3);
    const texts = await results.allTextContents();
    // Whatever the order the embedding model gives, every result says where it came from.
    for (const t of texts) assert.match(t, /topics\.md · “(Lighthouses|Sourdough|Volcanoes)” · passage \d/);
    assert.ok(texts.some((t) => t.includes("Bell Rock")), texts.join("\n"));
    await shot(page, "33-documents-search-results");
  });

  test("a PDF's text and a JSONL file are ingested", async () => {
    const page = dot.page;
    await upload(page, "tea.pdf", "application/pdf", pdfWith("Green tea is grown on the hills of Shizuoka in Japan."));
    await page.locator('[data-testid="upload"][data-file="tea.pdf"][data-state="succeeded"]').waitFor({ timeout: 180_000 });
    const lines = [
      JSON.stringify({ text: "The Danube flows through ten countries.", metadata: { topic: "rivers" } }),
      "this line is not JSON",
      JSON.stringify({ text: "The Nile is among the longest rivers on Earth.", id: 42 }),
    ].join("\n");
    await upload(page, "rivers.jsonl", "application/x-ndjson", Buffer.from(lines));
    const row = uploadOf(page, "rivers.jsonl");
    await row.filter({ hasText: "line 2: not JSON" }).waitFor();
    await page.locator('[data-testid="upload"][data-file="rivers.jsonl"][data-state="succeeded"]').waitFor({ timeout: 180_000 });
    await page.getByTestId("search-input").fill("Shizuoka green tea");
    await page.getByTestId("search").click();
    await page.getByTestId("result-source").filter({ hasText: "tea.pdf · page 1" }).first().waitFor({ timeout: 60_000 });
    await shot(page, "34-documents-pdf-and-jsonl");
  });

  test("a snapshot is taken, and restoring it brings the collection back", async () => {
    const page = dot.page;
    await page.reload();
    await page.locator(`[data-testid="collection-view"][data-name="${collection}"]`).waitFor();
    const before = await pointsCount(page, collection);
    await page.getByTestId("create-snapshot").click();
    await page.getByTestId("snapshot-note").filter({ hasText: `Snapshot taken: ${before} passages` }).waitFor({ timeout: 60_000 });
    await page.locator(`[data-testid="snapshot"][data-points="${before}"]`).waitFor();
    await upload(page, "extra.md", "text/markdown", Buffer.from("# Extra\n\nOne more passage about kites flying over a beach."));
    await page.locator('[data-testid="upload"][data-file="extra.md"][data-state="succeeded"]').waitFor({ timeout: 180_000 });
    await page.waitForFunction(
      ({ name, n }) =>
        Number.parseInt(document.querySelector(`[data-testid="collection"][data-name="${name}"] [data-testid="points-count"]`)?.textContent ?? "", 10) > n,
      { name: collection, n: before },
      { timeout: 15_000 },
    );
    await shot(page, "36-documents-snapshot-listed");
    await page.getByTestId("restore-snapshot").first().click();
    await page.getByTestId("snapshot-note").filter({ hasText: `Restored: ${before} passages` }).waitFor({ timeout: 60_000 });
    await page.waitForFunction(
      ({ name, n }) =>
        Number.parseInt(document.querySelector(`[data-testid="collection"][data-name="${name}"] [data-testid="points-count"]`)?.textContent ?? "", 10) === n,
      { name: collection, n: before },
      { timeout: 15_000 },
    );
    await shot(page, "37-documents-snapshot-restored");
  });
  test("an upload is cancelled mid-way", async () => {
    const page = dot.page;
    // 130 short documents, three batches of 64: Cancel lands while the first are embedded.
    // (Batches already in flight finish; short texts keep that cheap for the next tests.)
    const lines = Array.from({ length: 130 }, (_, i) => JSON.stringify({ text: `Note ${i}: nothing in particular.` }));
    await upload(page, "long.jsonl", "application/x-ndjson", Buffer.from(lines.join("\n")));
    const row = uploadOf(page, "long.jsonl");
    await row.getByTestId("cancel-upload").click();
    await page.locator('[data-testid="upload"][data-file="long.jsonl"][data-state="cancelled"]').waitFor({ timeout: 60_000 });
    assert.equal(await row.getByTestId("cancel-upload").count(), 0);
    const percent = Number(await row.getByTestId("upload-progress").getAttribute("data-percent"));
    assert.ok(percent < 100, `a cancelled upload stops short of 100% (${percent}%)`);
    await shot(page, "35-documents-upload-cancelled");
  });
});
