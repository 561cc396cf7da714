// Forms: fields with labels and hints, the request body they make, and errors shown next to the field they name.
import { h } from "./dom.js";
import { layout } from "./json.js";

let unique = 0;

// A labelled field. kind: "text" (default), "textarea", "json", "labels", "integer" or a list of choices.
export function field(name, label, { kind = "text", value = "", hint = "", required = false, list, placeholder } = {}) {
  const id = `f${++unique}-${name}`;
  const described = [hint ? `${id}-hint` : null, `${id}-error`].filter(Boolean).join(" ");
  const common = { id, name, "aria-describedby": described, required, placeholder, "data-kind": Array.isArray(kind) ? "choice" : kind };
  let input;
  if (Array.isArray(kind)) {
    input = h("select", common, kind.map(([choice, text]) => h("option", { value: choice, selected: choice === value }, text)));
  } else if (kind === "textarea" || kind === "json" || kind === "labels") {
    input = h("textarea", { ...common, rows: kind === "textarea" ? 3 : 4, spellcheck: kind === "textarea" }, value);
  } else {
    input = h("input", { ...common, type: "text", value, inputmode: kind === "integer" ? "numeric" : undefined, list,
      autocomplete: "off" });
  }
  return h("div", { class: "field" },
    h("label", { for: id }, label, required ? h("span", { class: "required", "aria-hidden": "true" }, " *") : null),
    input,
    hint ? h("p", { class: "hint", id: `${id}-hint` }, hint) : null,
    h("p", { class: "field-error", id: `${id}-error`, hidden: true }));
}

// A field the browser can tell is wrong before anything is sent (JSON that does not parse, a label line without "=").
export class Invalid extends Error {
  constructor(field, message) {
    super(message);
    this.field = field;
  }
}

// The JSON text of a form's filled fields (only those in `names` when given). Numbers and JSON fields go
// in exactly as typed, so that the registry, not the browser, judges them (a large integer keeps every digit).
export function bodyText(form, names) {
  const parts = [];
  for (const element of form.elements) {
    const { name } = element;
    if (!name || (names && !names.has(name))) continue;
    const kind = element.dataset.kind;
    const text = element.value.trim();
    if (text === "" && !names) continue;
    let json;
    if (kind === "integer") json = /^-?(0|[1-9]\d*)$/.test(text) ? text : JSON.stringify(text);
    else if (kind === "json") json = text === "" ? "{}" : jsonText(name, text);
    else if (kind === "labels") json = JSON.stringify(labelList(name, text));
    else json = JSON.stringify(kind === "textarea" ? element.value : text);
    parts.push(`${JSON.stringify(name)}:${json}`);
  }
  return `{${parts.join(",")}}`;
}

function jsonText(name, text) {
  try {
    JSON.parse(text);
  } catch (e) {
    throw new Invalid(name, `${name} is not valid JSON (${e.message})`);
  }
  return layout(text, ""); // compact: the layout's spaces would count against the body limit
}

// "key=value" lines as [{Key, Value}].
function labelList(name, text) {
  return text.split("\n").map((line) => line.trim()).filter(Boolean).map((line, i) => {
    const at = line.indexOf("=");
    if (at < 0) throw new Invalid(name, `${name}: line ${i + 1} is not key=value`);
    return { Key: line.slice(0, at).trim(), Value: line.slice(at + 1).trim() };
  });
}

// Which field an API error is about: its code, or the parameter its message begins with ("ModelName must ...").
const CODE_FIELDS = { ModelAlreadyExists: "ModelName", ModelVersionAlreadyExists: "VersionName" };

function clearErrors(form) {
  for (const error of form.querySelectorAll(".field-error")) {
    error.hidden = true;
    error.textContent = "";
  }
  for (const element of form.querySelectorAll("[aria-invalid]")) element.removeAttribute("aria-invalid");
  form.querySelector(".form-alert")?.remove();
}

// Show an error (an ApiFailure or Invalid) next to the fields it names, the rest above the form (by
// `panel(error, message)`), and move the focus to the first place it shows.
export function showError(form, error, panel) {
  clearErrors(form);
  const parts = error instanceof Invalid ? [[error.field, error.message]]
    : String(error.message).split("; ").map((part) => [CODE_FIELDS[error.code] || (part.match(/^([A-Z][A-Za-z]*)/) || [])[1], part]);
  let first = null;
  const unplaced = [];
  for (const [name, message] of parts) {
    const input = name ? form.querySelector(`[name="${name}"]`) : null;
    if (!input) {
      unplaced.push(message);
      continue;
    }
    const slot = form.querySelector(`#${CSS.escape(`${input.id}-error`)}`);
    slot.textContent = slot.textContent ? `${slot.textContent}; ${message}` : message;
    slot.hidden = false;
    input.setAttribute("aria-invalid", "true");
    first = first || input;
  }
  if (unplaced.length) {
    const alert = panel(error, unplaced.join("; "));
    alert.tabIndex = -1;
    form.prepend(h("div", { class: "form-alert" }, alert));
    first = first || alert;
  }
  (first && form.querySelector(".form-alert [role=alert], [aria-invalid=true]") || first).focus(); // the first, in reading order
}
