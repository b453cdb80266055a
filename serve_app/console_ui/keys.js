// The API key the console sends as `Authorization: Bearer <key>`. It is kept in this tab's sessionStorage only:
// gone when the tab closes, never written to a cookie (so no other page can make the browser send it).

import { byId, el, fill } from "./dom.js";

const STORAGE = "routerllm-api-key";

export function apiKey() {
  try {
    return sessionStorage.getItem(STORAGE) || "";
  } catch {
    return ""; // storage disabled: the console works on an open graph
  }
}

export function setApiKey(key) {
  if (key) sessionStorage.setItem(STORAGE, key);
  else sessionStorage.removeItem(STORAGE);
}

// What a 401 or 403 means for the person at the console.
export function keyHint(status) {
  if (status === 401) return apiKey() ? "the key you gave is not accepted" : "this graph asks for an API key";
  if (status === 403) return "this key may not do that: it needs an admin key";
  return "";
}

// Show the key form with `message`; once a key is given, keep it and call onKey().
export function askForKey(message, onKey) {
  const form = byId("key-form");
  form.hidden = false;
  fill(byId("key-message"), message);
  const input = byId("api-key");
  input.focus();
  form.onsubmit = (event) => {
    event.preventDefault();
    const key = input.value.trim();
    if (!key) return;
    setApiKey(key);
    onKey();
  };
}

// In the header: whether a key is in use, with a way to forget it.
export function renderKeyStatus() {
  const node = byId("key-status");
  if (!apiKey()) return fill(node);
  const forget = el(
    "button",
    {
      type: "button",
      class: "link",
      id: "forget-key",
      onclick: () => {
        setApiKey("");
        window.location.reload();
      },
    },
    "forget",
  );
  return fill(node, "API key in use (this tab only) · ", forget);
}
