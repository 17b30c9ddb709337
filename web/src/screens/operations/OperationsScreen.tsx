// Operations: the mesh's queues as small live charts (uPlot), read every few seconds.
//
// - Forms consumers (ConsumerStats, mesh-wide): each consumer's backlog (not yet delivered
//   + delivered and not yet acknowledged) and its rate (acknowledged per minute), plus its
//   dead letters in the table.
// - Ingest work queue (GetQueueStats, mesh-wide: counts only, what any signed-in user may
//   see): chunks waiting for a worker, in flight, redelivered; jobs in flight (all users and
//   the caller's own), workers seen, points written per second.
// - Ingest, the signed-in user's own jobs (ListJobs): jobs in flight and the passages they
//   still have to write.

import { useState } from "preact/hooks";
import { IngestService, JobState, type GetQueueStatsResponse } from "@chatmesh/sdk/chatmesh/ingest/v1/ingest_pb.js";
import { FormsService, type ConsumerStatistics } from "@chatmesh/sdk/chatmesh/forms/v1/forms_pb.js";
import { type Api, describeError } from "../../api.js";
import { ErrorLine, useApi, usePoll } from "../../ui.js";
import { LiveChart, type Series } from "./LiveChart.js";

export const REFRESH_MS = 2_000;
const WINDOW = 90; // samples kept: three minutes at 2 s

interface Sample {
  t: number;
  consumers: Map<string, ConsumerStatistics>;
  jobsInFlight: number;
  pointsWaiting: number;
  pointsPerSecond: number;
  /** The INGEST work queue, mesh-wide; null when GetQueueStats failed this round. */
  queue: GetQueueStatsResponse | null;
}

const COLORS = ["#2d6cdf", "#d9480f", "#2b8a3e", "#8a5cf5", "#c2255c", "#0b7285"];

export function OperationsScreen() {
  const api = useApi();
  const [samples, setSamples] = useState<Sample[]>([]);
  const [error, setError] = useState("");
  const [queueError, setQueueError] = useState("");
  usePoll(async () => {
    try {
      const [stats, jobs, queue] = await Promise.all([
        api.call(() => formsClient(api).consumerStats({})),
        api.call(() => ingestClient(api).listJobs({ page: { pageSize: 100 } })),
        // The queue's chart gaps (rather than the whole screen failing) when it does not answer.
        api.call(() => ingestClient(api).getQueueStats({})).then(
          (q) => {
            setQueueError("");
            return q;
          },
          (e: unknown) => {
            setQueueError(`Ingest work queue: ${describeError("load", e)}`);
            return null;
          },
        ),
      ]);
      let inFlight = 0;
      let waiting = 0;
      let rate = 0;
      for (const j of jobs.jobs) {
        const p = j.progress;
        if (!p || (p.state !== JobState.QUEUED && p.state !== JobState.RUNNING)) continue;
        inFlight += 1;
        const total = Number(p.pointsTotal);
        waiting += Math.max(0, total - Number(p.pointsDone) - Number(p.pointsFailed));
        rate += p.pointsPerSecond;
      }
      const sample: Sample = {
        t: Date.now() / 1000,
        consumers: new Map(stats.consumers.map((c) => [c.consumer, c])),
        jobsInFlight: inFlight,
        pointsWaiting: waiting,
        pointsPerSecond: rate,
        queue,
      };
      setSamples((s) => [...s.slice(-(WINDOW - 1)), sample]);
      setError("");
    } catch (e) {
      setError(describeError("load", e));
    }
  }, REFRESH_MS);

  const names = [...new Set(samples.flatMap((s) => [...s.consumers.keys()]))].sort();
  const times = samples.map((s) => s.t);
  const perConsumer = (pick: (c: ConsumerStatistics) => number): Series[] =>
    names.map((n, i) => ({
      label: n,
      color: COLORS[i % COLORS.length],
      values: samples.map((s) => {
        const c = s.consumers.get(n);
        return c ? pick(c) : null;
      }),
    }));
  const queueSeries = (label: string, color: string, pick: (q: GetQueueStatsResponse) => number): Series => ({
    label,
    color,
    values: samples.map((s) => (s.queue ? pick(s.queue) : null)),
  });
  const last = samples[samples.length - 1];
  const q = last?.queue;
  return (
    <div class="operations" data-testid="operations" data-samples={samples.length}>
      <ErrorLine text={error} />
      <ErrorLine text={queueError} />
      <div class="charts">
        <LiveChart
          title="Forms: backlog per consumer (submissions)"
          testid="chart-consumer-backlog"
          times={times}
          series={perConsumer((c) => Number(c.pending + c.ackPending))}
        />
        <LiveChart
          title="Forms: processed per minute, per consumer"
          testid="chart-consumer-rate"
          times={times}
          series={perConsumer((c) => c.processedPerMinute)}
        />
        <LiveChart
          title="Ingest work queue: chunks (all users)"
          testid="chart-queue-backlog"
          times={times}
          series={[
            queueSeries("waiting", COLORS[1], (x) => Number(x.pendingItems)),
            queueSeries("in flight", COLORS[0], (x) => Number(x.inFlightItems)),
            queueSeries("redelivered", COLORS[4], (x) => Number(x.redeliveredItems)),
          ]}
        />
        <LiveChart
          title="Ingest: jobs in flight and workers (all users)"
          testid="chart-queue-jobs"
          times={times}
          series={[
            queueSeries("jobs", COLORS[3], (x) => x.jobsInFlight),
            queueSeries("yours", COLORS[2], (x) => x.myJobsInFlight),
            queueSeries("workers", COLORS[5], (x) => x.workersSeen),
          ]}
        />
        <LiveChart
          title="Ingest: points written per second"
          testid="chart-queue-rate"
          times={times}
          series={[
            queueSeries("all users", COLORS[0], (x) => x.pointsPerSecond),
            queueSeries("yours", COLORS[2], (x) => x.myPointsPerSecond),
          ]}
        />
        <LiveChart
          title="Ingest: your jobs in flight"
          testid="chart-jobs-in-flight"
          times={times}
          series={[{ label: "jobs", color: COLORS[3], values: samples.map((s) => s.jobsInFlight) }]}
        />
        <LiveChart
          title="Ingest: passages your jobs still have to write"
          testid="chart-ingest-backlog"
          times={times}
          series={[
            { label: "waiting", color: COLORS[1], values: samples.map((s) => s.pointsWaiting) },
            { label: "per second", color: COLORS[2], values: samples.map((s) => s.pointsPerSecond) },
          ]}
        />
      </div>
      <table class="table" data-testid="consumer-table">
        <thead>
          <tr>
            <th>Consumer</th>
            <th>Backlog</th>
            <th>In flight</th>
            <th>Redelivered</th>
            <th>Dead letters</th>
            <th>Per minute</th>
            <th>Oldest waiting</th>
          </tr>
        </thead>
        <tbody>
          {names.map((n) => {
            const c = last?.consumers.get(n);
            if (!c) return null;
            return (
              <tr data-testid="consumer-row" data-consumer={n}>
                <td>
                  {n}
                  {c.required ? "" : " (optional)"}
                </td>
                <td>{String(c.pending)}</td>
                <td>{String(c.ackPending)}</td>
                <td>{String(c.redelivered)}</td>
                <td>{String(c.deadLettered)}</td>
                <td>{c.processedPerMinute.toFixed(1)}</td>
                <td>{c.oldestUnprocessedAgeMs ? `${(Number(c.oldestUnprocessedAgeMs) / 1000).toFixed(1)} s` : "—"}</td>
              </tr>
            );
          })}
        </tbody>
      </table>
      <p class="muted" data-testid="queue-now">
        {q
          ? `Ingest work queue: ${q.pendingItems} chunks waiting, ${q.inFlightItems} in flight, ${q.redeliveredItems} redelivered; ` +
            `${q.jobsInFlight} jobs in flight (${q.myJobsInFlight} yours), ${q.workersSeen} workers, ${q.pointsPerSecond.toFixed(1)} points/s.`
          : "Ingest work queue: reading…"}
      </p>
      <p class="muted" data-testid="jobs-now">
        {last ? `${last.jobsInFlight} of your ingest jobs in flight, ${last.pointsWaiting} passages to go.` : "Reading…"}
      </p>
    </div>
  );
}

function ingestClient(api: Api) {
  return api.client(IngestService);
}

function formsClient(api: Api) {
  return api.client(FormsService);
}
