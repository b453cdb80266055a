// Entry point of the console: read what the graph offers, build the controls, wire the chat, start polling.
// Every failure lands in the error banner; the page never goes blank.

import { getJson } from "./api.js";
import { setupChat } from "./chat.js";
import { renderControls } from "./controls.js";
import { byId, el, fill } from "./dom.js";
import { askForKey, renderKeyStatus } from "./keys.js";
import { refreshPanels, startPolling } from "./panels.js";

// Everything the modules share: the catalog, the grid intensity, this page's answers, the learner's rewards.
const state = { experts: [], intensity: 0, answers: [], rewards: {} };

function showError(message) {
  const banner = byId("errors");
  banner.hidden = false;
  banner.append(el("p", {}, message));
}

function renderHealth(health, settings) {
  fill(
    byId("health"),
    el("span", { class: health.status === "ok" ? "ok" : "error" }, `● ${health.status}`),
    ` ${health.experts.length} experts · default strategy ${settings.default_strategy}`,
  );
}

async function boot() {
  renderKeyStatus();
  const [health, settings, catalog] = await Promise.all([
    getJson("healthz"),
    getJson("v1/router"),
    getJson("v1/experts"),
  ]);
  state.experts = catalog.experts;
  state.intensity = settings.carbon_intensity_g_per_kwh;
  renderHealth(health, settings);
  renderControls(settings);
  setupChat(state, {
    onAnswer: (answer) => {
      state.answers.push(answer);
      refreshPanels(state);
    },
    onFeedback: () => refreshPanels(state),
  });
  byId("send").disabled = false;
  startPolling(state);
}

window.addEventListener("unhandledrejection", (event) =>
  showError(`unexpected error: ${event.reason?.message ?? event.reason}`),
);
boot().catch((e) => {
  if (e.status === 401 || e.status === 403) {
    // Keyed graph: ask for a key, then start again with it.
    askForKey(`${e.message} (${e.status}). Paste your API key: it is kept in this browser tab only.`, () =>
      window.location.reload(),
    );
    return;
  }
  showError(`the console could not start (${e.status ?? "?"}): ${e.message}`);
});
