// Forms: the signed-in user's forms, a builder for a new one (fields, types, required,
// limits, public), and for each form its public link, its submissions with every
// consumer's status (read again every two seconds), and its dead letters with Redrive.

import { useState } from "preact/hooks";
import { useLocation } from "preact-iso";
import {
  FormsService,
  ConsumerState,
  FieldType,
  type DeadLetter,
  type Form,
  type Submission,
} from "@chatmesh/sdk/chatmesh/forms/v1/forms_pb.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { FieldSchema } from "@chatmesh/sdk/chatmesh/forms/v1/forms_pb.js";
import { type Api, describeError } from "../../api.js";
import { ErrorLine, useApi, usePoll, when } from "../../ui.js";
import { LENGTH_TYPES, TYPES, VALUE_TYPES, showValue, typeLabel } from "./fields.js";

export function FormsScreen({ id }: { id?: string }) {
  const api = useApi();
  const { route } = useLocation();
  const [forms, setForms] = useState<Form[]>([]);
  const [error, setError] = useState("");
  usePoll(async () => {
    try {
      const reply = await api.call(() => formsClient(api).listForms({ page: { pageSize: 100 } }));
      setForms(reply.forms);
    } catch (e) {
      setError(describeError("load", e));
    }
  }, 10_000);
  const open = forms.find((f) => f.formId === id);
  return (
    <div class="documents">
      <aside class="panel side">
        <h2>Forms</h2>
        <button type="button" data-testid="new-form" onClick={() => route("/forms")}>
          New form
        </button>
        <ul class="list" data-testid="forms">
          {forms.map((f) => (
            <li
              key={f.formId}
              class={f.formId === id ? "open" : ""}
              data-testid="form"
              data-name={f.name}
              onClick={() => route(`/forms/${f.formId}`)}
            >
              <span class="name">{f.title}</span>
              <span class="muted">{f.public ? "public" : "signed-in users"}</span>
            </li>
          ))}
          {forms.length === 0 && <li class="muted">No forms yet.</li>}
        </ul>
        <ErrorLine text={error} />
      </aside>
      {id ? (
        open ? (
          <FormView key={open.formId} form={open} />
        ) : (
          <section class="panel main-panel muted">Loading…</section>
        )
      ) : (
        <Builder
          onCreated={(f) => {
            setForms((fs) => [f, ...fs]);
            route(`/forms/${f.formId}`);
          }}
        />
      )}
    </div>
  );
}

type FieldInit = MessageInitShape<typeof FieldSchema>;

interface Draft {
  key: string;
  label: string;
  type: FieldType;
  required: boolean;
  minLength: string;
  maxLength: string;
  pattern: string;
  minValue: string;
  maxValue: string;
  choices: string;
  multiple: boolean;
  help: string;
}

function blank(n: number): Draft {
  return {
    key: `field_${n}`,
    label: "",
    type: FieldType.TEXT,
    required: false,
    minLength: "",
    maxLength: "",
    pattern: "",
    minValue: "",
    maxValue: "",
    choices: "",
    multiple: false,
    help: "",
  };
}

function toField(d: Draft): FieldInit {
  const num = (s: string) => (s.trim() === "" ? undefined : Number(s));
  const limits: NonNullable<FieldInit["limits"]> = {};
  if (LENGTH_TYPES.has(d.type)) {
    limits.minLength = num(d.minLength);
    limits.maxLength = num(d.maxLength);
    limits.pattern = d.pattern;
  }
  if (VALUE_TYPES.has(d.type)) {
    limits.minValue = num(d.minValue);
    limits.maxValue = num(d.maxValue);
  }
  if (d.type === FieldType.CHOICE) {
    limits.choices = d.choices
      .split(",")
      .map((c) => c.trim())
      .filter(Boolean);
  }
  return {
    key: d.key.trim(),
    label: d.label.trim(),
    type: d.type,
    required: d.required,
    limits,
    multiple: d.type === FieldType.CHOICE && d.multiple,
    helpText: d.help.trim(),
  };
}

/** "fields[2].limits.pattern: ..." -> the third field's row says it. */
function fieldIndexOf(message: string): number {
  const m = /fields\[(\d+)\]/.exec(message);
  return m ? Number(m[1]) : -1;
}

function Builder({ onCreated }: { onCreated: (f: Form) => void }) {
  const api = useApi();
  const [name, setName] = useState("");
  const [title, setTitle] = useState("");
  const [description, setDescription] = useState("");
  const [isPublic, setPublic] = useState(true);
  const [drafts, setDrafts] = useState<Draft[]>([blank(1)]);
  const [error, setError] = useState("");
  const [rowError, setRowError] = useState<{ index: number; text: string } | null>(null);
  const [busy, setBusy] = useState(false);
  const edit = (i: number, patch: Partial<Draft>) => setDrafts((ds) => ds.map((d, j) => (j === i ? { ...d, ...patch } : d)));

  const create = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError("");
    setRowError(null);
    try {
      const reply = await api.call(() =>
        formsClient(api).createForm({
          name: name.trim(),
          title: title.trim(),
          description: description.trim(),
          public: isPublic,
          fields: drafts.map(toField),
        }),
      );
      if (reply.form) onCreated(reply.form);
    } catch (err) {
      const text = describeError("form", err);
      const index = fieldIndexOf(text);
      if (index >= 0) setRowError({ index, text });
      setError(text);
    } finally {
      setBusy(false);
    }
  };

  return (
    <form class="panel main-panel builder" onSubmit={create} data-testid="form-builder">
      <h2>New form</h2>
      <div class="grid2">
        <label>
          Name (in links and lists)
          <input data-testid="form-name" value={name} placeholder="feedback" onInput={(e) => setName(e.currentTarget.value)} />
        </label>
        <label>
          Title
          <input data-testid="form-title-input" value={title} placeholder="Tell us what you think" onInput={(e) => setTitle(e.currentTarget.value)} />
        </label>
      </div>
      <label>
        Description
        <textarea rows={2} data-testid="form-description" value={description} onInput={(e) => setDescription(e.currentTarget.value)} />
      </label>
      <label class="inline">
        <input type="checkbox" checked={isPublic} data-testid="form-public" onChange={(e) => setPublic(e.currentTarget.checked)} /> Anyone with
        the link may fill it in, without an account
      </label>
      <h3>Fields</h3>
      {drafts.map((d, i) => (
        <fieldset class="field-row" data-testid="builder-field" data-index={i}>
          <div class="row wrap">
            <input
              class="key"
              aria-label="Key"
              data-testid="field-key"
              value={d.key}
              onInput={(e) => edit(i, { key: e.currentTarget.value })}
            />
            <input
              class="grow"
              aria-label="Label"
              placeholder="Label"
              data-testid="field-label"
              value={d.label}
              onInput={(e) => edit(i, { label: e.currentTarget.value })}
            />
            <select
              aria-label="Type"
              data-testid="field-type"
              value={String(d.type)}
              onChange={(e) => edit(i, { type: Number(e.currentTarget.value) as FieldType })}
            >
              {TYPES.map((t) => (
                <option value={String(t.type)}>{t.label}</option>
              ))}
            </select>
            <label class="inline">
              <input
                type="checkbox"
                data-testid="field-required"
                checked={d.required}
                onChange={(e) => edit(i, { required: e.currentTarget.checked })}
              />{" "}
              required
            </label>
            <button
              type="button"
              class="small"
              disabled={drafts.length === 1}
              onClick={() => setDrafts((ds) => ds.filter((_, j) => j !== i))}
            >
              Remove
            </button>
          </div>
          <div class="row wrap limits">
            {LENGTH_TYPES.has(d.type) && (
              <>
                <input aria-label="Fewest characters" placeholder="min length" data-testid="field-min-length" value={d.minLength} onInput={(e) => edit(i, { minLength: e.currentTarget.value })} />
                <input aria-label="Most characters" placeholder="max length" data-testid="field-max-length" value={d.maxLength} onInput={(e) => edit(i, { maxLength: e.currentTarget.value })} />
                <input aria-label="Pattern" placeholder="pattern (RE2)" data-testid="field-pattern" value={d.pattern} onInput={(e) => edit(i, { pattern: e.currentTarget.value })} />
              </>
            )}
            {VALUE_TYPES.has(d.type) && (
              <>
                <input aria-label="Smallest value" placeholder="min value" data-testid="field-min-value" value={d.minValue} onInput={(e) => edit(i, { minValue: e.currentTarget.value })} />
                <input aria-label="Largest value" placeholder="max value" data-testid="field-max-value" value={d.maxValue} onInput={(e) => edit(i, { maxValue: e.currentTarget.value })} />
              </>
            )}
            {d.type === FieldType.CHOICE && (
              <>
                <input class="grow" aria-label="Choices" placeholder="choices, comma separated" data-testid="field-choices" value={d.choices} onInput={(e) => edit(i, { choices: e.currentTarget.value })} />
                <label class="inline">
                  <input type="checkbox" checked={d.multiple} onChange={(e) => edit(i, { multiple: e.currentTarget.checked })} /> several
                </label>
              </>
            )}
            <input class="grow" aria-label="Help text" placeholder="help text" value={d.help} onInput={(e) => edit(i, { help: e.currentTarget.value })} />
          </div>
          {rowError?.index === i && (
            <div class="field-error" data-testid="builder-field-error">
              {rowError.text}
            </div>
          )}
        </fieldset>
      ))}
      <button type="button" data-testid="add-field" onClick={() => setDrafts((ds) => [...ds, blank(ds.length + 1)])}>
        Add a field
      </button>
      <ErrorLine text={error} testid="form-error" />
      <div>
        <button type="submit" disabled={busy} data-testid="create-form">
          Create form
        </button>
      </div>
    </form>
  );
}

const CONSUMER_WORDS: Record<number, string> = {
  [ConsumerState.PENDING]: "pending",
  [ConsumerState.DONE]: "done",
  [ConsumerState.FAILED]: "failed, retrying",
  [ConsumerState.DEAD_LETTERED]: "dead letter",
};

function FormView({ form }: { form: Form }) {
  const api = useApi();
  const [submissions, setSubmissions] = useState<Submission[]>([]);
  const [letters, setLetters] = useState<DeadLetter[]>([]);
  const [error, setError] = useState("");
  const [note, setNote] = useState("");
  const link = `${window.location.origin}/f/${form.formId}`;
  const load = async () => {
    try {
      const [subs, dead] = await Promise.all([
        api.call(() => formsClient(api).listSubmissions({ formId: form.formId, page: { pageSize: 50 } })),
        api.call(() => formsClient(api).listDeadLetters({ formId: form.formId, page: { pageSize: 50 } })),
      ]);
      setSubmissions(subs.submissions);
      setLetters(dead.deadLetters);
      setError("");
    } catch (e) {
      setError(describeError("form", e));
    }
  };
  usePoll(load, 2_000, [form.formId]);
  const redrive = async (ids: string[]) => {
    setNote("");
    try {
      const reply = await api.call(() => formsClient(api).redrive({ deadLetterIds: ids }));
      setNote(`Sent back: ${String(reply.redrivenCount)}.`);
      await load();
    } catch (e) {
      setError(describeError("redrive", e));
    }
  };
  return (
    <section class="panel main-panel" data-testid="form-view" data-form-id={form.formId}>
      <h2>{form.title}</h2>
      <p class="muted">
        {form.name} · version {form.version} · {form.fields.map((f) => `${f.label} (${typeLabel(f.type)}${f.required ? ", required" : ""})`).join(" · ")}
      </p>
      <p>
        {form.public ? "Public link: " : "Link for signed-in users: "}
        <a href={link} target="_blank" rel="noopener" data-testid="public-link">
          {link}
        </a>
      </p>
      <ErrorLine text={error} />
      <h3>Submissions</h3>
      <table class="table" data-testid="submissions">
        <thead>
          <tr>
            <th>Received</th>
            {form.fields.map((f) => (
              <th>{f.label}</th>
            ))}
            <th>Consumers</th>
            <th>Processed</th>
          </tr>
        </thead>
        <tbody>
          {submissions.map((s) => (
            <tr data-testid="submission" data-submission-id={s.submissionId} data-processed={String(!!s.status?.processed)}>
              <td>{when(s.createdAt)}</td>
              {form.fields.map((f) => (
                <td>{showValue(s.values[f.key])}</td>
              ))}
              <td class="consumers">
                {s.status?.consumers.map((c) => (
                  <span
                    class={`chip state-${ConsumerState[c.state]?.toLowerCase()}`}
                    data-testid="consumer-status"
                    data-consumer={c.consumer}
                    data-state={ConsumerState[c.state]?.toLowerCase()}
                    title={c.lastError || `${c.deliveries} deliveries`}
                  >
                    {c.consumer}: {CONSUMER_WORDS[c.state] ?? "?"}
                    {c.required ? "" : " (optional)"}
                  </span>
                ))}
                {s.screening?.flagged && <span class="chip state-failed">flagged: {s.screening.flaggedKeys.join(", ")}</span>}
              </td>
              <td data-testid="processed">{s.status?.processed ? "processed" : "not yet"}</td>
            </tr>
          ))}
          {submissions.length === 0 && (
            <tr>
              <td colSpan={form.fields.length + 3} class="muted">
                No submissions yet.
              </td>
            </tr>
          )}
        </tbody>
      </table>
      <h3>Dead letters</h3>
      <p class="muted">Submissions a consumer gave up on after its retries; Redrive hands one back to that consumer only.</p>
      {note && (
        <div class="note" data-testid="redrive-note">
          {note}
        </div>
      )}
      <table class="table" data-testid="dead-letters">
        <thead>
          <tr>
            <th>When</th>
            <th>Consumer</th>
            <th>Submission</th>
            <th>Tries</th>
            <th>Last error</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {letters.map((d) => (
            <tr data-testid="dead-letter" data-consumer={d.consumer} data-submission-id={d.submissionId}>
              <td>{when(d.deadLetteredAt)}</td>
              <td>{d.consumer}</td>
              <td>
                <code>{d.submissionId.slice(0, 8)}</code>
              </td>
              <td>{d.deliveries}</td>
              <td class="wrap-anywhere">{d.lastError}</td>
              <td>
                <button type="button" class="small" data-testid="redrive" onClick={() => void redrive([d.deadLetterId])}>
                  Redrive
                </button>
              </td>
            </tr>
          ))}
          {letters.length === 0 && (
            <tr>
              <td colSpan={6} class="muted">
                None.
              </td>
            </tr>
          )}
        </tbody>
      </table>
    </section>
  );
}

function formsClient(api: Api) {
  return api.client(FormsService);
}
