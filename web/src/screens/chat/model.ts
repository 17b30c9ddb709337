// The client's view of conversations and messages, folded from RPC answers and stream events.

import {
  AuthorKind,
  ConversationKind,
  DeliveryState,
  type Conversation,
  type Member,
  type Message,
} from "@chatmesh/sdk/chatmesh/history/v1/history_pb.js";
import { millis } from "../../api.js";

export type Tick = "pending" | "sent" | "delivered" | "read";

export interface MessageView {
  key: string;
  sequence: bigint;
  messageId: string;
  clientMessageId: string;
  authorUserId: string;
  fromAssistant: boolean;
  text: string;
  createdAt: number;
  deleted: boolean;
  edited: boolean;
  pending: boolean;
  delivery: DeliveryState;
  /** A grounded reply's passages (history `Message.citations`); empty otherwise. */
  citations: CitationView[];
}

/** One passage a grounded reply cites (inference `Citation` while streaming, history's once stored). */
export interface CitationView {
  number: number;
  collection: string;
  pointId: string;
  source: string;
  offset: bigint;
  score: number;
  passage: string;
}

export function citationView(c: CitationView): CitationView {
  return {
    number: c.number,
    collection: c.collection,
    pointId: c.pointId,
    source: c.source,
    offset: c.offset,
    score: c.score,
    passage: c.passage,
  };
}

export interface Streaming {
  requestId: string;
  text: string;
  /** Started by this tab (tokens come from the Reply stream, not from Connect). */
  mine: boolean;
  /** Ended by Stop (Cancel): never stored. */
  stopped: boolean;
  /** Stop was pressed; the stream has not ended yet. */
  stopping: boolean;
  done: boolean;
  /** The thread's newest sequence when it began: an assistant message past it is this reply, stored. */
  after: bigint;
  /** The reply's citations (the Reply stream's `Citations` chunk, before the first token). */
  citations: CitationView[];
}

export interface Thread {
  messages: Map<string, MessageView>;
  /** Cursor to older messages; empty when there are none. */
  olderToken: string;
  loaded: boolean;
  loadingOlder: boolean;
  peerDelivered: bigint;
  peerRead: bigint;
  streaming: Streaming | null;
}

export interface ConversationView {
  id: string;
  kind: ConversationKind;
  members: Member[];
  lastMessage: MessageView | null;
  unread: bigint;
  readSequence: bigint;
  activity: number;
}

export function messageView(m: Message, pending = false): MessageView {
  return {
    key: m.messageId || `c:${m.clientMessageId}`,
    sequence: m.sequence,
    messageId: m.messageId,
    clientMessageId: m.clientMessageId,
    authorUserId: m.authorUserId,
    fromAssistant: m.authorKind === AuthorKind.ASSISTANT,
    text: m.text,
    createdAt: millis(m.createdAt) || Date.now(),
    deleted: m.deleted,
    edited: m.editedAt !== undefined,
    pending,
    delivery: m.deliveryState,
    citations: m.citations.map(citationView),
  };
}

export function conversationView(c: Conversation): ConversationView {
  const last = c.lastMessage ? messageView(c.lastMessage) : null;
  return {
    id: c.conversationId,
    kind: c.kind,
    members: c.members,
    lastMessage: last,
    unread: c.unreadCount,
    readSequence: c.readSequence,
    activity: last?.createdAt ?? millis(c.createdAt),
  };
}

export function newThread(): Thread {
  return {
    messages: new Map(),
    olderToken: "",
    loaded: false,
    loadingOlder: false,
    peerDelivered: 0n,
    peerRead: 0n,
    streaming: null,
  };
}

/** Adds or replaces a message; a stored copy replaces the optimistic one with its client id. */
export function upsert(thread: Thread, m: MessageView): void {
  if (m.clientMessageId) thread.messages.delete(`c:${m.clientMessageId}`);
  thread.messages.set(m.key, m);
  if (m.delivery === DeliveryState.READ && m.sequence > thread.peerRead) thread.peerRead = m.sequence;
  if (m.delivery >= DeliveryState.DELIVERED && m.sequence > thread.peerDelivered) thread.peerDelivered = m.sequence;
}

export function ordered(thread: Thread): MessageView[] {
  return [...thread.messages.values()].sort((a, b) => {
    if (a.pending !== b.pending) return a.pending ? 1 : -1;
    if (a.pending) return a.createdAt - b.createdAt;
    return a.sequence < b.sequence ? -1 : a.sequence > b.sequence ? 1 : 0;
  });
}

export function tickOf(thread: Thread, m: MessageView): Tick {
  if (m.pending) return "pending";
  if (m.sequence <= thread.peerRead || m.delivery === DeliveryState.READ) return "read";
  if (m.sequence <= thread.peerDelivered || m.delivery === DeliveryState.DELIVERED) return "delivered";
  return "sent";
}

export function newestSequence(thread: Thread): bigint {
  let max = 0n;
  for (const m of thread.messages.values()) if (!m.pending && m.sequence > max) max = m.sequence;
  return max;
}

export function peersOf(c: ConversationView, me: string): Member[] {
  return c.members.filter((m) => m.kind !== AuthorKind.ASSISTANT && m.userId && m.userId !== me);
}

export function titleOf(c: ConversationView, me: string, names: Map<string, string>): string {
  if (c.kind === ConversationKind.ASSISTANT) return "Assistant";
  const peer = peersOf(c, me)[0];
  return peer ? names.get(peer.userId) || peer.displayName || peer.userId : "Just you";
}

export function uuid(): string {
  if (typeof crypto.randomUUID === "function") return crypto.randomUUID();
  // crypto.randomUUID needs a secure context; a page served over plain http on a LAN lacks it.
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

export function relativeTime(ms: number, now = Date.now()): string {
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 45) return "just now";
  const m = Math.round(s / 60);
  if (m < 60) return `${m} min ago`;
  const h = Math.round(m / 60);
  if (h < 24) return `${h} h ago`;
  return new Date(ms).toLocaleDateString();
}
