// The console: a router over the page's path and one function per view. Every view
// reads and acts through the public /v1 routes (api.js); live views poll them.

import { allPages, api, ApiError, session } from "./api.js";
import { drawDiagram, diagramBox } from "./diagram.js";
import { age, badge, errorBox, fill, h, link, pretty, preview, stateText, when } from "./dom.js";
import { forms, taskActions } from "./tasks.js";

const POLL_MS = 2000;
const PAGE = 50;
const STATUSES = ["running", "done", "failed", "cancelled"];
const main = document.getElementById("main");

// -- the view lifecycle: one view at a time, its pollers stop when it is left ----------

let stops = [];

function stopView() {
  for (const stop of stops) stop();
  stops = [];
}

/** Runs `refresh` now and every POLL_MS while the view is shown, never overlapping. */
function poll(refresh) {
  let timer = null;
  let stopped = false;
  const tick = async () => {
    if (stopped) return;
    try {
      if (!forms.open) await refresh();
    } finally {
      if (!stopped) timer = setTimeout(tick, POLL_MS);
    }
  };
  stops.push(() => {
    stopped = true;
    clearTimeout(timer);
  });
  return tick();
}

// -- routing --------------------------------------------------------------------------

const routes = [
  [/^\/ui\/?$/, instancesView],
  [/^\/ui\/instances\/([^/]+)$/, instanceView],
  [/^\/ui\/inbox$/, inboxView],
  [/^\/ui\/definitions$/, definitionsView],
  [/^\/ui\/definitions\/([^/]+)$/, definitionView],
  [/^\/ui\/batches$/, batchesView],
  [/^\/ui\/dead-letters$/, deadLettersView],
];

export function navigate(path) {
  window.history.pushState({}, "", path);
  render();
}

async function render() {
  stopView();
  forms.open = 0;
  const signedIn = Boolean(session.key);
  document.getElementById("nav").hidden = !signedIn;
  document.getElementById("logout").hidden = !signedIn;
  document.querySelector("[data-testid=nav-dead-letters]").hidden = session.role !== "admin";
  if (!signedIn) {
    loginView();
    return;
  }
  const path = window.location.pathname;
  for (const [pattern, view] of routes) {
    const match = pattern.exec(path);
    if (!match) continue;
    if (session.role === "admin" && view !== deadLettersView) {
      navigate("/ui/dead-letters");
      return;
    }
    fill(main, h("p", { class: "muted" }, "Loading…"));
    try {
      await view(...match.slice(1).map(decodeURIComponent));
    } catch (error) {
      fill(main, errorBox(error));
    }
    return;
  }
  fill(main, h("h1", {}, "Not found"), h("p", {}, "No view at ", h("code", {}, path), ". "), link("/ui/", "Instances"));
}

document.addEventListener("click", (event) => {
  const anchor = event.target.closest("a[data-link]");
  if (!anchor || event.metaKey || event.ctrlKey || event.shiftKey || event.button !== 0) return;
  event.preventDefault();
  navigate(anchor.getAttribute("href"));
});
window.addEventListener("popstate", render);
document.getElementById("logout").addEventListener("click", () => {
  session.clear();
  render();
});
window.addEventListener("statefleet:unauthorized", (event) => {
  session.clear();
  render().then(() => {
    const problem = document.querySelector("[data-testid=login-error]");
    if (problem) fill(problem, event.detail.text);
  });
});

// -- sign-in --------------------------------------------------------------------------

/** Which key is it? A tenant key reads /v1/instances; the admin key is refused there
 * (403) and reads /v1/admin/dead-letters instead. Anything else: the API's error. */
async function roleOf(key) {
  try {
    await api("GET", "/v1/instances", { params: { limit: 1 }, key });
    return "tenant";
  } catch (error) {
    if (!(error instanceof ApiError) || error.status !== 403) throw error;
    try {
      await api("GET", "/v1/admin/dead-letters", { params: { limit: 1 }, key });
      return "admin";
    } catch {
      throw error;
    }
  }
}

function loginView() {
  const key = h("input", {
    id: "login-key",
    type: "password",
    testid: "login-key",
    autocomplete: "off",
    placeholder: "sf_…",
    required: true,
  });
  const problem = h("p", { class: "error", testid: "login-error", role: "alert" });
  const form = h(
    "form",
    { class: "login" },
    h("h1", {}, "Sign in"),
    h("p", { class: "muted" }, "Paste a tenant API key (statefleet up prints one). It stays in this browser tab only."),
    h("label", { for: "login-key" }, "API key"),
    key,
    h("button", { type: "submit", testid: "login-submit" }, "Sign in"),
    problem,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    problem.replaceChildren();
    const secret = key.value.trim();
    try {
      session.save(secret, await roleOf(secret));
      render();
    } catch (error) {
      fill(problem, error.text || String(error));
    }
  });
  fill(main, form);
  key.focus();
}

// -- instances ------------------------------------------------------------------------

async function instancesView() {
  const query = new URLSearchParams(window.location.search);
  const definition = h("select", { testid: "filter-definition", "aria-label": "definition" }, h("option", { value: "" }, "all definitions"));
  const status = h(
    "select",
    { testid: "filter-status", "aria-label": "status" },
    h("option", { value: "" }, "any status"),
    STATUSES.map((s) => h("option", { value: s }, s)),
  );
  const prefix = h("input", { testid: "filter-id", placeholder: "id starts with…", "aria-label": "id prefix", value: query.get("id") || "" });
  const rows = h("tbody");
  const problem = h("div");
  const prev = h("button", { type: "button", class: "secondary", testid: "page-prev" }, "← Newer");
  const next = h("button", { type: "button", class: "secondary", testid: "page-next" }, "Older →");
  const pageInfo = h("span", { class: "muted" });
  fill(
    main,
    h("h1", {}, "Instances"),
    h("form", { class: "filters", onsubmit: (e) => e.preventDefault() }, definition, status, prefix),
    problem,
    h(
      "table",
      { testid: "instance-table" },
      h("thead", {}, h("tr", {}, ["Instance", "Status", "Current state", "Definition", "Age"].map((t) => h("th", {}, t)))),
      rows,
    ),
    h("div", { class: "pager" }, prev, pageInfo, next),
  );

  try {
    const defs = await api("GET", "/v1/definitions");
    for (const d of defs.items) definition.append(h("option", { value: d.key }, d.key));
  } catch (error) {
    problem.replaceChildren(errorBox(error));
  }
  definition.value = query.get("definition") || "";
  status.value = query.get("status") || "";

  // Cursors of the pages seen so far: pages[i] is the cursor that reads page i.
  let pages = [null];
  let index = 0;
  let nextCursor = null;
  let shown = "";

  async function refresh() {
    const id = prefix.value.trim();
    if (id && !/^[0-9a-fA-F-]{1,36}$/.test(id)) {
      problem.replaceChildren(errorBox("an id prefix holds only hex digits and dashes", "filter-error"));
      return;
    }
    const page = await api("GET", "/v1/instances", {
      params: { definitionKey: definition.value, status: status.value, idPrefix: id, limit: PAGE, cursor: pages[index] },
    });
    problem.replaceChildren();
    nextCursor = page.nextCursor;
    prev.disabled = index === 0;
    next.disabled = !nextCursor;
    pageInfo.textContent = `page ${index + 1}`;
    const now = Date.now();
    const fingerprint = JSON.stringify(page.items.map((i) => [i.id, i.status, i.value, i.updatedAt])) + Math.floor(now / 10000);
    if (fingerprint === shown) return;
    shown = fingerprint;
    if (!page.items.length) {
      fill(rows, h("tr", { testid: "instances-empty" }, h("td", { colspan: 5, class: "muted" }, "No instances match.")));
      return;
    }
    fill(
      rows,
      page.items.map((i) =>
        h(
          "tr",
          {
            testid: "instance-row",
            data: { instanceId: i.id, status: i.status },
            class: "clickable",
            // The whole row opens the instance, not only its id's link.
            onclick: (event) => {
              if (!event.target.closest("a")) navigate(`/ui/instances/${i.id}`);
            },
          },
          h("td", {}, link(`/ui/instances/${i.id}`, i.id, { class: "mono" })),
          h("td", {}, badge(i.status)),
          h("td", { class: "mono" }, stateText(i.value)),
          h("td", {}, `${i.definitionKey} v${i.definitionVersion}`),
          h("td", { title: when(i.createdAt) }, age(i.createdAt, now)),
        ),
      ),
    );
  }

  const guarded = async () => {
    try {
      await refresh();
    } catch (error) {
      problem.replaceChildren(errorBox(error));
    }
  };
  function restart() {
    pages = [null];
    index = 0;
    shown = "";
    const params = new URLSearchParams();
    if (definition.value) params.set("definition", definition.value);
    if (status.value) params.set("status", status.value);
    if (prefix.value.trim()) params.set("id", prefix.value.trim());
    const search = params.toString();
    window.history.replaceState({}, "", `/ui/${search ? `?${search}` : ""}`);
    guarded();
  }
  definition.addEventListener("change", restart);
  status.addEventListener("change", restart);
  let typing = null;
  prefix.addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(restart, 300);
  });
  next.addEventListener("click", () => {
    if (!nextCursor) return;
    pages = [...pages.slice(0, index + 1), nextCursor];
    index += 1;
    shown = "";
    guarded();
  });
  prev.addEventListener("click", () => {
    if (index === 0) return;
    index -= 1;
    shown = "";
    guarded();
  });
  await poll(guarded);
}

// -- one instance ---------------------------------------------------------------------

/** What an effect asked for, in a few words. */
function effectText(effect) {
  if (!effect || typeof effect !== "object") return String(effect);
  const task = effect.task || {};
  switch (effect.type) {
    case "createTask":
      return `createTask ${task.type || ""} ${task.name || ""}`.trim();
    case "cancelTask":
      return `cancelTask ${effect.name || effect.key || effect.id || ""}`.trim();
    case "scheduleTimer":
      return `scheduleTimer ${effect.event || ""} ${effect.delay ?? ""}`.trim();
    case "cancelTimer":
      return `cancelTimer ${effect.event || ""}`.trim();
    default:
      return preview(effect, 60);
  }
}

/** An AI task's decision, when this audit row carries one (docs/ai.md). */
function aiDecision(payload) {
  const decision = payload && typeof payload === "object" ? payload.decision : null;
  if (!decision || typeof decision !== "object") return null;
  const verdict = payload.emitted ? "emitted" : payload.rejected ? "rejected" : "not emitted";
  const confidence = typeof decision.confidence === "number" ? ` at confidence ${decision.confidence}` : "";
  return h(
    "div",
    { class: `ai-decision ai-${verdict.replace(" ", "-")}`, testid: "ai-decision" },
    h("strong", {}, `AI decision: ${decision.event}`),
    `${confidence}: ${verdict}`,
    payload.rejectionReason ? h("div", {}, `why: ${payload.rejectionReason}`) : null,
    decision.reason ? h("div", {}, `model's reason: ${decision.reason}`) : null,
    payload.model ? h("div", { class: "muted" }, `${payload.provider || ""} ${payload.model}`.trim()) : null,
  );
}

function historyRow(entry) {
  const effects = Array.isArray(entry.effects) ? entry.effects : [];
  return h(
    "li",
    { testid: "history-row", data: { seq: entry.seq }, class: entry.handled ? "" : "unhandled" },
    h("span", { class: "seq" }, `#${entry.seq}`),
    h(
      "div",
      { class: "entry" },
      h("div", {}, h("strong", { class: "mono" }, entry.type), entry.handled ? "" : h("span", { class: "badge" }, "not handled")),
      h("div", { class: "mono" }, stateText(entry.stateBefore) || "—", " → ", stateText(entry.stateAfter) || "—"),
      effects.length ? h("div", { class: "effects" }, effects.map((e) => h("code", {}, effectText(e)))) : null,
      aiDecision(entry.payload),
      entry.payload && !aiDecision(entry.payload) && Object.keys(entry.payload).length
        ? h("div", { class: "muted mono" }, preview(entry.payload, 120))
        : null,
      entry.error ? h("div", { class: "error" }, entry.error) : null,
    ),
    h("time", { datetime: entry.createdAt }, when(entry.createdAt)),
  );
}

function taskRow(task, refresh) {
  return h(
    "tr",
    { testid: "task-row", data: { taskId: task.id, status: task.status, type: task.type } },
    h("td", {}, h("strong", {}, task.name), h("div", { class: "muted mono" }, task.id)),
    h("td", {}, task.kind === "timer" ? "timer" : task.type),
    h("td", {}, badge(task.status, "task-status")),
    h("td", {}, `${task.attempts} / ${task.maxAttempts}`),
    h("td", { class: "error-text" }, task.lastError || ""),
    h("td", {}, taskActions(task, refresh)),
  );
}

async function instanceView(id) {
  let instance = await api("GET", `/v1/instances/${encodeURIComponent(id)}`);
  const summary = h("dl", { class: "summary" });
  const actions = h("div", { class: "actions" });
  const actionProblem = h("div");
  const diagram = diagramBox();
  const context = h("pre", { testid: "instance-context" });
  const output = h("pre", { testid: "instance-output" });
  const taskRows = h("tbody");
  const timeline = h("ol", { class: "timeline", testid: "history" });
  const problem = h("div");
  fill(
    main,
    h("p", {}, link("/ui/", "← Instances")),
    h("h1", { class: "mono" }, id),
    problem,
    summary,
    actions,
    actionProblem,
    h("section", {}, h("h2", {}, "Diagram"), diagram),
    h("div", { class: "columns" }, h("section", {}, h("h2", {}, "Context"), context), h("section", {}, h("h2", {}, "Output"), output)),
    h(
      "section",
      {},
      h("h2", {}, "Tasks"),
      h(
        "table",
        { testid: "task-table" },
        h("thead", {}, h("tr", {}, ["Task", "Type", "Status", "Attempts", "Last error", ""].map((t) => h("th", {}, t)))),
        taskRows,
      ),
    ),
    h("section", {}, h("h2", {}, "Audit log"), timeline),
  );

  const eventType = h("input", { testid: "instance-send-type", placeholder: "EVENT_TYPE", "aria-label": "event type", required: true });
  const eventPayload = h("input", { testid: "instance-send-payload", placeholder: '{"payload": "JSON"}', "aria-label": "event payload (JSON)" });
  const sendForm = h(
    "form",
    { class: "inline" },
    eventType,
    eventPayload,
    h("button", { type: "submit", testid: "instance-send" }, "Send event"),
  );
  sendForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    actionProblem.replaceChildren();
    let payload = null;
    try {
      payload = eventPayload.value.trim() ? JSON.parse(eventPayload.value) : null;
    } catch (error) {
      actionProblem.replaceChildren(errorBox(`the payload is not JSON: ${error.message}`, "action-error"));
      return;
    }
    try {
      await api("POST", `/v1/instances/${id}/events`, { body: { type: eventType.value.trim(), payload } });
      eventType.value = "";
      eventPayload.value = "";
      actionProblem.replaceChildren(h("p", { class: "ok", testid: "action-ok" }, "Event accepted."));
      await refresh();
    } catch (error) {
      actionProblem.replaceChildren(errorBox(error, "action-error"));
    }
  });
  const cancel = h("button", { type: "button", class: "danger", testid: "instance-cancel" }, "Cancel instance");
  cancel.addEventListener("click", async () => {
    actionProblem.replaceChildren();
    try {
      instance = await api("POST", `/v1/instances/${id}/cancel`);
      await refresh();
    } catch (error) {
      actionProblem.replaceChildren(errorBox(error, "action-error"));
    }
  });
  actions.append(sendForm, cancel);

  let lastSeq = -1;
  let tasksShown = "";

  async function refresh() {
    instance = await api("GET", `/v1/instances/${id}`);
    fill(
      summary,
      h("dt", {}, "Status"),
      h("dd", {}, badge(instance.status, "instance-status")),
      h("dt", {}, "Current state"),
      h("dd", { class: "mono", testid: "instance-state" }, stateText(instance.value)),
      h("dt", {}, "Definition"),
      h("dd", {}, link(`/ui/definitions/${encodeURIComponent(instance.definitionKey)}?version=${instance.definitionVersion}`, `${instance.definitionKey} v${instance.definitionVersion}`)),
      h("dt", {}, "Created"),
      h("dd", {}, when(instance.createdAt), h("span", { class: "muted" }, ` (${age(instance.createdAt)} ago)`)),
      h("dt", {}, "Updated"),
      h("dd", {}, when(instance.updatedAt)),
      instance.batchId ? [h("dt", {}, "Batch"), h("dd", { class: "mono" }, instance.batchId)] : null,
      instance.error ? [h("dt", {}, "Error"), h("dd", { class: "error-text", testid: "instance-error" }, instance.error)] : null,
    );
    actions.hidden = instance.status !== "running";
    context.textContent = pretty(instance.context);
    output.textContent = instance.output === null || instance.output === undefined ? "—" : pretty(instance.output);
    await drawDiagram(diagram, instance.definitionKey, instance.definitionVersion, instance.value);

    let cursor = null;
    do {
      const page = await api("GET", `/v1/instances/${id}/history`, { params: { after: cursor ?? lastSeq, limit: 1000 } });
      for (const entry of page.items) {
        if (entry.seq <= lastSeq) continue; // an overlapping refresh showed it already
        timeline.append(historyRow(entry));
        lastSeq = entry.seq;
      }
      cursor = page.nextCursor;
    } while (cursor);

    const tasks = await api("GET", `/v1/instances/${id}/tasks`);
    const fingerprint = JSON.stringify(tasks.items.map((t) => [t.id, t.status, t.attempts, t.lastError]));
    if (fingerprint !== tasksShown && !forms.open) {
      tasksShown = fingerprint;
      fill(
        taskRows,
        tasks.items.length
          ? tasks.items.map((t) =>
              taskRow(t, async () => {
                tasksShown = ""; // redraw the row even if the task did not change (Back)
                await refresh();
              }),
            )
          : h("tr", {}, h("td", { colspan: 6, class: "muted" }, "No tasks.")),
      );
    }
  }

  await poll(async () => {
    try {
      await refresh();
      problem.replaceChildren();
    } catch (error) {
      problem.replaceChildren(errorBox(error));
    }
  });
}

// -- the inbox ------------------------------------------------------------------------

async function inboxView() {
  const rows = h("tbody");
  const problem = h("div");
  const more = h("button", { type: "button", class: "secondary", testid: "page-next" }, "More…");
  fill(
    main,
    h("h1", {}, "Inbox"),
    h("p", { class: "muted" }, "Pending HUMAN tasks of every instance, the longest waiting first."),
    problem,
    h(
      "table",
      { testid: "inbox" },
      h("thead", {}, h("tr", {}, ["Task", "Instance", "Input", "Waiting", ""].map((t) => h("th", {}, t)))),
      rows,
    ),
    more,
  );
  let limit = PAGE;
  let shown = "";
  async function refresh() {
    const page = await api("GET", "/v1/tasks", { params: { status: "pending", type: "HUMAN", limit } });
    more.hidden = !page.nextCursor;
    const now = Date.now();
    const fingerprint = JSON.stringify(page.items.map((t) => t.id)) + Math.floor(now / 10000);
    if (fingerprint === shown) return;
    shown = fingerprint;
    fill(
      rows,
      page.items.length
        ? page.items.map((t) =>
            h(
              "tr",
              { testid: "task-row", data: { taskId: t.id, instanceId: t.instanceId, status: t.status, type: t.type } },
              h("td", {}, h("strong", {}, t.name)),
              h("td", {}, link(`/ui/instances/${t.instanceId}`, t.instanceId, { class: "mono" })),
              h("td", { class: "mono" }, preview(t.input, 60)),
              h("td", { title: when(t.createdAt) }, age(t.createdAt, now)),
              h("td", {}, taskActions(t, async () => { shown = ""; await guarded(); })),
            ),
          )
        : h("tr", { testid: "inbox-empty" }, h("td", { colspan: 5, class: "muted" }, "Nothing waits for a person.")),
    );
  }
  const guarded = async () => {
    try {
      await refresh();
      problem.replaceChildren();
    } catch (error) {
      problem.replaceChildren(errorBox(error));
    }
  };
  more.addEventListener("click", () => {
    limit += PAGE;
    shown = "";
    guarded();
  });
  await poll(guarded);
}

// -- definitions ----------------------------------------------------------------------

async function definitionsView() {
  const defs = await api("GET", "/v1/definitions");
  fill(
    main,
    h("h1", {}, "Definitions"),
    h(
      "table",
      {},
      h("thead", {}, h("tr", {}, ["Key", "Latest version", "Deployed", "Checksum"].map((t) => h("th", {}, t)))),
      h(
        "tbody",
        {},
        defs.items.length
          ? defs.items.map((d) =>
              h(
                "tr",
                { testid: "definition-row", data: { key: d.key } },
                h("td", {}, link(`/ui/definitions/${encodeURIComponent(d.key)}`, d.key)),
                h("td", {}, `v${d.version}`),
                h("td", {}, when(d.createdAt)),
                h("td", { class: "mono muted" }, d.checksum.slice(0, 12)),
              ),
            )
          : h("tr", {}, h("td", { colspan: 4, class: "muted" }, "Nothing deployed yet: statefleet deploy SPEC.json")),
      ),
    ),
  );
}

async function definitionView(key) {
  const latest = await api("GET", `/v1/definitions/${encodeURIComponent(key)}`);
  const asked = Number(new URLSearchParams(window.location.search).get("version")) || latest.version;
  const picker = h("select", { testid: "definition-version", "aria-label": "version" });
  for (let v = latest.version; v >= 1; v -= 1) picker.append(h("option", { value: v }, `v${v}`));
  picker.value = String(Math.min(asked, latest.version));
  const diagram = diagramBox();
  const spec = h("pre", { testid: "definition-spec" });
  const counts = h("tbody");
  fill(
    main,
    h("p", {}, link("/ui/definitions", "← Definitions")),
    h("h1", {}, key),
    h("label", {}, "Version ", picker),
    h("section", {}, h("h2", {}, "Diagram"), diagram),
    h(
      "section",
      {},
      h("h2", {}, "Instances per version"),
      h("p", { class: "muted" }, "Among the newest 1,000 instances of this definition."),
      h("table", {}, h("thead", {}, h("tr", {}, ["Version", ...STATUSES].map((t) => h("th", {}, t)))), counts),
    ),
    h("section", {}, h("h2", {}, "Spec"), spec),
  );
  async function show() {
    const version = Number(picker.value);
    window.history.replaceState({}, "", `/ui/definitions/${encodeURIComponent(key)}?version=${version}`);
    const definition = await api("GET", `/v1/definitions/${encodeURIComponent(key)}/versions/${version}`);
    spec.textContent = pretty(definition.spec);
    await drawDiagram(diagram, key, version, null);
  }
  picker.addEventListener("change", () => show().catch((error) => fill(spec, errorBox(error))));
  await show();
  const instances = await allPages("/v1/instances", { definitionKey: key, limit: 1000 }, 1000);
  const byVersion = new Map();
  for (const i of instances) {
    const row = byVersion.get(i.definitionVersion) || Object.fromEntries(STATUSES.map((s) => [s, 0]));
    row[i.status] = (row[i.status] || 0) + 1;
    byVersion.set(i.definitionVersion, row);
  }
  fill(
    counts,
    [...byVersion.entries()]
      .sort((a, b) => b[0] - a[0])
      .map(([v, row]) => h("tr", { testid: "version-row", data: { version: v } }, h("td", {}, `v${v}`), STATUSES.map((s) => h("td", {}, row[s])))),
  );
}

// -- batches --------------------------------------------------------------------------

async function batchesView() {
  const rows = h("tbody");
  const problem = h("div");
  const lookup = h("input", { testid: "batch-id", placeholder: "batch id", "aria-label": "batch id" });
  const extra = new Set();
  fill(
    main,
    h("h1", {}, "Batches"),
    h("p", { class: "muted" }, "The batches of the newest 1,000 instances, and any you look up."),
    h("form", { class: "inline", onsubmit: (e) => { e.preventDefault(); extra.add(lookup.value.trim()); lookup.value = ""; guarded(); } }, lookup, h("button", { type: "submit" }, "Look up")),
    problem,
    h("table", {}, h("thead", {}, h("tr", {}, ["Batch", "Progress", "Done", "Failed", "Cancelled", "Running", "Total"].map((t) => h("th", {}, t)))), rows),
  );
  async function refresh() {
    const instances = await allPages("/v1/instances", { limit: 1000 }, 1000);
    const ids = [...new Set([...extra, ...instances.map((i) => i.batchId).filter(Boolean)])].slice(0, 25);
    const found = await Promise.all(ids.map((b) => api("GET", `/v1/batches/${encodeURIComponent(b)}`).catch((error) => ({ batchId: b, error }))));
    fill(
      rows,
      found.length
        ? found.map((b) => {
            if (b.error) return h("tr", {}, h("td", { class: "mono" }, b.batchId), h("td", { colspan: 6 }, errorBox(b.error)));
            const finished = b.counts.done + b.counts.failed + b.counts.cancelled;
            return h(
              "tr",
              { testid: "batch-row", data: { batchId: b.batchId } },
              h("td", { class: "mono" }, b.batchId),
              h("td", {}, h("progress", { max: b.total, value: finished, testid: "batch-progress" }), ` ${Math.floor((100 * finished) / Math.max(1, b.total))}%`),
              h("td", {}, b.counts.done),
              h("td", {}, b.counts.failed),
              h("td", {}, b.counts.cancelled),
              h("td", {}, b.counts.running),
              h("td", {}, b.total),
            );
          })
        : h("tr", {}, h("td", { colspan: 7, class: "muted" }, "No batches: statefleet batch KEY inputs.jsonl")),
    );
  }
  const guarded = async () => {
    try {
      await refresh();
      problem.replaceChildren();
    } catch (error) {
      problem.replaceChildren(errorBox(error));
    }
  };
  await poll(guarded);
}

// -- dead letters (the admin key) -----------------------------------------------------

async function deadLettersView() {
  if (session.role !== "admin") {
    fill(main, h("h1", {}, "Dead letters"), h("p", {}, "Only the admin key reads dead letters; sign in with it to see them."));
    return;
  }
  const found = await api("GET", "/v1/admin/dead-letters", { params: { limit: 200 } });
  fill(
    main,
    h("h1", {}, "Dead letters"),
    h("p", { class: "muted" }, "Queue jobs that could never succeed, newest first. The admin key reads only these."),
    h(
      "table",
      {},
      h("thead", {}, h("tr", {}, ["When", "Queue", "Tenant", "Reason", "Body"].map((t) => h("th", {}, t)))),
      h(
        "tbody",
        {},
        found.items.length
          ? found.items.map((d) =>
              h(
                "tr",
                { testid: "dead-letter-row" },
                h("td", {}, when(d.createdAt)),
                h("td", {}, d.queue),
                h("td", {}, d.tenantId || "—"),
                h("td", {}, d.reason),
                h("td", { class: "mono" }, d.body.length > 200 ? `${d.body.slice(0, 199)}…` : d.body),
              ),
            )
          : h("tr", {}, h("td", { colspan: 5, class: "muted" }, "None.")),
      ),
    ),
  );
}

render();
