// Operations: the mesh's queues as small live charts (uPlot), read every few seconds.
//
// - Forms consumers (ConsumerStats, mesh-wide): each consumer's backlog (not yet delivered
//   + delivered and not yet acknowledged) and its rate (acknowledged per minute), plus its
//   dead letters in the table.
// - Ingest: jobs in flight and the points they still have to write. The contracts have no
//   RPC for the INGEST work queue's own counters (those are only on the ingest service's
//   /metrics), so this chart is the signed-in user's jobs (ListJobs): what the user can see.

import { useState } from "preact/hooks";
import { IngestService, JobState } from "@chatmesh/sdk/chatmesh/ingest/v1/ingest_pb.js";
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
}

const COLORS = ["#2d6cdf", "#d9480f", "#2b8a3e", "#8a5cf5", "#c2255c", "#0b7285"];

export function OperationsScreen() {
  const api = useApi();
  const [samples, setSamples] = useState<Sample[]>([]);
  const [error, setError] = useState("");
  usePoll(async () => {
    try {
      const [stats, jobs] = await Promise.all([
        api.call(() => formsClient(api).consumerStats({})),
        api.call(() => ingestClient(api).listJobs({ page: { pageSize: 100 } })),
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
  const last = samples[samples.length - 1];
  return (
    <div class="operations" data-testid="operations" data-samples={samples.length}>
      <ErrorLine text={error} />
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
