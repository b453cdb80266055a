// Live panels, refreshed by polling GET /v1/learner/status (and after every answer and feedback): expert shares,
// cost and carbon per request, savings against the largest expert, and what the learner is doing.

import { getJson } from "./api.js";
import { barChart, colorOf, expertColor, lineChart } from "./charts.js";
import { byId, el, fill, grams, number, percent, usd } from "./dom.js";
import { totalSavings } from "./savings.js";

// Enough points to see a trend on a narrow panel without the line turning into noise.
const HISTORY = 40;

// Shares of all traffic the learner's store has seen, or of this page's answers when there is no learner.
function sharesOf(state, status) {
  const traffic = status?.traffic;
  if (traffic && traffic.calls > 0) {
    const shares = Object.fromEntries(Object.entries(traffic.experts).map(([n, e]) => [n, e.share]));
    return { shares, caption: `all traffic in the outcome store: ${traffic.requests} requests` };
  }
  const counts = {};
  for (const a of state.answers) counts[a.routing.expert] = (counts[a.routing.expert] || 0) + 1;
  const shares = Object.fromEntries(Object.entries(counts).map(([n, c]) => [n, c / state.answers.length]));
  return { shares, caption: `this page's answers: ${state.answers.length}` };
}

function renderShares(state, status) {
  const { shares, caption } = sharesOf(state, status);
  const rows = state.experts.map((e) => ({
    label: e.name,
    value: shares[e.name] || 0,
    text: percent(shares[e.name] || 0),
    color: expertColor(state.experts, e.name),
  }));
  fill(byId("shares"), barChart(rows, { max: 1 }), el("p", { class: "caption" }, caption));
}

// Per answer on this page: what it cost (solid) and what the largest expert would have cost (dashed).
function againstLargest(recent, routedKey, largestKey, format) {
  return lineChart(
    [
      { name: "routed", values: recent.map((a) => a.comparison[routedKey]), color: "#0072b2" },
      {
        name: `all to ${recent[0].comparison.largest}`,
        values: recent.map((a) => a.comparison[largestKey]),
        color: "#d55e00",
        dashed: true,
      },
    ],
    { format },
  );
}

function renderCostCarbon(state, status) {
  const recent = state.answers.slice(-HISTORY);
  const traffic = status?.traffic;
  const overall = traffic?.requests
    ? `all traffic: ${usd(traffic.cost_usd_per_request)} and ${grams(traffic.carbon_g_per_request)} per request`
    : "";
  if (!recent.length) {
    return fill(
      byId("cost-carbon"),
      el("p", { class: "muted" }, "no answers yet"),
      el("p", { class: "caption" }, overall),
    );
  }
  return fill(
    byId("cost-carbon"),
    el("h4", {}, "cost per answer"),
    againstLargest(recent, "costUsd", "largestCostUsd", usd),
    el("h4", {}, "carbon per answer"),
    againstLargest(recent, "carbonG", "largestCarbonG", grams),
    el("p", { class: "caption" }, overall),
  );
}

function savedRow(label, spent, largest, format) {
  const saved = largest > 0 ? 1 - spent / largest : 0;
  return el(
    "tr",
    {},
    el("th", {}, label),
    el("td", {}, format(spent)),
    el("td", {}, format(largest)),
    el("td", { class: "saved" }, percent(saved)),
  );
}

function renderSavings(state) {
  if (!state.answers.length) return fill(byId("savings"), el("p", { class: "muted" }, "no answers yet"));
  const totals = totalSavings(state.answers.map((a) => a.comparison));
  const largest = state.answers[0].comparison.largest;
  const head = el("tr", {}, el("th"), el("th", {}, "routed"), el("th", {}, `all to ${largest}`), el("th", {}, "saved"));
  return fill(
    byId("savings"),
    el(
      "table",
      {},
      el("thead", {}, head),
      el(
        "tbody",
        {},
        savedRow("cost", totals.costUsd, totals.largestCostUsd, usd),
        savedRow("carbon", totals.carbonG, totals.largestCarbonG, grams),
      ),
    ),
    el(
      "p",
      { class: "caption" },
      `${totals.answers} answers on this page, at the catalog's prices and energy per token`,
    ),
  );
}

// Remember each strategy's reward moving average whenever it moves (it moves once per trained feedback), to draw
// its recent course.
function recordRewards(state, status) {
  for (const [name, value] of Object.entries(status.reward_moving_average || {})) {
    const history = (state.rewards[name] ||= []);
    if (history[history.length - 1] !== value) history.push(value);
    if (history.length > HISTORY) history.shift();
  }
}

function strategyRow(name, s, reward) {
  return el(
    "tr",
    { "data-strategy": name },
    el("th", {}, name),
    el("td", { class: "live-version" }, s?.live_version ?? "–"),
    el("td", { class: "publishes" }, s?.publishes ?? "–"),
    el("td", {}, s?.updates ?? "–"),
    el("td", {}, reward === undefined ? "–" : number(reward, 3)),
  );
}

function learnerTable(status) {
  const rewards = status.reward_moving_average || {};
  const names = [...new Set([...Object.keys(status.strategies), ...Object.keys(rewards)])].sort();
  const head = el("tr", {}, ...["strategy", "version", "publishes", "updates", "reward"].map((h) => el("th", {}, h)));
  return el(
    "table",
    {},
    el("thead", {}, head),
    el("tbody", {}, ...names.map((n) => strategyRow(n, status.strategies[n], rewards[n]))),
  );
}

function renderLearner(state, status) {
  const store = status.store || {};
  const series = Object.entries(state.rewards).map(([name, values], i) => ({ name, values, color: colorOf(i + 2) }));
  fill(
    byId("learner"),
    el(
      "p",
      { class: "counts" },
      el("span", {}, "feedback ", el("b", { id: "feedback-count" }, store.feedback ?? 0)),
      el("span", {}, "outcomes ", el("b", { id: "outcome-count" }, store.outcomes ?? 0)),
    ),
    learnerTable(status),
    el("h4", {}, "reward moving average"),
    series.length
      ? lineChart(series, { format: (v) => number(v, 3) })
      : el("p", { class: "muted" }, "no feedback trained on yet"),
  );
}

// A learner that is disabled (501) or unreachable is a state to show, not a reason to stop the other panels.
function renderLearnerError(error) {
  const hint = error.status === 501 ? "add a `learner:` section to the config to learn from feedback" : "retrying";
  fill(
    byId("learner"),
    el("p", { class: "error" }, `learner status unavailable (${error.status}): ${error.message}`),
    el("p", { class: "muted" }, hint),
  );
}

// Fetch the learner's status once and redraw every panel.
export async function refreshPanels(state) {
  let status = null;
  try {
    status = await getJson("v1/learner/status");
    recordRewards(state, status);
    renderLearner(state, status);
  } catch (e) {
    renderLearnerError(e);
  }
  renderShares(state, status);
  renderCostCarbon(state, status);
  renderSavings(state);
}

export function startPolling(state, intervalMs = 2000) {
  const tick = () => refreshPanels(state).finally(() => setTimeout(tick, intervalMs));
  tick();
}
