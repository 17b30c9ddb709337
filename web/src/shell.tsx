// The shell: routing (preact-iso), who is signed in, and the screens. The public form page
// (/f/<form id>) needs no account; every other route needs one. The chat screen is mounted
// once per sign-in and only hidden while another screen shows, so its Connect stream and a
// streaming reply carry on.

import { useEffect, useRef, useState } from "preact/hooks";
import { LocationProvider, Route, Router, useLocation } from "preact-iso";
import type { Api, Auth } from "./api.js";
import { ApiContext } from "./ui.js";
import { ChatApp } from "./screens/chat/chat.js";
import { loginView } from "./screens/login.js";
import { lazyScreen } from "./ui.js";

// Each screen past the chat is its own chunk, loaded when first opened (with its
// services' descriptors and, for operations, the charting library).
const DocumentsScreen = lazyScreen(() => import("./screens/documents/DocumentsScreen.js").then((m) => m.DocumentsScreen));
const FormsScreen = lazyScreen(() => import("./screens/forms/FormsScreen.js").then((m) => m.FormsScreen));
const PublicFormPage = lazyScreen(() => import("./screens/forms/PublicFormPage.js").then((m) => m.PublicFormPage));
const OperationsScreen = lazyScreen(() => import("./screens/operations/OperationsScreen.js").then((m) => m.OperationsScreen));

export function App({ api }: { api: Api }) {
  return (
    <ApiContext.Provider value={api}>
      <LocationProvider>
        <Root api={api} />
      </LocationProvider>
    </ApiContext.Provider>
  );
}

function useAuth(api: Api): Auth | null {
  const [auth, setAuth] = useState(api.auth.get());
  useEffect(() => api.auth.onChange(setAuth), [api]);
  return auth;
}

function NotFound() {
  return <p>Nothing here.</p>;
}

function Root({ api }: { api: Api }) {
  const { path } = useLocation();
  const auth = useAuth(api);
  if (path.startsWith("/f/")) return <PublicFormPage formId={path.slice(3).split("/")[0]} />;
  if (!auth) return <Login api={api} />;
  // A token refresh changes the tokens, not who is signed in: keep the shell.
  return <Shell key={`${auth.userId}/${auth.deviceId}`} api={api} auth={auth} />;
}

function Login({ api }: { api: Api }) {
  const host = useRef<HTMLDivElement>(null);
  useEffect(() => {
    host.current?.replaceChildren(loginView(api));
  }, [api]);
  return <div ref={host} />;
}

const SCREENS = [
  { path: "/", label: "Chats", testid: "nav-chats" },
  { path: "/documents", label: "Documents", testid: "nav-documents" },
  { path: "/forms", label: "Forms", testid: "nav-forms" },
  { path: "/operations", label: "Operations", testid: "nav-operations" },
];

function Shell({ api, auth }: { api: Api; auth: Auth }) {
  const { path, route } = useLocation();
  const chatHost = useRef<HTMLDivElement>(null);
  const chat = useRef<ChatApp | null>(null);
  const onChats = path === "/" || path.startsWith("/chats");
  useEffect(() => {
    const app = new ChatApp(api, auth, () => undefined);
    chat.current = app;
    if (chatHost.current) app.mount(chatHost.current);
    return () => {
      app.destroy();
      chat.current = null;
    };
  }, [api, auth.userId, auth.deviceId]);
  useEffect(() => chat.current?.setShown(onChats), [onChats]);
  const current = SCREENS.find((s) => (s.path === "/" ? onChats : path.startsWith(s.path)));
  return (
    <div class="shell">
      <nav class="topnav" data-testid="nav">
        <span class="brand">chatmesh</span>
        {SCREENS.map((s) => (
          <a
            href={s.path}
            data-testid={s.testid}
            class={current === s ? "active" : ""}
            onClick={(e) => {
              e.preventDefault();
              route(s.path);
            }}
          >
            {s.label}
          </a>
        ))}
      </nav>
      <div class="screen chat-screen" ref={chatHost} hidden={!onChats} />
      {!onChats && (
        <div class="screen">
          <Router>
            <Route path="/documents" component={DocumentsScreen} />
            <Route path="/forms" component={FormsScreen} />
            <Route path="/forms/:id" component={FormsScreen} />
            <Route path="/operations" component={OperationsScreen} />
            <Route default component={NotFound} />
          </Router>
        </div>
      )}
    </div>
  );
}
