// Building the page: every value from the registry becomes text (textContent), never markup.
import { ExactNumber } from "./json.js";

// h("a", {href: "#/"}, "Models", child...): an element; attributes set one by one, children as text or nodes.
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (name in element && typeof value !== "string") element[name] = value;
    else element.setAttribute(name, value === true ? "" : String(value));
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(element, child);
    else element.append(child instanceof Node ? child : String(child));
  }
}

export function when(text) {
  if (!text) return "";
  const moment = new Date(text);
  if (Number.isNaN(moment.getTime())) return h("span", {}, text);
  return h("time", { datetime: text, title: text }, moment.toLocaleString(undefined, { year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", hourCycle: "h23" }));
}

export function labels(list = [], remove) {
  if (!list.length) return h("span", { class: "muted" }, "none");
  return h("ul", { class: "labels" }, list.map(({ Key, Value }) => h("li", { class: "label" },
    h("span", { class: "label-key" }, Key), Value ? h("span", { class: "label-value" }, Value) : null,
    remove ? h("button", { type: "button", class: "label-remove", "aria-label": `Remove label ${Key}`, title: `Remove label ${Key}`,
      onclick: (event) => remove(Key, event.currentTarget) }, "×") : null)));
}

// Any JSON value, readably: objects as key/value tables (nested within reason), lists inline, the rest as text.
export function value(data, depth = 0) {
  if (data === null || data === undefined) return h("span", { class: "muted" }, "null");
  if (data instanceof ExactNumber) return h("span", { class: "json-number" }, data.text);
  if (typeof data !== "object") return h("span", { class: `json-${typeof data}` }, String(data));
  if (depth >= 3) return h("code", { class: "json" }, JSON.stringify(data));
  if (Array.isArray(data)) {
    if (data.every((item) => item === null || typeof item !== "object" || item instanceof ExactNumber)) {
      return h("span", {}, data.map(String).join(", ") || "[]");
    }
    return h("ol", { class: "json-list" }, data.map((item) => h("li", {}, value(item, depth + 1))));
  }
  const entries = Object.entries(data);
  if (!entries.length) return h("span", { class: "muted" }, "{}");
  return h("table", { class: "kv" }, h("tbody", {}, entries.map(([k, v]) => h("tr", {}, h("th", { scope: "row" }, k), h("td", {}, value(v, depth + 1))))));
}

// Metrics as a two-column table, nested objects flattened to dotted names (f1.macro).
export function metrics(data) {
  const rows = [];
  const walk = (prefix, item) => {
    if (item && typeof item === "object" && !Array.isArray(item) && !(item instanceof ExactNumber) && Object.keys(item).length) {
      for (const [key, inner] of Object.entries(item)) walk(prefix ? `${prefix}.${key}` : key, inner);
    } else {
      rows.push([prefix, item !== null && typeof item === "object" && !(item instanceof ExactNumber) ? JSON.stringify(item) : String(item)]);
    }
  };
  walk("", data);
  return h("table", { class: "kv metrics" }, h("tbody", {}, rows.map(([name, text]) => h("tr", {}, h("th", { scope: "row" }, name), h("td", {}, text)))));
}

// A panel saying what went wrong, with the registry's code, message and request ID, and what to do next.
export function failure(error, actions = [], message = error.message) {
  return h("div", { class: "alert", role: "alert" },
    h("p", {}, h("strong", {}, error.code || "Error"), ": ", message),
    error.requestId ? h("p", { class: "muted small" }, "Request ID ", h("code", {}, error.requestId)) : null,
    actions.length ? h("p", { class: "actions" }, actions) : null);
}
