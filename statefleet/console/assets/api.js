// The console's only way to the server: the public /v1 routes, with the pasted key as
// the API's usual bearer header, exactly as statefleet.client calls them.

const KEY = "statefleet.apiKey";
const ROLE = "statefleet.role";

/** An error answer of the API: {"error": {"code", "message"}} (docs/api.md, "Errors"). */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }

  /** What a person reads: the API's own code and message. */
  get text() {
    return `${this.status} ${this.code}: ${this.message}`;
  }
}

/** The key lives in sessionStorage only: gone when the tab closes, never in a cookie. */
export const session = {
  get key() {
    return sessionStorage.getItem(KEY);
  },
  get role() {
    return sessionStorage.getItem(ROLE) || "tenant";
  },
  save(key, role) {
    sessionStorage.setItem(KEY, key);
    sessionStorage.setItem(ROLE, role);
  },
  clear() {
    sessionStorage.removeItem(KEY);
    sessionStorage.removeItem(ROLE);
  },
};

/**
 * Calls the API. `params` become the query string (null and undefined are left out);
 * `body` is sent as JSON. Resolves to the parsed JSON (or the text of a text answer);
 * rejects with an ApiError carrying the API's code and message.
 */
export async function api(method, path, { params, body, key } = {}) {
  const url = new URL(path, window.location.origin);
  for (const [name, value] of Object.entries(params || {})) {
    if (value !== null && value !== undefined && value !== "") {
      url.searchParams.set(name, String(value));
    }
  }
  const headers = { Accept: "application/json" };
  const secret = key ?? session.key;
  if (secret) headers.Authorization = `Bearer ${secret}`;
  const init = { method, headers };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(url, init);
  } catch (error) {
    throw new ApiError(0, "network", `the server did not answer (${error.message})`);
  }
  const text = await response.text();
  if (!response.ok) {
    let code = "error";
    let message = text || response.statusText;
    try {
      const parsed = JSON.parse(text).error;
      code = parsed.code;
      message = parsed.message;
    } catch {
      // Not the API's error shape (a proxy's page): show the raw text.
    }
    const error = new ApiError(response.status, code, message);
    if (response.status === 401 && key === undefined) {
      window.dispatchEvent(new CustomEvent("statefleet:unauthorized", { detail: error }));
    }
    throw error;
  }
  const type = response.headers.get("content-type") || "";
  return type.includes("application/json") ? JSON.parse(text) : text;
}

/** Every item of a cursor-paginated list, up to `max` items. */
export async function allPages(path, params, max = 1000) {
  const items = [];
  let cursor = null;
  do {
    const page = await api("GET", path, { params: { ...params, cursor } });
    items.push(...page.items);
    cursor = page.nextCursor;
  } while (cursor && items.length < max);
  return items.slice(0, max);
}
