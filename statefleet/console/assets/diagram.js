// The statechart as an inline SVG: the Mermaid source the API draws
// (GET /v1/definitions/{key}/graph, with ?active=<state value> marking the states an
// instance is in with the class "active"), rendered here by the vendored Mermaid.

import { api } from "./api.js";
import { errorBox, fill, h, stateText } from "./dom.js";

let initialised = false;
let counter = 0;

function mermaid() {
  const found = window.mermaid;
  if (!found) throw new Error("the diagram library did not load");
  if (!initialised) {
    // strict: Mermaid sanitises labels and allows no click handlers or HTML in them.
    found.initialize({ startOnLoad: false, securityLevel: "strict", theme: "default" });
    initialised = true;
  }
  return found;
}

/**
 * Draws `key` (at `version`) into `container`, highlighting `active` (a state value)
 * when given. The container's data-rendered-for says what it shows, so callers can
 * skip a redraw, and tests can wait for it.
 */
export async function drawDiagram(container, key, version, active) {
  const params = { version, active: active === undefined || active === null ? null : JSON.stringify(active) };
  const wanted = JSON.stringify([key, version, params.active]);
  if (container.dataset.renderedFor === wanted) return;
  try {
    const source = await api("GET", `/v1/definitions/${encodeURIComponent(key)}/graph`, { params });
    counter += 1;
    const { svg } = await mermaid().render(`statefleet-diagram-${counter}`, source);
    // Mermaid's output, sanitised by Mermaid itself (securityLevel strict).
    container.innerHTML = svg;
    container.dataset.renderedFor = wanted;
    container.dataset.activeStates = active === undefined || active === null ? "" : stateText(active);
    const activeNodes = container.querySelectorAll("g.active");
    container.dataset.activeCount = String(activeNodes.length);
  } catch (error) {
    fill(container, errorBox(error, "diagram-error"));
    delete container.dataset.renderedFor;
  }
}

/** An empty diagram box with the console's test hook. */
export function diagramBox() {
  return h("div", { class: "diagram", testid: "state-diagram" });
}
