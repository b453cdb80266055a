// The chat: each prompt is sent on its own (so each answer shows how that prompt alone was routed), the answer
// streams in, then its routing metadata and feedback controls appear under it.

import { postJson, streamChat } from "./api.js";
import { barChart, expertColor, splitBar, thumbIcon } from "./charts.js";
import { preferences } from "./controls.js";
import { byId, el, fill, grams, ms, number, usd } from "./dom.js";
import { compareWithLargest } from "./savings.js";

const LATENCY_COLORS = { embedding: "#56b4e9", router: "#0072b2", other: "#999999", expert: "#e69f00" };

// Per-expert scores as bars, the chosen expert in bold. Scores are on each strategy's own scale (moe: log gates),
// so bars run from the lowest score to the highest.
function scoresChart(state, routing) {
  const entries = Object.entries(routing.scores);
  if (!entries.length) return el("p", { class: "muted" }, "no scores (a direct request)");
  const values = entries.map(([, v]) => v);
  const low = Math.min(...values);
  const rows = entries.map(([name, v]) => ({
    label: name,
    value: v,
    text: number(v, 3),
    color: expertColor(state.experts, name),
    highlight: name === routing.expert,
  }));
  return barChart(rows, { min: low - (Math.max(...values) - low || 1) * 0.1 });
}

// Embedding call, router call, the rest of the routing path, then the expert: the whole answer's latency.
function latencySplit(latency) {
  const handles = (latency.embedding || 0) + (latency.router || 0);
  const parts = [
    { label: "embedding", value: latency.embedding || 0 },
    { label: "router", value: latency.router || 0 },
    { label: "other", value: Math.max((latency.routing || 0) - handles, 0) },
    { label: "expert", value: latency.expert || 0 },
  ];
  const legend = parts.map((p) =>
    el(
      "span",
      { class: "key" },
      el("i", { style: `background:${LATENCY_COLORS[p.label]}` }),
      `${p.label} ${ms(p.value)}`,
    ),
  );
  const bar = splitBar(parts.map((p) => ({ ...p, color: LATENCY_COLORS[p.label] })));
  return el(
    "div",
    { class: "latency" },
    bar,
    el("div", { class: "legend" }, ...legend, el("b", {}, `total ${ms(latency.total)}`)),
  );
}

function fact(label, value, attrs = {}) {
  return el("div", { class: "fact" }, el("dt", {}, label), el("dd", attrs, value));
}

function routingFacts(state, routing, comparison) {
  const saved = comparison.largestCostUsd - comparison.costUsd;
  const swatch = el("i", { class: "swatch", style: `background:${expertColor(state.experts, routing.expert)}` });
  return el(
    "dl",
    { class: "facts" },
    fact("expert", el("span", {}, swatch, routing.expert), { class: "expert" }),
    fact("strategy", routing.strategy),
    fact("confidence", number(routing.confidence, 3)),
    fact("policy version", routing.policy_version ?? "none", { class: "policy-version" }),
    fact("tokens in / out", `${routing.tokens_in ?? "–"} / ${routing.tokens_out ?? "–"}`),
    fact("cost", usd(routing.cost_usd)),
    fact("carbon", grams(routing.carbon_g)),
    fact("cost saved", usd(saved), { title: `against ${comparison.largest}, the largest expert` }),
    fact("carbon saved", grams(comparison.largestCarbonG - comparison.carbonG), {
      title: `against ${comparison.largest}`,
    }),
  );
}

function renderRouting(state, card, routing, comparison) {
  const failover = routing.failover_from?.length
    ? el("p", { class: "warning" }, `failed over from ${routing.failover_from.map((f) => f.expert).join(", ")}`)
    : null;
  fill(
    card.querySelector(".routing"),
    routingFacts(state, routing, comparison),
    failover,
    el("h4", {}, "scores (higher is better)"),
    scoresChart(state, routing),
    el("h4", {}, "latency"),
    latencySplit(routing.latency_ms),
  );
}

// POST one score; the status line says what happened. A refused score can be sent again, except a duplicate.
async function sendFeedback(requestId, score, view, onFeedback) {
  view.buttons.forEach((b) => (b.disabled = true));
  view.status.textContent = "sending…";
  try {
    await postJson("v1/feedback", { request_id: requestId, score });
    view.status.textContent = `score ${number(score, 2)} recorded`;
    view.status.className = "feedback-status ok";
    onFeedback();
  } catch (e) {
    view.status.textContent = `feedback refused (${e.status}): ${e.message}`;
    view.status.className = "feedback-status error";
    if (e.status !== 409) view.buttons.forEach((b) => (b.disabled = false));
  }
}

function button(className, title, onclick, content) {
  return el("button", { type: "button", class: className, title, onclick }, content);
}

// Thumbs up (1), thumbs down (0) or any score in [0, 1]: POST /v1/feedback. One score per answer (a second is 409).
function feedbackControls(requestId, onFeedback) {
  const score = el("input", { type: "number", min: 0, max: 1, step: 0.1, value: 0.5, "aria-label": "score" });
  const view = { status: el("span", { class: "feedback-status" }), buttons: [] };
  const send = (value) => sendFeedback(requestId, value, view, onFeedback);
  view.buttons = [
    button("thumb-up", "thumbs up: good answer (score 1)", () => send(1), thumbIcon(false)),
    button("thumb-down", "thumbs down: bad answer (score 0)", () => send(0), thumbIcon(true)),
    button("send-score", "send this score in [0, 1]", () => send(Number(score.value)), "send score"),
  ];
  const [up, down, custom] = view.buttons;
  return el("div", { class: "feedback" }, up, down, score, custom, view.status);
}

function answerCard(prompt) {
  return el(
    "article",
    { class: "answer pending" },
    el("p", { class: "prompt" }, prompt),
    el("p", { class: "reply" }),
    el("div", { class: "routing" }, el("p", { class: "muted" }, "routing…")),
  );
}

// Send one prompt and render its answer; resolves once the answer and its metadata are shown.
async function ask(state, prompt, hooks) {
  const card = answerCard(prompt);
  byId("no-answers")?.remove();
  byId("answers").prepend(card);
  const reply = card.querySelector(".reply");
  try {
    const request = preferences();
    const messages = [{ role: "user", content: prompt }];
    const { routing } = await streamChat(
      { model: "router", messages, ...request },
      (piece) => (reply.textContent += piece),
    );
    const comparison = compareWithLargest(routing, state.experts, state.intensity);
    renderRouting(state, card, routing, comparison);
    card.append(feedbackControls(routing.request_id, hooks.onFeedback));
    card.classList.replace("pending", "done");
    hooks.onAnswer({ routing, comparison });
  } catch (e) {
    card.classList.replace("pending", "failed");
    fill(
      card.querySelector(".routing"),
      el("p", { class: "error" }, `request failed (${e.status ?? "?"}): ${e.message}`),
    );
  }
}

// Wire the prompt form; hooks.onAnswer({routing, comparison}) and hooks.onFeedback() update the panels.
export function setupChat(state, hooks) {
  const form = byId("chat-form");
  const input = byId("prompt");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const prompt = input.value.trim();
    if (!prompt) return;
    input.value = "";
    byId("send").disabled = true;
    try {
      await ask(state, prompt, hooks);
    } finally {
      byId("send").disabled = false;
      input.focus();
    }
  });
  // Enter sends, Shift+Enter starts a new line, as in most chat apps.
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
}
