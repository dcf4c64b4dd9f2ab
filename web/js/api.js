// The REST API client: bearer tokens kept in sessionStorage (this tab only), one refresh on a 401.
const BASE = "/api/v1";
const KEY = "admin-mit.tokens";

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
  }
}

let refreshing = null;
const listeners = new Set();

export function tokens() {
  try { return JSON.parse(sessionStorage.getItem(KEY)) || null; } catch { return null; }
}

function store(pair) {
  if (pair) sessionStorage.setItem(KEY, JSON.stringify(pair));
  else sessionStorage.removeItem(KEY);
  listeners.forEach((fn) => fn(pair));
}

/** Called with the new token pair (or null once logged out). */
export function onSession(fn) { listeners.add(fn); }

export function loggedIn() { return Boolean(tokens()); }

async function send(method, path, body, token, signal) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (token) headers.Authorization = `Bearer ${token}`;
  const response = await fetch(BASE + path, {
    method, headers, signal, body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = null;
  if (response.status !== 204) {
    const text = await response.text();
    try { data = text ? JSON.parse(text) : null; } catch { data = { message: text }; }
  }
  return { response, data };
}

async function refresh() {
  const current = tokens();
  if (!current) throw new ApiError(401, { message: "not logged in" });
  if (!refreshing) {
    refreshing = send("POST", "/auth/refresh", { refresh_token: current.refresh_token })
      .then(({ response, data }) => {
        if (!response.ok) { store(null); throw new ApiError(response.status, data); }
        const pair = { ...data, expires_at: Date.now() + data.expires_in * 1000 };
        store(pair);
        return pair;
      })
      .finally(() => { refreshing = null; });
  }
  return refreshing;
}

/** The access token, refreshed first when it is about to expire (for fetch() calls made elsewhere). */
export async function accessToken() {
  const current = tokens();
  if (!current) throw new ApiError(401, { message: "not logged in" });
  if (current.expires_at && Date.now() > current.expires_at - 30_000) return (await refresh()).access_token;
  return current.access_token;
}

export async function request(method, path, body, { signal } = {}) {
  let token = await accessToken();
  let { response, data } = await send(method, path, body, token, signal);
  if (response.status === 401 && tokens()) {
    token = (await refresh()).access_token;
    ({ response, data } = await send(method, path, body, token, signal));
  }
  if (response.status === 401) store(null);
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

export const get = (path, opts) => request("GET", path, undefined, opts);
export const post = (path, body, opts) => request("POST", path, body ?? {}, opts);
export const patch = (path, body, opts) => request("PATCH", path, body, opts);
export const del = (path, opts) => request("DELETE", path, undefined, opts);

/** A query string from an object, leaving out empty values; arrays repeat the key. */
export function qs(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params || {})) {
    if (value === undefined || value === null || value === "") continue;
    if (Array.isArray(value)) value.forEach((v) => search.append(key, v));
    else search.set(key, value);
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

export async function login(username, password, tenantId) {
  const body = { username, password };
  if (tenantId) body.tenant_id = Number(tenantId);
  const previous = tokens();
  const { response, data } = await send("POST", "/auth/login", body);
  if (!response.ok) throw new ApiError(response.status, data);
  store({ ...data, expires_at: Date.now() + data.expires_in * 1000 });
  // Switching tenant is a new login: the session it replaces ends.
  if (previous) send("POST", "/auth/logout", {}, previous.access_token).catch(() => {});
  return data;
}

/** Move this session to another of the user's tenants (POST /auth/switch): a new pair, the old session ends. */
export async function switchTenant(tenantId) {
  const data = await post("/auth/switch", { tenant_id: Number(tenantId) });
  store({ ...data, expires_at: Date.now() + data.expires_in * 1000 });
  return data;
}

export async function logout() {
  try { if (tokens()) await post("/auth/logout"); } catch { /* the session ends here either way */ }
  store(null);
}

