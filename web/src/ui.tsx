// Small pieces every Preact screen shares: an error line, timestamps, a polling hook.

import { createContext, type ComponentType } from "preact";
import { useContext, useEffect, useRef, useState } from "preact/hooks";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { type Api, millis } from "./api.js";

/** The one Api of the page, for every screen. */
export const ApiContext = createContext<Api | null>(null);

export function useApi(): Api {
  const api = useContext(ApiContext);
  if (!api) throw new Error("no Api above this component");
  return api;
}

export function ErrorLine({ text, testid = "error" }: { text: string; testid?: string }) {
  return text ? (
    <div class="error" role="alert" data-testid={testid}>
      {text}
    </div>
  ) : null;
}

export function when(ts: Timestamp | undefined): string {
  const ms = millis(ts);
  return ms ? new Date(ms).toLocaleString([], { dateStyle: "short", timeStyle: "medium" }) : "";
}

export function bytes(n: bigint | number): string {
  const v = Number(n);
  if (v < 1024) return `${v} B`;
  if (v < 1024 * 1024) return `${(v / 1024).toFixed(1)} KiB`;
  return `${(v / 1024 / 1024).toFixed(1)} MiB`;
}

/** Runs ``tick`` now and every ``ms`` while the component is mounted and the tab visible. */
export function usePoll(tick: () => Promise<void> | void, ms: number, deps: unknown[] = []): void {
  const latest = useRef(tick);
  latest.current = tick;
  useEffect(() => {
    let stopped = false;
    let timer = 0;
    const run = async () => {
      if (stopped) return;
      if (document.visibilityState === "visible") {
        try {
          await latest.current();
        } catch {
          // each tick reports its own errors
        }
      }
      if (!stopped) timer = window.setTimeout(run, ms);
    };
    void run();
    return () => {
      stopped = true;
      window.clearTimeout(timer);
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [ms, ...deps]);
}

/**
 * A component loaded on first use (a dynamic import: its own chunk); "Loading…" until then.
 * The module is fetched once and shared by every later use.
 */
export function lazyScreen<P extends object>(load: () => Promise<ComponentType<P>>): ComponentType<P> {
  let loaded: ComponentType<P> | null = null;
  let pending: Promise<ComponentType<P>> | null = null;
  return function Lazy(props: P) {
    const [, setReady] = useState(0);
    const [failed, setFailed] = useState("");
    useEffect(() => {
      if (loaded) return;
      pending ??= load();
      pending.then(
        (c) => {
          loaded = c;
          setReady((n) => n + 1);
        },
        (e: unknown) => {
          pending = null;
          setFailed(`This screen could not be loaded (${String(e)}). Reload the page.`);
        },
      );
    }, []);
    if (failed) return <ErrorLine text={failed} />;
    const C = loaded;
    return C ? <C {...props} /> : <p class="muted">Loading…</p>;
  };
}
