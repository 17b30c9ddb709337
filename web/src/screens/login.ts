// Register and log in.

import { type Api, authFrom, describeError } from "../api.js";
import { h } from "../dom.js";

export function loginView(api: Api): HTMLElement {
  const username = h("input", {
    name: "username",
    autocomplete: "username",
    placeholder: "Username",
    "data-testid": "username",
    required: "",
  });
  const password = h("input", {
    name: "password",
    type: "password",
    autocomplete: "current-password",
    placeholder: "Password",
    "data-testid": "password",
    required: "",
  });
  const error = h("div", { class: "error", role: "alert", "data-testid": "login-error", hidden: "" });
  const login = h("button", { type: "submit", "data-testid": "login" }, "Log in");
  const register = h("button", { type: "button", "data-testid": "register" }, "Create account");
  const form = h(
    "form",
    { class: "login" },
    h("h1", {}, "chatmesh"),
    username,
    password,
    h("div", { class: "buttons" }, login, register),
    error,
  );

  const deviceName = `${browserName()} (web)`;
  async function run(action: "login" | "register"): Promise<void> {
    const name = username.value.trim().toLowerCase();
    if (!name || !password.value) {
      fail("Enter a username and a password.");
      return;
    }
    login.disabled = register.disabled = true;
    error.hidden = true;
    try {
      if (action === "register") {
        const reply = await api.session.register({ username: name, password: password.value, deviceName });
        api.auth.set(authFrom(name, reply));
      } else {
        const deviceId = localStorage.getItem(`chatmesh.device.${name}`) ?? "";
        const reply = await api.session.login({ username: name, password: password.value, deviceName, deviceId });
        api.auth.set(authFrom(name, reply));
      }
    } catch (e) {
      fail(describeError(action, e));
    } finally {
      login.disabled = register.disabled = false;
    }
  }
  function fail(text: string): void {
    error.textContent = text;
    error.hidden = false;
  }
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    void run("login");
  });
  register.addEventListener("click", () => void run("register"));
  return form;
}

function browserName(): string {
  const ua = navigator.userAgent;
  if (/Firefox\//.test(ua)) return "Firefox";
  if (/Edg\//.test(ua)) return "Edge";
  if (/Chrom(e|ium)\//.test(ua)) return "Chrome";
  if (/Safari\//.test(ua)) return "Safari";
  return "Browser";
}
