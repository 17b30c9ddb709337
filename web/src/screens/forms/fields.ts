// What the form screens say about field types, and how an input's text becomes a FieldValue.

import { FieldType, type Field, type FieldValue } from "@chatmesh/sdk/chatmesh/forms/v1/forms_pb.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { FieldValueSchema } from "@chatmesh/sdk/chatmesh/forms/v1/forms_pb.js";

export const TYPES: { type: FieldType; label: string }[] = [
  { type: FieldType.TEXT, label: "Text" },
  { type: FieldType.LONG_TEXT, label: "Long text" },
  { type: FieldType.EMAIL, label: "Email" },
  { type: FieldType.NUMBER, label: "Number" },
  { type: FieldType.INTEGER, label: "Whole number" },
  { type: FieldType.BOOLEAN, label: "Yes / no" },
  { type: FieldType.CHOICE, label: "Choice" },
  { type: FieldType.DATE, label: "Date" },
  { type: FieldType.URL, label: "Web address" },
];

export const LENGTH_TYPES = new Set([FieldType.TEXT, FieldType.LONG_TEXT, FieldType.EMAIL, FieldType.URL]);
export const VALUE_TYPES = new Set([FieldType.NUMBER, FieldType.INTEGER]);

export function typeLabel(t: FieldType): string {
  return TYPES.find((x) => x.type === t)?.label ?? "?";
}

/** What a person typed or picked for one field. */
export type Raw = string | boolean | string[];

export type ValueInit = MessageInitShape<typeof FieldValueSchema>;

/**
 * The value to send for ``raw``, nothing for an empty input (the server says when a
 * required one is missing), or the words for an input that cannot be a value of its type
 * at all (text in a number field cannot even be sent as a number).
 */
export function toValue(field: Field, raw: Raw | undefined): { value?: ValueInit; error?: string } {
  switch (field.type) {
    case FieldType.BOOLEAN:
      return { value: { kind: { case: "boolValue", value: raw === true } } };
    case FieldType.CHOICE: {
      const picked = Array.isArray(raw) ? raw : typeof raw === "string" && raw ? [raw] : [];
      return picked.length ? { value: { kind: { case: "choices", value: { values: picked } } } } : {};
    }
    case FieldType.NUMBER: {
      const text = typeof raw === "string" ? raw.trim() : "";
      if (!text) return {};
      const n = Number(text.replace(",", "."));
      return Number.isFinite(n) ? { value: { kind: { case: "numberValue", value: n } } } : { error: "Enter a number." };
    }
    case FieldType.INTEGER: {
      const text = typeof raw === "string" ? raw.trim() : "";
      if (!text) return {};
      return /^[-+]?\d{1,18}$/.test(text)
        ? { value: { kind: { case: "integerValue", value: BigInt(text) } } }
        : { error: "Enter a whole number." };
    }
    default: {
      const text = typeof raw === "string" ? raw : "";
      return text.trim() ? { value: { kind: { case: "stringValue", value: text } } } : {};
    }
  }
}

/** A stored value, for the submissions table. */
export function showValue(v: FieldValue | undefined): string {
  if (!v) return "";
  const k = v.kind;
  switch (k.case) {
    case "stringValue":
      return k.value;
    case "numberValue":
      return String(k.value);
    case "integerValue":
      return String(k.value);
    case "boolValue":
      return k.value ? "yes" : "no";
    case "choices":
      return k.value.values.join(", ");
    default:
      return "";
  }
}

/** The server's words for a broken value, with a capital and a full stop. */
export function sentence(text: string): string {
  const t = text.trim();
  if (!t) return t;
  const s = t[0].toUpperCase() + t.slice(1);
  return /[.!?]$/.test(s) ? s : `${s}.`;
}
