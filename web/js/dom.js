// Small DOM helpers: escaping for HTML templates, element creation, event delegation.

const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

export function esc(value) {
  return value === null || value === undefined ? "" : String(value).replace(/[&<>"']/g, (c) => ESCAPES[c]);
}

/** A tagged template that escapes every interpolated value unless it is raw(). */
export function html(strings, ...values) {
  let out = strings[0];
  values.forEach((value, i) => {
    if (Array.isArray(value)) out += value.map((v) => (v && v.__raw !== undefined ? v.__raw : esc(v))).join("");
    else out += value && value.__raw !== undefined ? value.__raw : esc(value);
    out += strings[i + 1];
  });
  return { __raw: out };
}

export const raw = (text) => ({ __raw: text });

export function render(element, template) {
  element.innerHTML = template.__raw !== undefined ? template.__raw : esc(template);
  return element;
}

/** One listener on `root` for clicks on elements matching `selector` (no listener per row). */
export function delegate(root, type, selector, handler) {
  root.addEventListener(type, (event) => {
    const target = event.target.closest(selector);
    if (target && root.contains(target)) handler(event, target);
  });
}

export function debounce(fn, ms) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

export function $(selector, root = document) { return root.querySelector(selector); }

/** A short message at the top of the page (errors and confirmations). */
export function toast(message, kind = "info") {
  let box = document.getElementById("toasts");
  if (!box) {
    box = document.createElement("div");
    box.id = "toasts";
    document.body.append(box);
  }
  const item = document.createElement("div");
  item.className = `toast toast-${kind}`;
  item.setAttribute("role", kind === "error" ? "alert" : "status");
  item.textContent = message;
  box.append(item);
  setTimeout(() => item.remove(), kind === "error" ? 8000 : 4000);
}

/** The form's fields as an object (empty strings left out). */
export function formData(form) {
  const out = {};
  for (const [key, value] of new FormData(form).entries()) if (value !== "") out[key] = value;
  return out;
}
