// Small DOM and formatting helpers. Data from the API is only ever written as text
// (text nodes, attributes), never parsed as HTML, so a state name or a payload
// cannot inject markup.

/**
 * h("tr", {testid: "instance-row", data: {instanceId: id}}, "text", child...)
 * Attributes: testid -> data-testid, data -> dataset, class, on<event> -> listener,
 * anything else -> setAttribute (false/null/undefined leave it out).
 */
export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "testid") element.dataset.testid = value;
    else if (name === "data") Object.assign(element.dataset, value);
    else if (name === "class") element.className = value;
    else if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2), value);
    } else if (name === "value") element.value = value;
    else element.setAttribute(name, value === true ? "" : String(value));
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces the children of `element`. */
export function fill(element, ...children) {
  element.replaceChildren();
  append(element, children);
  return element;
}

/** A link the console's router follows without reloading the page. */
export function link(href, text, attrs = {}) {
  return h("a", { href, "data-link": true, ...attrs }, text);
}

/** An instance's state value as people read it: "review.waiting, audit.idle". */
export function stateText(value) {
  if (value === null || value === undefined) return "";
  if (typeof value === "string") return value;
  const parts = [];
  for (const [key, inner] of Object.entries(value)) {
    const below = stateText(inner);
    parts.push(...(below ? below.split(", ").map((p) => `${key}.${p}`) : [key]));
  }
  return parts.join(", ");
}

/** "42s", "7m", "3h", "2d": how long ago `iso` was. */
export function age(iso, now = Date.now()) {
  const seconds = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (seconds < 60) return `${seconds}s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)}h`;
  return `${Math.floor(seconds / 86400)}d`;
}

/** A timestamp in the reader's locale, with seconds. */
export function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "";
}

/** JSON, indented, for <pre>. */
export function pretty(value) {
  return value === undefined ? "" : JSON.stringify(value, null, 2);
}

/** A one-line preview of JSON, cut at `width` characters. */
export function preview(value, width = 80) {
  if (value === null || value === undefined) return "";
  const text = JSON.stringify(value);
  return text.length > width ? `${text.slice(0, width - 1)}…` : text;
}

/** A status as a coloured badge (the colour comes from console.css, by class). */
export function badge(status, testid) {
  return h("span", { class: `badge badge-${status}`, testid }, status);
}

/** An error box: the API's code and message, as the API said them. */
export function errorBox(error, testid = "error") {
  const text = error && error.text ? error.text : String(error && error.message ? error.message : error);
  return h("p", { class: "error", testid, role: "alert" }, text);
}
