// Small DOM helpers: build elements without innerHTML (no markup injection), announce status.

/** h("button", {class: "x", testid: "y", onclick: fn}, "text", child…) */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "testid") el.dataset.testid = value;
    else if (key === "text") el.textContent = value;
    else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key === "value") el.value = value;
    else if (key === "checked") el.checked = Boolean(value);
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

let uid = 0;
/** A labelled form field: the label names the control (accessible by its label). */
export function field(labelText, control, hint) {
  if (!control.id) control.id = `f${++uid}`;
  const wrap = h("div", { class: "field" }, h("label", { for: control.id, text: labelText }), control);
  if (hint) {
    const hintEl = h("small", { id: `${control.id}-hint`, class: "hint", text: hint });
    control.setAttribute("aria-describedby", hintEl.id);
    wrap.append(hintEl);
  }
  return wrap;
}

let statusTimer = null;
/** Say something in the status region; it clears itself (it never goes stale). */
export function say(text, kind = "info") {
  const region = document.getElementById("status");
  if (!region) return;
  region.textContent = text || "";
  region.dataset.kind = kind;
  clearTimeout(statusTimer);
  if (text) statusTimer = setTimeout(() => { region.textContent = ""; }, kind === "error" ? 10000 : 5000);
}

export function when(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return d.toLocaleString(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

export function ms(value) {
  if (value === undefined || value === null) return "–";
  return value >= 1000 ? `${(value / 1000).toFixed(2)} s` : `${Math.round(value)} ms`;
}

/** A table from rows and column definitions [{title, cell(row) -> Node|string}]. */
export function table(columns, rows, empty = "Nothing yet.") {
  if (!rows.length) return h("p", { class: "empty", text: empty });
  return h("div", { class: "table-wrap" }, h("table", {},
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col", text: c.title })))),
    h("tbody", {}, rows.map((row) => h("tr", {}, columns.map((c) => h("td", { "data-label": c.title }, c.cell(row))))))));
}

/** A titled card. */
export function card(title, ...children) {
  return h("section", { class: "card" }, title ? h("h2", { text: title }) : null, ...children);
}

/** Run an async action; report its failure in the status region instead of throwing. */
export async function attempt(action, okText) {
  try {
    const result = await action();
    if (okText) say(okText, "ok");
    return result;
  } catch (err) {
    say(err.message || String(err), "error");
    return undefined;
  }
}
