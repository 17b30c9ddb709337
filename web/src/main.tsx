// The chatmesh browser client: a public form for anyone with its link, else the login
// screen or the signed-in shell (chats, documents, forms, operations), following the
// tokens the tabs share.

import "./style.css";
import { render } from "preact";
import { Api } from "./api.js";
import { App } from "./shell.js";

// Same origin as the page (the gateway serves both); VITE_GATEWAY_URL for `vite dev`.
const baseUrl = (import.meta.env.VITE_GATEWAY_URL as string | undefined) || window.location.origin;
const api = new Api(baseUrl);
render(<App api={api} />, document.getElementById("app") as HTMLElement);
