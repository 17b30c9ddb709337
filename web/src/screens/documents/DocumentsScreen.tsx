// Documents: the signed-in user's collections; creating one; uploading files into it with
// a progress bar fed by WatchJob (and Cancel); searching it, with each result's source;
// and its snapshots: list, create, restore.

import { useEffect, useRef, useState } from "preact/hooks";
import {
  IngestService,
  Distance,
  JobState,
  type Collection,
  type JobProgress,
  type ScoredPoint,
  type Snapshot,
} from "@chatmesh/sdk/chatmesh/ingest/v1/ingest_pb.js";
import { type Api, describeError, errorText } from "../../api.js";
import { ErrorLine, bytes, useApi, usePoll, when } from "../../ui.js";
import { parseFile } from "./files.js";

const NAME = /^[a-z][a-z0-9_-]{0,62}$/;

export function DocumentsScreen() {
  const api = useApi();
  const [collections, setCollections] = useState<Collection[]>([]);
  const [selected, setSelected] = useState<string>("");
  const [error, setError] = useState("");

  const load = async () => {
    try {
      const reply = await api.call(() => ingestClient(api).listCollections({ page: { pageSize: 100 } }));
      setCollections(reply.collections);
      setSelected((s) => s || reply.collections[0]?.name || "");
    } catch (e) {
      setError(describeError("load", e));
    }
  };
  // Point counts change while jobs write: read the list again every few seconds.
  usePoll(load, 5_000);

  const current = collections.find((c) => c.name === selected);
  return (
    <div class="documents">
      <aside class="panel side">
        <h2>Collections</h2>
        <NewCollection
          onCreated={(c) => {
            setCollections((cs) => [...cs.filter((x) => x.name !== c.name), c].sort((a, b) => a.name.localeCompare(b.name)));
            setSelected(c.name);
          }}
        />
        <ul class="list" data-testid="collections">
          {collections.map((c) => (
            <li
              key={c.name}
              class={c.name === selected ? "open" : ""}
              data-testid="collection"
              data-name={c.name}
              onClick={() => setSelected(c.name)}
            >
              <span class="name">{c.name}</span>
              <span class="muted" data-testid="points-count">
                {String(c.pointsCount)} passages
              </span>
            </li>
          ))}
          {collections.length === 0 && <li class="muted">No collections yet.</li>}
        </ul>
        <ErrorLine text={error} />
      </aside>
      {current ? (
        <CollectionView key={current.name} collection={current} reload={load} />
      ) : (
        <section class="panel main-panel muted">Create a collection to upload documents into.</section>
      )}
    </div>
  );
}

function NewCollection({ onCreated }: { onCreated: (c: Collection) => void }) {
  const api = useApi();
  const [name, setName] = useState("");
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);
  const create = async (e: Event) => {
    e.preventDefault();
    const n = name.trim();
    if (!NAME.test(n)) {
      setError("Names are 1 to 63 characters: lowercase letters, digits, '_' and '-', starting with a letter.");
      return;
    }
    setBusy(true);
    setError("");
    try {
      // Documents are embedded with the mesh's default embedding model, at its size.
      const models = await api.call(() => api.inference.listModels({}));
      const model = models.models.find((m) => m.defaultForEmbed) ?? models.models.find((m) => m.canEmbed);
      if (!model) throw new Error("The server has no embedding model.");
      const reply = await api.call(() =>
        ingestClient(api).createCollection({
          name: n,
          vectorSize: model.embeddingDimensions,
          distance: Distance.COSINE,
          embeddingModel: model.name,
        }),
      );
      if (reply.collection) onCreated(reply.collection);
      setName("");
    } catch (err) {
      setError(errorText("collection", err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <form class="row" onSubmit={create}>
      <input
        placeholder="New collection"
        value={name}
        data-testid="new-collection-name"
        onInput={(e) => setName(e.currentTarget.value)}
      />
      <button type="submit" disabled={busy} data-testid="create-collection">
        Create
      </button>
      <ErrorLine text={error} testid="collection-error" />
    </form>
  );
}

interface Upload {
  key: string;
  file: string;
  jobId: string;
  progress: JobProgress | null;
  total: number;
  skipped: string[];
  error: string;
}

const TERMINAL = new Set([JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.COMPLETED_WITH_ERRORS]);
const STATE_WORDS: Record<number, string> = {
  [JobState.QUEUED]: "queued",
  [JobState.RUNNING]: "running",
  [JobState.SUCCEEDED]: "done",
  [JobState.FAILED]: "failed",
  [JobState.CANCELLED]: "cancelled",
  [JobState.COMPLETED_WITH_ERRORS]: "done, some passages skipped",
};

function CollectionView({ collection, reload }: { collection: Collection; reload: () => Promise<void> }) {
  return (
    <section class="panel main-panel" data-testid="collection-view" data-name={collection.name}>
      <h2>{collection.name}</h2>
      <p class="muted">
        {String(collection.pointsCount)} passages · embedded with {collection.embeddingModel || "no model (vectors only)"}
      </p>
      <Uploads collection={collection.name} reload={reload} />
      <Search collection={collection.name} />
      <Snapshots collection={collection.name} reload={reload} />
    </section>
  );
}

function Uploads({ collection, reload }: { collection: string; reload: () => Promise<void> }) {
  const api = useApi();
  const [uploads, setUploads] = useState<Upload[]>([]);
  const [error, setError] = useState("");
  const input = useRef<HTMLInputElement>(null);
  const watching = useRef(new Map<string, AbortController>());
  useEffect(() => () => watching.current.forEach((c) => c.abort()), []);
  // Jobs still running from before (the page was left, or reloaded) are shown and followed too.
  useEffect(() => {
    void api
      .call(() => ingestClient(api).listJobs({ collection, page: { pageSize: 10 } }))
      .then((reply) => {
        const running = reply.jobs.filter((j) => j.progress && !TERMINAL.has(j.progress.state));
        if (running.length === 0) return;
        setUploads((us) => [
          ...us,
          ...running.map((j) => ({
            key: `job-${j.jobId}`,
            file: `upload started ${when(j.createdAt)}`,
            jobId: j.jobId,
            progress: j.progress ?? null,
            total: Number(j.progress?.pointsTotal ?? 0n),
            skipped: [],
            error: "",
          })),
        ]);
        for (const j of running) void watch(`job-${j.jobId}`, j.jobId);
      })
      .catch(() => undefined);
  }, [collection]);

  const update = (key: string, patch: Partial<Upload>) =>
    setUploads((us) => us.map((u) => (u.key === key ? { ...u, ...patch } : u)));

  const watch = async (key: string, jobId: string) => {
    const controller = new AbortController();
    watching.current.set(key, controller);
    try {
      for await (const r of ingestClient(api).watchJob({ jobId }, { signal: controller.signal })) {
        if (r.progress) update(key, { progress: r.progress });
        if (r.progress && TERMINAL.has(r.progress.state)) break;
      }
      // The job's last word, with the failures it recorded.
      const job = await api.call(() => ingestClient(api).getJob({ jobId }));
      const failures = job.job?.failures.map((f) => `passage ${f.position}: ${f.reason}`) ?? [];
      if (job.job?.progress) update(key, { progress: job.job.progress, error: job.job.error || failures.slice(0, 3).join("; ") });
      void reload();
    } catch (e) {
      if (!controller.signal.aborted) update(key, { error: describeError("upload", e) });
    } finally {
      watching.current.delete(key);
    }
  };

  const start = async (files: FileList | null) => {
    setError("");
    for (const file of Array.from(files ?? [])) {
      const key = `${file.name}-${Date.now()}-${Math.random()}`;
      try {
        const parsed = await parseFile(file);
        if (parsed.docs.length === 0) {
          setError(`“${file.name}” has nothing to ingest${parsed.skipped.length ? `: ${parsed.skipped[0]}` : "."}`);
          continue;
        }
        const reply = await api.call(() =>
          ingestClient(api).startJob({
            collection,
            batchSize: 64,
            source: {
              kind: {
                case: "documents",
                value: {
                  documents: parsed.docs.map((d) => ({
                    text: d.text,
                    metadata: d.metadata,
                    id: d.id ? { kind: d.id } : undefined,
                  })),
                },
              },
            },
          }),
        );
        const job = reply.job;
        if (!job) continue;
        setUploads((us) => [
          {
            key,
            file: file.name,
            jobId: job.jobId,
            progress: job.progress ?? null,
            total: parsed.docs.length,
            skipped: parsed.skipped,
            error: "",
          },
          ...us,
        ]);
        void watch(key, job.jobId);
      } catch (e) {
        setError(`“${file.name}”: ${errorText("upload", e)}`);
      }
    }
    if (input.current) input.current.value = "";
  };

  const cancel = async (u: Upload) => {
    try {
      const reply = await api.call(() => ingestClient(api).cancelJob({ jobId: u.jobId }));
      if (reply.job?.progress) update(u.key, { progress: reply.job.progress });
    } catch (e) {
      update(u.key, { error: describeError("upload", e) });
    }
  };

  return (
    <div class="block">
      <h3>Upload</h3>
      <label class="upload">
        Text, Markdown, PDF or JSONL files:{" "}
        <input
          ref={input}
          type="file"
          multiple
          accept=".txt,.text,.md,.markdown,.pdf,.jsonl,.ndjson"
          data-testid="upload-input"
          onChange={(e) => void start(e.currentTarget.files)}
        />
      </label>
      <ErrorLine text={error} testid="upload-error" />
      <ul class="uploads">
        {uploads.map((u) => {
          const p = u.progress;
          const total = Number(p?.pointsTotal || BigInt(u.total));
          const done = Number((p?.pointsDone ?? 0n) + (p?.pointsFailed ?? 0n));
          const percent = total ? Math.min(100, Math.round((done / total) * 100)) : 0;
          const state = p ? p.state : JobState.QUEUED;
          const ended = TERMINAL.has(state);
          return (
            <li key={u.key} data-testid="upload" data-file={u.file} data-state={JobState[state]?.toLowerCase()}>
              <div class="row">
                <strong>{u.file}</strong>
                <span class="muted" data-testid="upload-state">
                  {STATE_WORDS[state] ?? "starting"}
                </span>
                {!ended && (
                  <button type="button" class="small" data-testid="cancel-upload" onClick={() => void cancel(u)}>
                    Cancel
                  </button>
                )}
              </div>
              <progress max={100} value={percent} data-testid="upload-progress" data-percent={percent} />
              <span class="muted" data-testid="upload-percent">
                {percent}% · {String(p?.pointsDone ?? 0n)} of {total} passages
                {p && p.pointsPerSecond > 0 ? ` · ${p.pointsPerSecond.toFixed(1)}/s` : ""}
              </span>
              {u.skipped.length > 0 && <div class="muted">Left out: {u.skipped.slice(0, 3).join("; ")}</div>}
              <ErrorLine text={u.error} testid="upload-job-error" />
            </li>
          );
        })}
      </ul>
    </div>
  );
}

function sourceOf(p: ScoredPoint): string {
  const pl = p.payload ?? {};
  const parts: string[] = [];
  if (typeof pl.source === "string") parts.push(pl.source);
  if (typeof pl.title === "string") parts.push(`“${pl.title}”`);
  if (typeof pl.page === "number") parts.push(`page ${pl.page}`);
  if (typeof pl.passage === "number") parts.push(`passage ${pl.passage + 1}`);
  if (typeof pl.line === "number") parts.push(`line ${pl.line}`);
  return parts.join(" · ") || "no source recorded";
}

function Search({ collection }: { collection: string }) {
  const api = useApi();
  const [query, setQuery] = useState("");
  const [results, setResults] = useState<ScoredPoint[] | null>(null);
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);
  const search = async (e: Event) => {
    e.preventDefault();
    if (!query.trim()) return;
    setBusy(true);
    setError("");
    try {
      const reply = await api.call(() => ingestClient(api).search({ collection, text: query.trim(), limit: 5 }));
      setResults(reply.points);
    } catch (err) {
      setError(describeError("search", err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <div class="block">
      <h3>Search</h3>
      <form class="row" onSubmit={search}>
        <input
          class="grow"
          placeholder={`Search ${collection}`}
          value={query}
          data-testid="search-input"
          onInput={(e) => setQuery(e.currentTarget.value)}
        />
        <button type="submit" disabled={busy} data-testid="search">
          {busy ? "Searching…" : "Search"}
        </button>
      </form>
      <ErrorLine text={error} testid="search-error" />
      {results && (
        <ol class="results" data-testid="search-results">
          {results.length === 0 && <li class="muted">Nothing found.</li>}
          {results.map((p) => (
            <li data-testid="search-result">
              <div class="result-text">{typeof p.payload?.text === "string" ? p.payload.text : ""}</div>
              <div class="muted">
                <span data-testid="result-source">{sourceOf(p)}</span> · score {p.score.toFixed(3)}
              </div>
            </li>
          ))}
        </ol>
      )}
    </div>
  );
}

function Snapshots({ collection, reload }: { collection: string; reload: () => Promise<void> }) {
  const api = useApi();
  const [snapshots, setSnapshots] = useState<Snapshot[]>([]);
  const [error, setError] = useState("");
  const [note, setNote] = useState("");
  const [busy, setBusy] = useState(false);
  const load = async () => {
    try {
      const reply = await api.call(() => ingestClient(api).listSnapshots({ collection, page: { pageSize: 20 } }));
      setSnapshots(reply.snapshots);
    } catch (e) {
      setError(describeError("snapshot", e));
    }
  };
  useEffect(() => {
    void load();
  }, [collection]);
  const run = async (what: () => Promise<string>) => {
    setBusy(true);
    setError("");
    setNote("");
    try {
      setNote(await what());
      await load();
      await reload();
    } catch (e) {
      setError(describeError("snapshot", e));
    } finally {
      setBusy(false);
    }
  };
  const create = () =>
    run(async () => {
      const reply = await api.call(() =>
        ingestClient(api).createSnapshot({ collection, target: { kind: { case: "local", value: {} } } }),
        );
      return `Snapshot taken: ${String(reply.snapshot?.pointsCount ?? 0n)} passages.`;
    });
  const restore = (s: Snapshot) =>
    run(async () => {
      const reply = await api.call(() =>
        ingestClient(api).restoreSnapshot({ snapshotId: s.snapshotId, collection, replaceExisting: true }),
      );
      return `Restored: ${String(reply.collection?.pointsCount ?? 0n)} passages, as of ${when(s.createdAt)}.`;
    });
  return (
    <div class="block">
      <h3>Snapshots</h3>
      <button type="button" disabled={busy} data-testid="create-snapshot" onClick={() => void create()}>
        Take a snapshot
      </button>
      <ErrorLine text={error} testid="snapshot-error" />
      {note && (
        <div class="note" data-testid="snapshot-note">
          {note}
        </div>
      )}
      <table class="table" data-testid="snapshots">
        <thead>
          <tr>
            <th>Taken</th>
            <th>Passages</th>
            <th>Size</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {snapshots.map((s) => (
            <tr data-testid="snapshot" data-points={String(s.pointsCount)}>
              <td>{when(s.createdAt)}</td>
              <td>{String(s.pointsCount)}</td>
              <td>{bytes(s.sizeBytes)}</td>
              <td>
                <button
                  type="button"
                  class="small"
                  disabled={busy}
                  data-testid="restore-snapshot"
                  title="Replaces the collection's passages with the snapshot's"
                  onClick={() => void restore(s)}
                >
                  Restore
                </button>
              </td>
            </tr>
          ))}
          {snapshots.length === 0 && (
            <tr>
              <td colSpan={4} class="muted">
                No snapshots of this collection yet.
              </td>
            </tr>
          )}
        </tbody>
      </table>
    </div>
  );
}

function ingestClient(api: Api) {
  return api.client(IngestService);
}
