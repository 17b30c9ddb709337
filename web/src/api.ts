// Clients of the mesh's services over gRPC-web (same origin as the page), the logged-in
// device's tokens, and what each failure means to a person.
//
// Tabs: every tab of a browser profile shares one device (tokens in localStorage). Each tab
// holds its own Connect stream (the session service gives every stream its own consumer, so
// every tab sees every event). Refresh tokens are single use, so only one tab refreshes at a
// time (a Web Lock), and the others pick the new pair up from localStorage.

import { Code, ConnectError, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { SessionService, type Tokens } from "@chatmesh/sdk/chatmesh/session/v1/session_pb.js";
import { HistoryService } from "@chatmesh/sdk/chatmesh/history/v1/history_pb.js";
import { PresenceService } from "@chatmesh/sdk/chatmesh/presence/v1/presence_pb.js";
import { InferenceService } from "@chatmesh/sdk/chatmesh/inference/v1/inference_pb.js";
import type { DescService } from "@bufbuild/protobuf";
import type { Transport } from "@connectrpc/connect";
import { BinaryReader } from "@bufbuild/protobuf/wire";

const AUTH_KEY = "chatmesh.auth";
// Refresh this long before the access token expires (tokens live 15 minutes).
const REFRESH_AHEAD_MS = 60_000;
// Calls that carry no access token (the credential is in the request).
const PUBLIC_METHODS = new Set(["Register", "Login", "Refresh"]);

export interface Auth {
  userId: string;
  deviceId: string;
  username: string;
  accessToken: string;
  accessExpiresAt: number;
  refreshToken: string;
}

type Listener = (auth: Auth | null) => void;

/** The device's tokens, shared by every tab through localStorage. */
export class AuthStore {
  private listeners = new Set<Listener>();

  constructor() {
    window.addEventListener("storage", (e) => {
      if (e.key === AUTH_KEY) this.emit();
    });
  }

  get(): Auth | null {
    const raw = localStorage.getItem(AUTH_KEY);
    if (!raw) return null;
    try {
      return JSON.parse(raw) as Auth;
    } catch {
      return null;
    }
  }

  set(auth: Auth | null): void {
    if (auth) localStorage.setItem(AUTH_KEY, JSON.stringify(auth));
    else localStorage.removeItem(AUTH_KEY);
    this.emit();
  }

  onChange(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private emit(): void {
    const auth = this.get();
    for (const l of this.listeners) l(auth);
  }
}

export function authFrom(
  username: string,
  reply: { userId: string; deviceId: string; tokens?: Tokens },
): Auth {
  const tokens = reply.tokens;
  if (!tokens) throw new Error("the server sent no tokens");
  return {
    userId: reply.userId,
    deviceId: reply.deviceId,
    username,
    accessToken: tokens.accessToken,
    accessExpiresAt: millis(tokens.accessExpiresAt),
    refreshToken: tokens.refreshToken,
  };
}

export function millis(ts: Timestamp | undefined): number {
  return ts ? timestampDate(ts).getTime() : 0;
}

export class Api {
  readonly auth = new AuthStore();
  readonly session: Client<typeof SessionService>;
  readonly history: Client<typeof HistoryService>;
  readonly presence: Client<typeof PresenceService>;
  readonly inference: Client<typeof InferenceService>;
  /** gRPC-web to the gateway, with the access token added: for the clients the screens make. */
  readonly transport: Transport;
  private readonly clients = new Map<string, unknown>();
  private refreshTimer: number | undefined;

  constructor(baseUrl: string) {
    const bearer: Interceptor = (next) => async (req) => {
      const auth = this.auth.get();
      if (auth && !PUBLIC_METHODS.has(req.method.name)) req.header.set("authorization", `Bearer ${auth.accessToken}`);
      return next(req);
    };
    const transport = createGrpcWebTransport({ baseUrl, interceptors: [bearer] });
    this.session = createClient(SessionService, transport);
    this.history = createClient(HistoryService, transport);
    this.presence = createClient(PresenceService, transport);
    this.inference = createClient(InferenceService, transport);
    this.transport = transport;
    this.auth.onChange(() => this.scheduleRefresh());
    this.scheduleRefresh();
  }

  /**
   * A client of ``service`` on this transport, made once. The documents and forms screens
   * are loaded only when opened, and so are their services' descriptors, through this.
   */
  client<T extends DescService>(service: T): Client<T> {
    let c = this.clients.get(service.typeName) as Client<T> | undefined;
    if (!c) {
      c = createClient(service, this.transport);
      this.clients.set(service.typeName, c);
    }
    return c;
  }

  /** Runs a call; on UNAUTHENTICATED refreshes the tokens once and tries again. */
  async call<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      if (ConnectError.from(e).code !== Code.Unauthenticated || !this.auth.get()) throw e;
      await this.refresh(true);
      return fn();
    }
  }

  /**
   * Trades the refresh token for a new pair, once across tabs. Without ``force`` it does
   * nothing while the access token has more than a minute left (another tab refreshed).
   */
  async refresh(force = false): Promise<void> {
    const run = async () => {
      const before = this.auth.get();
      if (!before) return;
      if (!force && before.accessExpiresAt - Date.now() > REFRESH_AHEAD_MS) return;
      try {
        const reply = await this.session.refresh({ refreshToken: before.refreshToken });
        // Another tab may have rotated the pair while this call was queued behind the lock.
        this.auth.set({ ...authFrom(before.username, { ...before, tokens: reply.tokens }) });
      } catch (e) {
        const err = ConnectError.from(e);
        if (err.code === Code.Unauthenticated) {
          const now = this.auth.get();
          // Only log out when no other tab has rotated the pair in the meantime.
          if (now && now.refreshToken === before.refreshToken) this.auth.set(null);
        }
        throw e;
      }
    };
    const locks = navigator.locks as LockManager | undefined;
    if (locks) {
      const started = this.auth.get()?.refreshToken;
      await locks.request("chatmesh.refresh", async () => {
        // Queued behind another tab's refresh: that one already gave us a fresh pair.
        if (force && this.auth.get()?.refreshToken !== started) return;
        await run();
      });
    } else {
      await run();
    }
  }

  private scheduleRefresh(): void {
    window.clearTimeout(this.refreshTimer);
    const auth = this.auth.get();
    if (!auth) return;
    // A little jitter so that tabs do not all wake at once; the lock makes one of them refresh.
    const due = Math.max(1_000, auth.accessExpiresAt - Date.now() - REFRESH_AHEAD_MS + Math.random() * 5_000);
    this.refreshTimer = window.setTimeout(() => {
      this.refresh().catch(() => undefined);
    }, due);
  }
}

/** The gRPC status code of a failure, or undefined for a non-RPC error. */
export function codeOf(e: unknown): Code | undefined {
  return e instanceof ConnectError ? e.code : ConnectError.from(e).code;
}

/** Milliseconds from the `retry-after-ms` trailer of a RESOURCE_EXHAUSTED answer. */
export function retryAfterMs(e: unknown): number | undefined {
  const err = ConnectError.from(e);
  const value = err.metadata.get("retry-after-ms");
  const ms = value ? Number(value) : NaN;
  return Number.isFinite(ms) ? ms : undefined;
}

export type Action =
  | "register"
  | "login"
  | "send"
  | "lookup"
  | "create"
  | "reply"
  | "load"
  | "collection"
  | "upload"
  | "search"
  | "snapshot"
  | "form"
  | "submit"
  | "redrive"
  | "other";

/** What to tell the person about a failed call, by what they were doing. */
export function describeError(action: Action, e: unknown): string {
  const err = ConnectError.from(e);
  const detail = err.rawMessage;
  switch (err.code) {
    case Code.AlreadyExists:
      if (action === "register") return "That username is taken. Choose another one.";
      if (action === "collection") return "You already have a collection of that name.";
      if (action === "form") return "You already have a form of that name.";
      if (action === "snapshot") return "That collection exists already.";
      return `Already exists: ${detail}`;
    case Code.Unauthenticated:
      if (action === "login") return "Wrong username or password.";
      return "Your session has expired. Please log in again.";
    case Code.ResourceExhausted: {
      const wait = retryAfterMs(e);
      const when = wait ? ` Try again in ${Math.ceil(wait / 1000)} s.` : " Try again in a moment.";
      if (action === "login") return `Too many failed attempts.${when}`;
      if (action === "send") return `You are sending messages too fast.${when}`;
      if (action === "reply") return `The assistant is busy.${when}`;
      if (action === "upload") return `You have as many uploads running as allowed, or the server is busy.${when}`;
      if (action === "submit") return `Too many submissions from here.${when}`;
      if (action === "collection") return `You have as many collections as allowed.${when}`;
      return `Too many requests.${when}`;
    }
    case Code.InvalidArgument:
      if (action === "send" && /text/.test(detail)) return "That message is too long or empty: 1 to 4,000 characters.";
      if (action === "register" && /username/.test(detail))
        return "Usernames are 3 to 32 characters: lowercase letters, digits, '_', '.', '-', starting with a letter.";
      if (action === "register" && /password/.test(detail)) return "Passwords are 8 to 256 characters.";
      return `Not accepted: ${detail}`;
    case Code.NotFound:
      if (action === "lookup" || action === "create") return "There is no user with that name.";
      if (action === "submit" || action === "form") return "There is no such form (the link may be wrong or the form deleted).";
      return `Not found: ${detail}`;
    case Code.PermissionDenied:
      if (action === "form" || action === "redrive") return "Only the form's owner may do that.";
      if (action === "snapshot") return `The server does not allow that snapshot target: ${detail}`;
      if (["send", "create", "load", "reply"].includes(action)) return "You are not a member of that conversation.";
      return `Not allowed: ${detail}`;
    case Code.FailedPrecondition:
      if (action === "create") return "You cannot start a chat with yourself.";
      if (action === "reply") return `The assistant cannot answer now: ${detail}`;
      if (action === "collection") return `That collection is busy: ${detail}`;
      return detail;
    case Code.Unavailable:
    case Code.Unknown:
      if (!navigator.onLine) return "You are offline.";
      return "The server is unreachable right now. Try again in a moment.";
    case Code.DeadlineExceeded:
      return "The server took too long to answer. Try again.";
    case Code.Unimplemented:
      return "The server does not support that yet.";
    case Code.Canceled:
      return "Stopped.";
    default:
      return detail || String(e);
  }
}

/** One broken value of a Submit: the field's key and what is wrong with it, in words. */
export interface FieldViolation {
  field: string;
  description: string;
}

/**
 * The field violations of an INVALID_ARGUMENT answer (google.rpc.BadRequest in the
 * `grpc-status-details-bin` trailer). BadRequest is two strings deep, so it is read with
 * the wire reader rather than a generated type the contracts do not ship.
 */
export function fieldViolations(e: unknown): FieldViolation[] {
  const err = ConnectError.from(e);
  const out: FieldViolation[] = [];
  for (const detail of err.details) {
    if (!("type" in detail) || detail.type !== "google.rpc.BadRequest") continue;
    const reader = new BinaryReader(detail.value);
    while (reader.pos < reader.len) {
      const [field, wire] = reader.tag();
      if (field !== 1) {
        reader.skip(wire);
        continue;
      }
      const inner = new BinaryReader(reader.bytes());
      const v: FieldViolation = { field: "", description: "" };
      while (inner.pos < inner.len) {
        const [f, w] = inner.tag();
        if (f === 1) v.field = inner.string();
        else if (f === 2) v.description = inner.string();
        else inner.skip(w);
      }
      out.push(v);
    }
  }
  return out;
}

/** The value key a violation names: `values["email"]` -> `email`; anything else -> "". */
export function valueKey(field: string): string {
  const m = /^values\["([a-z][a-z0-9_]*)"\]/.exec(field);
  return m ? m[1] : "";
}

/** describeError for failed calls; the message itself for the client's own errors (a bad file). */
export function errorText(action: Action, e: unknown): string {
  if (e instanceof ConnectError) return describeError(action, e);
  return e instanceof Error ? e.message : String(e);
}
