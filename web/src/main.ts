// The chatmesh browser client: the login screen or the chat, following the shared tokens.

import "./style.css";
import { Api, type Auth } from "./api.js";
import { ChatApp } from "./app.js";
import { loginView } from "./login.js";

// Same origin as the page (the gateway serves both); VITE_GATEWAY_URL for `vite dev`.
const baseUrl = (import.meta.env.VITE_GATEWAY_URL as string | undefined) || window.location.origin;
const api = new Api(baseUrl);
const root = document.getElementById("app") as HTMLElement;
let chat: ChatApp | null = null;
let shownFor: string | null | undefined;

function show(auth: Auth | null): void {
  const key = auth ? `${auth.userId}/${auth.deviceId}` : null;
  if (key === shownFor) return; // a token refresh changes nothing on screen
  shownFor = key;
  chat?.destroy();
  chat = null;
  if (auth) {
    chat = new ChatApp(api, auth, () => show(api.auth.get()));
    chat.mount(root);
  } else {
    root.replaceChildren(loginView(api));
  }
}

api.auth.onChange(show);
show(api.auth.get());
