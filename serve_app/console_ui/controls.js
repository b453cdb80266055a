// Routing controls: the strategy, the four objective weights (sent as router.weights) and the carbon budget left
// (router.carbon_budget_left). preferences() reads them for the next chat request.

import { byId, el, fill, number } from "./dom.js";

export const OBJECTIVES = ["quality", "cost", "carbon", "latency"];
// The router's utility is w_quality * quality - w_cost * cost_norm - ...: with every figure in [0, 1], a weight of 5
// already lets one objective outweigh every other, so a longer range would only make the sliders coarse.
const WEIGHT_MAX = 5;

function strategyOptions(settings) {
  return settings.strategies.map((name) => {
    const learned = settings.learned_online.includes(name) ? " (learns online)" : "";
    return el("option", { value: name, selected: name === settings.default_strategy }, name + learned);
  });
}

function weightSlider(objective, value) {
  const id = `weight-${objective}`;
  const shown = el("output", { id: `${id}-value`, for: id }, number(value, 2));
  const slider = el("input", {
    id,
    type: "range",
    min: 0,
    max: WEIGHT_MAX,
    step: 0.05,
    value,
    oninput: (event) => (shown.textContent = number(event.target.value, 2)),
  });
  return el("label", { class: "slider" }, el("span", {}, objective), slider, shown);
}

// Build the controls inside #controls from GET /v1/router's summary.
export function renderControls(settings) {
  const weights = settings.default_weights;
  fill(
    byId("controls"),
    el(
      "label",
      { class: "field" },
      el("span", {}, "strategy"),
      el("select", { id: "strategy" }, ...strategyOptions(settings)),
    ),
    el("fieldset", {}, el("legend", {}, "objective weights"), ...OBJECTIVES.map((o) => weightSlider(o, weights[o]))),
    el(
      "label",
      { class: "field" },
      el("span", {}, "carbon budget left"),
      el("input", { id: "budget", type: "number", min: 0, max: 1, step: 0.05, value: 1 }),
    ),
    el(
      "label",
      { class: "field" },
      el("span", {}, "max tokens"),
      el("input", { id: "max-tokens", type: "number", min: 1, max: 4096, step: 1, value: 64 }),
    ),
  );
}

// The budget field, checked: the server refuses values outside [0, 1], so say so before sending.
function budgetLeft() {
  const value = Number(byId("budget").value);
  if (!Number.isFinite(value) || value < 0 || value > 1)
    throw new Error("the carbon budget left must be between 0 and 1");
  return value;
}

// The `router` object and max_tokens of the next chat request.
export function preferences() {
  const weights = Object.fromEntries(OBJECTIVES.map((o) => [o, Number(byId(`weight-${o}`).value)]));
  return {
    router: { strategy: byId("strategy").value, weights, carbon_budget_left: budgetLeft() },
    max_tokens: Math.max(1, Math.round(Number(byId("max-tokens").value) || 64)),
  };
}
