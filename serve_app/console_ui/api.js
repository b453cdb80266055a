// The console's only door to the server: JSON calls and the streamed chat, all relative to where /ui is served
// (so the console works under any Serve route prefix, e.g. /learn/ui calls /learn/v1/...).

import { apiKey, keyHint } from "./keys.js";

const BASE = new URL("./", window.location.href);

// An HTTP error with the server's own message (OpenAI's {"error": {"message", "code"}} shape when it has one).
export class ApiError extends Error {
  constructor(status, message, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function apiUrl(path) {
  return new URL(path, BASE).toString();
}

async function errorOf(response) {
  const text = await response.text();
  const hint = keyHint(response.status);
  let message = text || response.statusText;
  let code;
  try {
    const error = JSON.parse(text).error || {};
    message = error.message || text;
    code = error.code;
  } catch {
    // not JSON: the text itself is the message
  }
  return new ApiError(response.status, hint ? `${hint} (${message})` : message, code);
}

// Every call carries the console's API key when one is set.
function withKey(options = {}) {
  const key = apiKey();
  if (!key) return options;
  return { ...options, headers: { ...(options.headers || {}), authorization: `Bearer ${key}` } };
}

async function call(path, options) {
  let response;
  try {
    response = await fetch(apiUrl(path), withKey(options));
  } catch (e) {
    throw new ApiError(0, `cannot reach the server (${e.message})`);
  }
  if (!response.ok) throw await errorOf(response);
  return response;
}

export async function getJson(path) {
  return (await call(path, { cache: "no-store" })).json();
}

export async function postJson(path, body) {
  const headers = { "content-type": "application/json" };
  return (await call(path, { method: "POST", headers, body: JSON.stringify(body) })).json();
}

// One server-sent event's data: a chunk object, or null for the closing [DONE].
function parseEvent(block) {
  const data = block
    .split("\n")
    .filter((line) => line.startsWith("data:"))
    .map((line) => line.slice(5).trim())
    .join("\n");
  if (!data || data === "[DONE]") return null;
  return JSON.parse(data);
}

// Apply one chunk: text goes to onText, the last chunk's routing and usage are kept.
function applyChunk(chunk, onText, result) {
  if (chunk.error) throw new ApiError(200, chunk.error.message, chunk.error.code);
  const delta = chunk.choices?.[0]?.delta?.content;
  if (delta) onText(delta);
  if (chunk.model) result.model = chunk.model;
  if (chunk.routing) result.routing = chunk.routing;
  if (chunk.usage) result.usage = chunk.usage;
}

// POST /v1/chat/completions with stream: true. Calls onText(piece) as pieces arrive; resolves to
// {model, routing, usage} once the stream ends (routing comes with the last chunk).
export async function streamChat(body, onText) {
  const response = await call("v1/chat/completions", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ ...body, stream: true, stream_options: { include_usage: true } }),
  });
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  const result = { model: null, routing: null, usage: null };
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    buffer += decoder.decode(value || new Uint8Array(), { stream: !done });
    // Events end with a blank line; the last piece of the buffer may be an unfinished event.
    const blocks = buffer.split("\n\n");
    buffer = blocks.pop();
    for (const block of blocks) {
      const chunk = parseEvent(block);
      if (chunk) applyChunk(chunk, onText, result);
    }
    if (done) break;
  }
  if (!result.routing) throw new ApiError(200, "the stream ended without its routing metadata");
  return result;
}
