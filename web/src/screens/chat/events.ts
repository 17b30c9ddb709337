// The tab's session.Connect stream: opened with the last sequence it saw, so a reconnect
// after a drop gets the missed events replayed (or ResyncRequired when they are too old);
// reopened with back-off after any failure; closed at once when the browser goes offline.

import { Code, ConnectError } from "@connectrpc/connect";
import type { Event } from "@chatmesh/sdk/chatmesh/events/v1/events_pb.js";
import type { Api } from "../../api.js";

export type ConnectionState = "connecting" | "connected" | "reconnecting" | "offline";

// No event at all (KeepAlive comes every 25 s on an idle stream) for this long: the stream is dead.
const WATCHDOG_MS = 60_000;
const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 10_000;

export interface StreamHandlers {
  onEvent(event: Event, sequence: bigint): void;
  onState(state: ConnectionState): void;
  /** The stream is live: first after login, then after every reconnect (``resumed`` true). */
  onLive(resumed: boolean): void;
  onLoggedOut(): void;
}

export class EventStream {
  private lastSequence: bigint;
  private watch: string[] = [];
  private controller: AbortController | null = null;
  private stopped = false;
  private wake: (() => void) | null = null;
  private everLive = false;
  private readonly storageKey: string;

  constructor(
    private readonly api: Api,
    private readonly handlers: StreamHandlers,
    deviceId: string,
  ) {
    // Per tab (sessionStorage): each tab's stream has its own position.
    this.storageKey = `chatmesh.lastSequence.${deviceId}`;
    this.lastSequence = BigInt(sessionStorage.getItem(this.storageKey) ?? "0");
    window.addEventListener("offline", this.onOffline);
    window.addEventListener("online", this.onOnline);
  }

  get sequence(): bigint {
    return this.lastSequence;
  }

  /** Users whose presence changes the stream carries; a change reopens the stream. */
  setWatch(userIds: string[]): void {
    const next = [...new Set(userIds)].sort();
    if (next.join() === this.watch.join()) return;
    this.watch = next;
    if (this.controller) this.restart();
  }

  start(): void {
    void this.loop();
  }

  stop(): void {
    this.stopped = true;
    window.removeEventListener("offline", this.onOffline);
    window.removeEventListener("online", this.onOnline);
    this.controller?.abort();
    this.wake?.();
  }

  private restart(): void {
    this.controller?.abort();
  }

  private onOffline = (): void => {
    this.handlers.onState("offline");
    this.controller?.abort();
  };

  private onOnline = (): void => {
    this.wake?.();
  };

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = window.setTimeout(done, ms);
      function done() {
        window.clearTimeout(timer);
        resolve();
      }
      this.wake = done;
    });
  }

  private async loop(): Promise<void> {
    let backoff = BACKOFF_MIN_MS;
    while (!this.stopped) {
      if (!navigator.onLine) {
        this.handlers.onState("offline");
        await this.sleep(BACKOFF_MAX_MS);
        continue;
      }
      this.handlers.onState(this.everLive ? "reconnecting" : "connecting");
      const controller = new AbortController();
      this.controller = controller;
      let watchdog = window.setTimeout(() => controller.abort(), WATCHDOG_MS);
      let live = false;
      try {
        const stream = this.api.session.connect(
          { lastSequence: this.lastSequence, watchUserIds: this.watch },
          { signal: controller.signal },
        );
        for await (const reply of stream) {
          window.clearTimeout(watchdog);
          watchdog = window.setTimeout(() => controller.abort(), WATCHDOG_MS);
          if (!live) {
            live = true;
            backoff = BACKOFF_MIN_MS;
            this.handlers.onState("connected");
            this.handlers.onLive(this.everLive);
            this.everLive = true;
          }
          if (reply.sequence > this.lastSequence) {
            this.lastSequence = reply.sequence;
            sessionStorage.setItem(this.storageKey, String(reply.sequence));
          }
          if (reply.event) this.handlers.onEvent(reply.event, reply.sequence);
        }
      } catch (e) {
        const err = ConnectError.from(e);
        if (err.code === Code.Unauthenticated) {
          try {
            await this.api.refresh(true);
            continue;
          } catch {
            this.handlers.onLoggedOut();
            return;
          }
        }
      } finally {
        window.clearTimeout(watchdog);
        this.controller = null;
      }
      if (this.stopped) return;
      if (!navigator.onLine) continue;
      // A stream restarted for a new watch list reopens at once; a failure waits first.
      if (controller.signal.aborted && live) continue;
      this.handlers.onState("reconnecting");
      await this.sleep(backoff + Math.random() * 250);
      backoff = Math.min(BACKOFF_MAX_MS, backoff * 2);
    }
  }
}
