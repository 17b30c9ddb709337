// Turning a file picked in the browser into documents for an ingest job. gRPC-web cannot
// carry UploadSource's client stream, so the browser reads the file itself and sends its
// passages inline (StartJob with InlineDocuments), each with where it came from.
//
// Text and Markdown are cut at blank lines into passages of about PASSAGE_CHARS (a long
// paragraph at sentence ends); Markdown passages keep the heading they sit under as their
// title. PDF: the text of each page (pdf.js, loaded only when a PDF is picked). JSONL: one
// document a line, {"text": "...", "id": ..., "metadata": {...}}.

import type { JsonObject } from "@bufbuild/protobuf";

export const PASSAGE_CHARS = 800;
const MAX_TEXT = 8192; // Document.text's limit
export const MAX_DOCUMENTS = 10_000; // InlineDocuments' limit

export interface Doc {
  text: string;
  id?: { case: "uuid"; value: string } | { case: "num"; value: bigint };
  metadata: JsonObject;
}

export interface Parsed {
  docs: Doc[];
  /** Lines or parts left out, with why ("line 3: no \"text\""). */
  skipped: string[];
}

export type Kind = "text" | "markdown" | "pdf" | "jsonl";

export function kindOf(name: string): Kind | null {
  const n = name.toLowerCase();
  if (n.endsWith(".md") || n.endsWith(".markdown")) return "markdown";
  if (n.endsWith(".txt") || n.endsWith(".text")) return "text";
  if (n.endsWith(".pdf")) return "pdf";
  if (n.endsWith(".jsonl") || n.endsWith(".ndjson")) return "jsonl";
  return null;
}

/** Passages of at most ``limit`` characters, cut at blank lines, then sentence ends, then spaces. */
export function passages(text: string, limit = PASSAGE_CHARS): string[] {
  const paragraphs = text
    .replace(/\r\n?/g, "\n")
    .split(/\n\s*\n/)
    .map((p) => p.replace(/\s*\n\s*/g, " ").trim())
    .filter(Boolean);
  const out: string[] = [];
  let current = "";
  const push = () => {
    if (current) out.push(current);
    current = "";
  };
  for (const p of paragraphs) {
    for (const piece of split(p, limit)) {
      if (current && current.length + 2 + piece.length > limit) push();
      current = current ? `${current}\n\n${piece}` : piece;
    }
  }
  push();
  return out;
}

function split(paragraph: string, limit: number): string[] {
  if (paragraph.length <= limit) return [paragraph];
  const sentences = paragraph.match(/[^.!?]+(?:[.!?]+\s*|$)/g) ?? [paragraph];
  const out: string[] = [];
  let current = "";
  for (const s of sentences) {
    if (s.length > limit) {
      if (current) out.push(current.trim());
      current = "";
      for (let i = 0; i < s.length; i += limit) out.push(s.slice(i, i + limit).trim());
      continue;
    }
    if (current.length + s.length > limit) {
      out.push(current.trim());
      current = "";
    }
    current += s;
  }
  if (current.trim()) out.push(current.trim());
  return out.filter(Boolean);
}

function fromText(source: string, text: string, markdown: boolean): Parsed {
  const docs: Doc[] = [];
  if (!markdown) {
    passages(text).forEach((p, i) => docs.push({ text: p, metadata: { source, passage: i } }));
    return { docs, skipped: [] };
  }
  // Markdown: each section's passages carry the section's heading as their title.
  let title = "";
  let body: string[] = [];
  let index = 0;
  const flush = () => {
    for (const p of passages(body.join("\n"))) {
      docs.push({ text: p, metadata: title ? { source, passage: index, title } : { source, passage: index } });
      index += 1;
    }
    body = [];
  };
  for (const line of text.replace(/\r\n?/g, "\n").split("\n")) {
    const heading = /^#{1,6}\s+(.*)$/.exec(line);
    if (heading) {
      flush();
      title = heading[1].trim();
    } else {
      body.push(line);
    }
  }
  flush();
  return { docs, skipped: [] };
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function idOf(raw: unknown): Doc["id"] | "bad" {
  if (raw === undefined || raw === null) return undefined;
  if (typeof raw === "string" && UUID.test(raw)) return { case: "uuid", value: raw.toLowerCase() };
  if (typeof raw === "number" && Number.isSafeInteger(raw) && raw >= 0) return { case: "num", value: BigInt(raw) };
  if (typeof raw === "object") {
    const o = raw as Record<string, unknown>;
    if (typeof o.uuid === "string") return idOf(o.uuid);
    if (o.num !== undefined) return idOf(typeof o.num === "string" ? Number(o.num) : o.num);
  }
  return "bad";
}

export function fromJsonl(source: string, text: string): Parsed {
  const docs: Doc[] = [];
  const skipped: string[] = [];
  text.split(/\r?\n/).forEach((line, i) => {
    if (!line.trim()) return;
    const where = `line ${i + 1}`;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      skipped.push(`${where}: not JSON`);
      return;
    }
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      skipped.push(`${where}: not a JSON object`);
      return;
    }
    const o = value as Record<string, unknown>;
    if (o.vector !== undefined) {
      skipped.push(`${where}: a point with a vector (upload points with the CLI: python -m chatmesh ingest)`);
      return;
    }
    if (typeof o.text !== "string" || !o.text.trim()) {
      skipped.push(`${where}: no "text"`);
      return;
    }
    if (o.text.length > MAX_TEXT) {
      skipped.push(`${where}: "text" is longer than ${MAX_TEXT} characters`);
      return;
    }
    const id = idOf(o.id);
    if (id === "bad") {
      skipped.push(`${where}: "id" is neither a UUID nor an unsigned integer`);
      return;
    }
    const meta = typeof o.metadata === "object" && o.metadata !== null && !Array.isArray(o.metadata) ? o.metadata : {};
    docs.push({ text: o.text, id, metadata: { ...(meta as JsonObject), source, line: i + 1 } });
  });
  return { docs, skipped };
}

async function fromPdf(source: string, data: ArrayBuffer): Promise<Parsed> {
  const { pdfPages } = await import("./pdf.js");
  const pages = await pdfPages(data);
  const docs: Doc[] = [];
  let index = 0;
  pages.forEach((text, page) => {
    for (const p of passages(text)) {
      docs.push({ text: p, metadata: { source, passage: index, page: page + 1 } });
      index += 1;
    }
  });
  return { docs, skipped: docs.length ? [] : ["the PDF has no text (a scan needs OCR first)"] };
}

export async function parseFile(file: File): Promise<Parsed> {
  const kind = kindOf(file.name);
  if (!kind) throw new Error("choose a .txt, .md, .pdf or .jsonl file");
  let parsed: Parsed;
  if (kind === "pdf") parsed = await fromPdf(file.name, await file.arrayBuffer());
  else if (kind === "jsonl") parsed = fromJsonl(file.name, await file.text());
  else parsed = fromText(file.name, await file.text(), kind === "markdown");
  if (parsed.docs.length > MAX_DOCUMENTS) {
    parsed.skipped.push(`only the first ${MAX_DOCUMENTS} of ${parsed.docs.length} passages fit one upload`);
    parsed.docs = parsed.docs.slice(0, MAX_DOCUMENTS);
  }
  return parsed;
}
