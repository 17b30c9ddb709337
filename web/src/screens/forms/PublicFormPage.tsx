// The public link of a form (/f/<form id>): anyone may fill it in, with or without an
// account. The server checks every value; each broken one is shown under its field, in
// the server's words (google.rpc.BadRequest). After a submit, the submission's status
// until every required consumer has it ("processed").

import { useEffect, useRef, useState } from "preact/hooks";
import { Code } from "@connectrpc/connect";
import { FieldType, FormsService, type Field, type Form } from "@chatmesh/sdk/chatmesh/forms/v1/forms_pb.js";
import { type Api, codeOf, describeError, fieldViolations, valueKey } from "../../api.js";
import { uuid } from "../chat/model.js";
import { ErrorLine, useApi, usePoll } from "../../ui.js";
import { type Raw, sentence, toValue } from "./fields.js";

export function PublicFormPage({ formId }: { formId: string }) {
  const api = useApi();
  const [form, setForm] = useState<Form | null>(null);
  const [error, setError] = useState("");
  useEffect(() => {
    api
      .call(() => formsClient(api).getForm({ formId }))
      .then((r) => setForm(r.form ?? null))
      .catch((e) =>
        setError(
          codeOf(e) === Code.Unauthenticated
            ? "This form is not public: sign in to fill it in."
            : codeOf(e) === Code.InvalidArgument
              ? "That link is not a form's link."
              : describeError("form", e),
        ),
      );
  }, [formId]);
  return (
    <main class="public-form">
      {form ? <FillForm form={form} /> : error ? <ErrorLine text={error} testid="form-load-error" /> : <p>Loading…</p>}
    </main>
  );
}

function FillForm({ form }: { form: Form }) {
  const api = useApi();
  const [values, setValues] = useState<Record<string, Raw>>({});
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);
  const [submitted, setSubmitted] = useState<string>("");
  // One key per submission: a retry of the same values after a lost answer is the same one.
  const key = useRef(uuid());

  const set = (k: string, v: Raw) => {
    key.current = uuid();
    setValues((vs) => ({ ...vs, [k]: v }));
  };

  const submit = async (e: Event) => {
    e.preventDefault();
    setError("");
    const local: Record<string, string> = {};
    const out: Record<string, ReturnType<typeof toValue>["value"]> = {};
    for (const f of form.fields) {
      const r = toValue(f, values[f.key]);
      if (r.error) local[f.key] = r.error;
      else if (r.value) out[f.key] = r.value;
    }
    if (Object.keys(local).length) {
      setErrors(local);
      return;
    }
    setBusy(true);
    try {
      const reply = await api.call(() =>
        formsClient(api).submit({
          formId: form.formId,
          idempotencyKey: key.current,
          values: out as Record<string, NonNullable<(typeof out)[string]>>,
        }),
      );
      setErrors({});
      setSubmitted(reply.submissionId);
    } catch (err) {
      const violations = fieldViolations(err);
      const byKey: Record<string, string> = {};
      for (const v of violations) {
        const k = valueKey(v.field);
        if (k && !byKey[k]) byKey[k] = sentence(v.description);
      }
      setErrors(byKey);
      if (codeOf(err) === Code.InvalidArgument && Object.keys(byKey).length) {
        setError(`Please correct the ${Object.keys(byKey).length === 1 ? "field" : "fields"} marked below.`);
      } else {
        setError(describeError("submit", err));
      }
    } finally {
      setBusy(false);
    }
  };

  if (submitted) return <Submitted form={form} submissionId={submitted} />;
  return (
    <form class="panel fill" noValidate onSubmit={submit} data-testid="public-form" data-form-id={form.formId}>
      <h1 data-testid="form-title">{form.title}</h1>
      {form.description && <p class="muted">{form.description}</p>}
      <ErrorLine text={error} testid="submit-error" />
      {form.fields.map((f) => (
        <div class={`field${errors[f.key] ? " invalid" : ""}`} data-testid="form-field" data-key={f.key}>
          <label for={`f-${f.key}`}>
            {f.label}
            {f.required && <span class="required"> *</span>}
          </label>
          <Input field={f} value={values[f.key]} onChange={(v) => set(f.key, v)} />
          {f.helpText && <div class="muted">{f.helpText}</div>}
          {errors[f.key] && (
            <div class="field-error" role="alert" data-testid={`field-error-${f.key}`}>
              {errors[f.key]}
            </div>
          )}
        </div>
      ))}
      <button type="submit" disabled={busy} data-testid="submit-form">
        {busy ? "Sending…" : "Send"}
      </button>
    </form>
  );
}

function Input({ field, value, onChange }: { field: Field; value: Raw | undefined; onChange: (v: Raw) => void }) {
  const id = `f-${field.key}`;
  const testid = `input-${field.key}`;
  const text = typeof value === "string" ? value : "";
  switch (field.type) {
    case FieldType.LONG_TEXT:
      return <textarea id={id} data-testid={testid} rows={4} value={text} onInput={(e) => onChange(e.currentTarget.value)} />;
    case FieldType.BOOLEAN:
      return (
        <input id={id} data-testid={testid} type="checkbox" checked={value === true} onChange={(e) => onChange(e.currentTarget.checked)} />
      );
    case FieldType.CHOICE: {
      const choices = field.limits?.choices ?? [];
      if (field.multiple) {
        const picked = Array.isArray(value) ? value : [];
        return (
          <div id={id} data-testid={testid} class="choices">
            {choices.map((c) => (
              <label>
                <input
                  type="checkbox"
                  checked={picked.includes(c)}
                  onChange={(e) => onChange(e.currentTarget.checked ? [...picked, c] : picked.filter((x) => x !== c))}
                />{" "}
                {c}
              </label>
            ))}
          </div>
        );
      }
      return (
        <select id={id} data-testid={testid} value={text} onChange={(e) => onChange(e.currentTarget.value)}>
          <option value="">Choose…</option>
          {choices.map((c) => (
            <option value={c}>{c}</option>
          ))}
        </select>
      );
    }
    case FieldType.DATE:
      return <input id={id} data-testid={testid} type="date" value={text} onInput={(e) => onChange(e.currentTarget.value)} />;
    default:
      // Plain text inputs for email, URL and numbers too: the server's checks, in words,
      // rather than the browser's own bubbles.
      return (
        <input
          id={id}
          data-testid={testid}
          inputMode={field.type === FieldType.NUMBER ? "decimal" : field.type === FieldType.INTEGER ? "numeric" : undefined}
          value={text}
          onInput={(e) => onChange(e.currentTarget.value)}
        />
      );
  }
}

function Submitted({ form, submissionId }: { form: Form; submissionId: string }) {
  const api = useApi();
  const [processed, setProcessed] = useState(false);
  usePoll(
    async () => {
      if (processed) return;
      const r = await formsClient(api).getSubmission({ submissionId });
      if (r.status?.processed) setProcessed(true);
    },
    1_500,
    [submissionId, processed],
  );
  return (
    <div class="panel fill" data-testid="submitted" data-submission-id={submissionId}>
      <h1>{form.title}</h1>
      <p data-testid="submit-success">Thank you: your answers were received.</p>
      <p class="muted" data-testid="submission-state">
        {processed ? "Processed." : "Being processed…"} Reference {submissionId}.
      </p>
    </div>
  );
}

function formsClient(api: Api) {
  return api.client(FormsService);
}
