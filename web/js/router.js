// Hash routes: "#/probes/12?range=24h" -> the page registered for "/probes/:id", with params and query.

const routes = [];
let notFound = null;

export function route(pattern, page) {
  const names = [];
  const regex = new RegExp(`^${pattern.replace(/:(\w+)/g, (_, name) => { names.push(name); return "([^/]+)"; })}$`);
  routes.push({ regex, names, page });
}

export function fallback(page) { notFound = page; }

export function parse(hash = location.hash) {
  const text = hash.replace(/^#/, "") || "/";
  const [path, search = ""] = text.split("?");
  return { path: path || "/", query: Object.fromEntries(new URLSearchParams(search)) };
}

export function match(path) {
  for (const { regex, names, page } of routes) {
    const found = regex.exec(path);
    if (found) return { page, params: Object.fromEntries(names.map((n, i) => [n, decodeURIComponent(found[i + 1])])) };
  }
  return { page: notFound, params: {} };
}

export function go(path) { location.hash = `#${path}`; }

/** Change the query of the current route without a navigation (filters that can be bookmarked). */
export function setQuery(query) {
  const { path } = parse();
  const search = new URLSearchParams(Object.entries(query).filter(([, v]) => v !== "" && v !== undefined && v !== null));
  const text = search.toString();
  history.replaceState(null, "", `#${path}${text ? `?${text}` : ""}`);
}
