// Operations in real Chromium: the live charts are drawn and move while an ingest job runs
// (the INGEST work queue mesh-wide from GetQueueStats: chunks waiting and in flight, jobs,
// workers, points/s; the user's own jobs and passages still to write), next to the forms
// consumers' backlog and rate.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { launch, nav, person, recordAttribute, register, shot, uniqueName } from "./harness.mjs";

let browser;
let ops;

before(async () => {
  browser = await launch();
  ops = await person(browser, "ops");
  await register(ops.page, uniqueName("ops"));
});

after(async () => {
  await browser?.close();
});

/** The pixels of a chart's canvas, as a data URL. */
function canvasOf(page, testid) {
  return page.evaluate((id) => document.querySelector(`[data-testid="${id}"] canvas`)?.toDataURL() ?? "", testid);
}

function latest(page, testid, series) {
  return page
    .locator(`[data-testid="${testid}-latest"] [data-series="${series}"]`)
    .getAttribute("data-value")
    .then((v) => (v === "" || v === null ? null : Number(v)));
}

test("the operations charts are drawn and move while an ingest job runs", async () => {
  const page = ops.page;
  await nav(page, "documents");
  await page.getByTestId("new-collection-name").fill("ops");
  await page.getByTestId("create-collection").click();
  await page.locator('[data-testid="collection-view"][data-name="ops"]').waitFor();
  // 640 short documents, ten batches of 64 (a few in flight at once): long enough to watch
  // the rate between batches, short enough for a test on a small CPU model.
  const lines = Array.from({ length: 640 }, (_, i) => JSON.stringify({ text: `Log entry ${i}: the tide was high at dawn.` }));
  await page.getByTestId("upload-input").setInputFiles({ name: "log.jsonl", mimeType: "application/x-ndjson", buffer: Buffer.from(lines.join("\n")) });
  await page.locator('[data-testid="upload"][data-file="log.jsonl"]').waitFor();

  // Every value the work queue's numbers take, from the first refresh on (the job is short).
  await recordAttribute(page, '[data-testid="chart-queue-backlog-latest"] [data-series]', "data-value", "__queueChunks");
  await recordAttribute(page, '[data-testid="chart-queue-rate-latest"] [data-series="all users"]', "data-value", "__queueRate");
  await nav(page, "operations");
  await page.getByTestId("operations").waitFor();
  const charts = [
    "chart-consumer-backlog",
    "chart-consumer-rate",
    "chart-queue-backlog",
    "chart-queue-jobs",
    "chart-queue-rate",
    "chart-jobs-in-flight",
    "chart-ingest-backlog",
  ];
  for (const id of charts) {
    await page.locator(`[data-testid="${id}"] canvas`).waitFor();
  }
  // The forms consumers are plotted by name.
  for (const consumer of ["store", "sheets", "screen"]) {
    await page.locator(`[data-testid="chart-consumer-backlog-latest"] [data-series="${consumer}"]`).waitFor({ timeout: 20_000 });
    await page.locator(`[data-testid="consumer-row"][data-consumer="${consumer}"]`).waitFor();
  }
  await page.waitForFunction(
    () => Number(document.querySelector('[data-testid="chart-jobs-in-flight-latest"] [data-series="jobs"]')?.getAttribute("data-value")) >= 1,
    undefined,
    { timeout: 30_000 },
  );
  const waitingAtStart = await latest(page, "chart-ingest-backlog", "waiting");
  // The work queue, mesh-wide: the job is counted (and as this user's), a worker serves it.
  await page.waitForFunction(
    () => {
      const v = (s) => Number(document.querySelector(`[data-testid="chart-queue-jobs-latest"] [data-series="${s}"]`)?.getAttribute("data-value"));
      return v("jobs") >= 1 && v("yours") >= 1 && v("workers") >= 1;
    },
    undefined,
    { timeout: 30_000 },
  );
  const before = {
    jobs: await canvasOf(page, "chart-jobs-in-flight"),
    backlog: await canvasOf(page, "chart-ingest-backlog"),
    queue: await canvasOf(page, "chart-queue-jobs"),
  };
  const pointsBefore = Number(await page.getByTestId("chart-ingest-backlog").getAttribute("data-points"));
  await shot(page, "50-operations-job-running");

  // A few refreshes later the lines have moved: more samples, other pixels.
  await page.waitForFunction(
    (n) => Number(document.querySelector('[data-testid="chart-ingest-backlog"]')?.getAttribute("data-points")) >= n + 3,
    pointsBefore,
    { timeout: 30_000 },
  );
  assert.notEqual(await canvasOf(page, "chart-jobs-in-flight"), before.jobs, "the jobs chart did not move");
  assert.notEqual(await canvasOf(page, "chart-ingest-backlog"), before.backlog, "the backlog chart did not move");
  assert.notEqual(await canvasOf(page, "chart-queue-jobs"), before.queue, "the work queue's jobs chart did not move");

  // Then the passages waiting go down as batches land, to none when the job ends.
  const waiting = [waitingAtStart];
  let shotTaken = false;
  const deadline = Date.now() + 300_000;
  while (Date.now() < deadline) {
    const w = await latest(page, "chart-ingest-backlog", "waiting");
    if (w !== waiting[waiting.length - 1]) waiting.push(w);
    const jobs = await latest(page, "chart-jobs-in-flight", "jobs");
    if (!shotTaken && w !== null && w < waitingAtStart && jobs >= 1) {
      await shot(page, "51-operations-charts-moving");
      shotTaken = true;
    }
    if (jobs === 0) break;
    await page.waitForTimeout(500);
  }
  if (!shotTaken) await shot(page, "51-operations-charts-moving");
  assert.equal(await latest(page, "chart-jobs-in-flight", "jobs"), 0, "the job did not end in five minutes");
  assert.ok(waitingAtStart > 0, `passages waiting while it ran: ${waitingAtStart}`);
  assert.equal(waiting[waiting.length - 1], 0, `waiting went ${waiting}`);
  assert.deepEqual([...waiting].sort((x, y) => y - x), waiting, `the backlog only goes down: ${waiting}`);
  // [waiting, in flight, redelivered] values seen: chunks were queued or worked on, then none.
  const [chunksWaiting, chunksInFlight] = (await page.evaluate(() => window.__queueChunks)).map((vs) => vs.map(Number));
  const chunksSeen = Math.max(...chunksWaiting, ...chunksInFlight);
  assert.ok(chunksSeen >= 1, `the work queue never showed a chunk waiting or in flight: ${chunksWaiting} / ${chunksInFlight}`);
  const rates = (await page.evaluate(() => window.__queueRate))[0].map(Number);
  assert.ok(Math.max(...rates) > 0, `the work queue's points per second stayed 0 while the job ran: ${rates}`);
  // Once the job is done, the queue's chart says so too (this user's share at least: the
  // mesh is shared with the other scenarios).
  await page.waitForFunction(
    () => Number(document.querySelector('[data-testid="chart-queue-jobs-latest"] [data-series="yours"]')?.getAttribute("data-value")) === 0,
    undefined,
    { timeout: 15_000 },
  );
  await shot(page, "52-operations-job-done");
});
