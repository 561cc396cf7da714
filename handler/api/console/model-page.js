// One model: its fields, labels, extra information and versions; editing it, versioning it, deleting it.
import { ApiFailure, call, path } from "./api.js";
import { clearMessages, go, here, problem, reload } from "./nav.js";
import { h, labels, metrics, value, when } from "./dom.js";
import { layout, memberText } from "./json.js";
import { bodyText, field, Invalid, showError } from "./forms.js";
import { MODEL_UPDATABLE } from "./fields.js";

const VERSIONS_PER_PAGE = 20;
const FIELDS = [
  ["ModelId", "ID"], ["WorkspaceId", "Workspace"], ["ModelDescription", "Description"], ["Domain", "Domain"], ["Task", "Task"],
  ["Origin", "Origin"], ["ModelType", "Type"], ["Provider", "Provider"], ["Accessibility", "Accessibility"],
  ["OrderNumber", "Order number"], ["ParameterSize", "Parameters (millions)"], ["ModelDoc", "Documentation"],
];
// The edit form, in this order ({ row }: side by side). Which fields it offers is for UpdateModel's schema to say
// (fields.js): one the schema has and this lacks still shows, last, as text under its own name.
const EDIT_FORM = [
  ["ModelName", "Name", { required: true }],
  ["ModelDescription", "Description", { kind: "textarea" }],
  { row: [["Domain", "Domain"], ["Task", "Task"]] },
  { row: [["Origin", "Origin"], ["ModelType", "Type"]] },
  { row: [["Accessibility", "Accessibility", { kind: [["PRIVATE", "Private"], ["PUBLIC", "Public"]] }],
    ["OrderNumber", "Order number", { kind: "integer" }], ["ParameterSize", "Parameters (millions)", { kind: "integer" }]] },
  ["ModelDoc", "Documentation URL"],
  ["ExtraInfo", "Extra information", { kind: "json", hint: "A JSON object; it replaces the one kept ({} removes every key)." }],
];
const FORMATS = ["SavedModel", "OfflineModel", "Keras H5", "Frozen Pb", "Caffe Prototxt", "TorchScript", "XGBoost", "PMML", "AlinkModel", "ONNX"];
const FRAMEWORKS = ["Pytorch", "TensorFlow", "Keras", "XGBoost", "Caffe", "Alink", "Xflow", "ONNX"];

function crumbs(model, here) {
  return h("p", { class: "crumbs" }, h("a", { href: "#/" }, "Models"), " / ",
    here ? [h("a", { href: modelHash(model.ModelId) }, model.ModelName), ` / ${here}`] : model.ModelName);
}

const modelHash = (id) => `#/models/${encodeURIComponent(id)}`;

async function loadModel(id) {
  try {
    return await call("GET", path("models", id));
  } catch (error) {
    if (!(error instanceof ApiFailure)) throw error;
    return error;
  }
}

function missing(error) {
  return [h("p", { class: "crumbs" }, h("a", { href: "#/" }, "Models")), h("h1", { tabindex: -1 }, "Model"),
    problem(error, error.status >= 500 || error.status === 0 ? reload : null)];
}

// A link for an http(s) URL (never another scheme), else the text.
function link(text) {
  try {
    const url = new URL(text);
    if (url.protocol === "https:" || url.protocol === "http:") return h("a", { href: url.href, rel: "noopener noreferrer", target: "_blank" }, text);
  } catch {
    // not a URL: shown as text
  }
  return text;
}

export async function modelPage(id, params) {
  const page = Math.max(1, parseInt(params.get("page") || "1", 10) || 1);
  const [model, versions, changes] = await Promise.all([loadModel(id), call("GET", path("models", id, "versions"), {
    query: { SortBy: "GmtCreateTime", Order: "DESC", PageSize: VERSIONS_PER_PAGE, PageNumber: page } }).catch((e) => e),
  call("GET", path("models", id, "history")).catch((e) => e)]);
  if (model instanceof Error) return missing(model);
  const shown = FIELDS.filter(([name]) => model[name] !== undefined && model[name] !== "");
  const status = h("div", { class: "section-status" });
  return [
    crumbs(model),
    h("div", { class: "title" }, h("h1", { tabindex: -1 }, model.ModelName),
      h("div", { class: "actions" },
        h("a", { href: `${modelHash(id)}/edit`, class: "button" }, "Edit"),
        h("a", { href: `${modelHash(id)}/versions/new`, class: "button" }, "Add a version"),
        h("button", { type: "button", class: "danger", onclick: (e) => deleteModel(model, status, e.currentTarget) }, "Delete model"))),
    status,
    h("section", { "aria-labelledby": "fields-heading" }, h("h2", { id: "fields-heading" }, "Details"),
      h("dl", { class: "fields" }, shown.map(([name, title]) => [h("dt", {}, title),
        h("dd", { class: name === "ModelDescription" ? "text" : undefined }, name === "ModelDoc" ? link(model[name]) : String(model[name]))]),
      h("dt", {}, "Latest version"), h("dd", {}, model.LatestVersion?.VersionName || h("span", { class: "muted" }, "none")),
      h("dt", {}, "Created"), h("dd", {}, when(model.GmtCreateTime)),
      h("dt", {}, "Changed"), h("dd", {}, when(model.GmtModifiedTime)))),
    labelSection(model),
    aliasSection(model, versions),
    h("section", { "aria-labelledby": "extra-heading" }, h("h2", { id: "extra-heading" }, "Extra information"),
      model.ExtraInfo && Object.keys(model.ExtraInfo).length ? value(model.ExtraInfo) : h("p", { class: "muted" }, "None.")),
    versionSection(model, versions, page),
    historySection(id, changes),
  ];
}

// What "Operation" names, as a reader says it.
const OPERATIONS = {
  CreateModel: "Created the model", UpdateModel: "Changed the model", DeleteModel: "Deleted the model",
  CreateModelLabels: "Added labels", DeleteModelLabels: "Removed labels", CreateModelVersion: "Added version",
  UpdateModelVersion: "Changed version", DeleteModelVersion: "Deleted version", CreateModelVersionLabels: "Added labels to version",
  DeleteModelVersionLabels: "Removed labels from version",
};

function changeRow(change) {
  const what = OPERATIONS[change.Operation] || change.Operation;
  return h("tr", {},
    h("td", { "data-title": "When" }, when(change.At)),
    h("td", { "data-title": "Who" }, change.By),
    h("td", { "data-title": "What" }, change.VersionName ? `${what} ${change.VersionName}` : what),
    h("td", { "data-title": "Commit", class: "muted" }, String(change.Seq)));
}

// The model's change history (ListModelHistory: who, what, when, from the log), newest first, a window of commits
// at a time; "Earlier changes" asks for the window before.
function historySection(id, answer) {
  const heading = h("h2", { id: "history-heading" }, "History");
  if (answer instanceof Error) {
    return h("section", { "aria-labelledby": "history-heading" }, heading,
      h("p", { class: "muted" }, `The history cannot be shown: ${answer.message}`));
  }
  const body = h("tbody", {});
  const status = h("div", { class: "section-status" });
  const none = h("p", { class: "muted" }, "No change in the latest commits.");
  const more = h("button", { type: "button" }, "Earlier changes");
  const show = (found) => {
    body.append(...[...found.Changes].reverse().map(changeRow));
    none.hidden = body.children.length > 0;
    more.hidden = found.Since === 0;
    more.dataset.until = String(found.Since);
  };
  more.addEventListener("click", async () => {
    more.disabled = true;
    try {
      show(await call("GET", path("models", id, "history"), { query: { Until: more.dataset.until } }));
    } catch (error) {
      status.replaceChildren(problem(error));
    } finally {
      more.disabled = false;
    }
  });
  const section = h("section", { "aria-labelledby": "history-heading" }, heading, status, none,
    h("table", { class: "history" },
      h("thead", {}, h("tr", {}, ["When", "Who", "What", "Commit"].map((title) => h("th", { scope: "col" }, title)))), body),
    more);
  show(answer);
  return section;
}

// Labels with a remove button each and a form that adds one, changed through `segments` (the API path of
// the model or version); `what` names them for screen readers ("model", "version 1.0.0").
function labelEditor(list, segments, what) {
  const status = h("div", { class: "section-status" });
  const formLabel = `Add a label to the ${what}`;
  const focus = `form[aria-label="${CSS.escape(formLabel)}"] [name=Key]`; // near the labels, after the page shows the change
  const remove = async (key, button) => {
    clearMessages();
    button.disabled = true;
    const from = here();
    try {
      await call("DELETE", path(...segments, "labels"), { query: { LabelKeys: key } });
      go(from.hash, `Label ${key} removed.`, { from, focus });
    } catch (error) {
      button.disabled = false;
      status.replaceChildren(problem(error));
    }
  };
  const form = h("form", { class: "inline-form", "aria-label": formLabel, novalidate: true },
    field("Key", "Key"), field("Value", "Value"), h("button", { type: "submit" }, "Add label"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = form.querySelector("button[type=submit]");
    if (button.disabled) return;
    clearMessages();
    button.disabled = true;
    const label = { Key: form.elements.Key.value.trim(), Value: form.elements.Value.value.trim() };
    const from = here();
    try {
      await call("POST", path(...segments, "labels"), { body: { Labels: [label] } });
      go(from.hash, `Label ${label.Key} added.`, { from, focus });
    } catch (error) {
      button.disabled = false;
      // The API names the field as Labels[0].Key: shown next to Key (or Value).
      const named = error instanceof ApiFailure
        ? new ApiFailure(error.status, error.code, error.message.replace(/Labels\[0\]\./g, ""), error.requestId) : error;
      showError(form, named, (e, message) => problem(e, null, message));
    }
  });
  return [labels(list, remove), status, form];
}

function labelSection(model) {
  return h("section", { "aria-labelledby": "labels-heading" }, h("h2", { id: "labels-heading" }, "Labels"),
    labelEditor(model.Labels, ["models", model.ModelId], "model"));
}

// Aliases (names for one version each, as MLflow's clients use them: models:/name@champion): each with its version
// and a remove button, and a form that sets one (naming an alias that exists moves it to the version chosen).
function aliasSection(model, versions) {
  const status = h("div", { class: "section-status" });
  const formLabel = "Set an alias";
  const focus = `form[aria-label="${formLabel}"] [name=Alias]`;
  const held = model.Aliases || [];
  const remove = async (alias, button) => {
    clearMessages();
    button.disabled = true;
    const from = here();
    try {
      await call("DELETE", path("models", model.ModelId, "aliases", alias));
      go(from.hash, `Alias ${alias} removed.`, { from, focus });
    } catch (error) {
      button.disabled = false;
      status.replaceChildren(problem(error));
    }
  };
  const list = held.length ? h("ul", { class: "aliases" }, held.map(({ Alias, VersionName }) => h("li", {},
    h("strong", {}, `@${Alias}`), ` version ${VersionName} `,
    h("button", { type: "button", "aria-label": `Remove alias ${Alias}`, onclick: (e) => remove(Alias, e.currentTarget) }, "Remove"))))
    : h("p", { class: "muted" }, "None.");
  // The versions this page shows, newest first; another version's name can be typed where none are shown.
  const shown = versions instanceof Error ? [] : versions.Versions.map((v) => [v.VersionName, v.VersionName]);
  const form = h("form", { class: "inline-form", "aria-label": formLabel, novalidate: true },
    field("Alias", "Alias", { placeholder: "champion" }),
    field("VersionName", "Version", shown.length ? { kind: shown } : {}), h("button", { type: "submit" }, "Set alias"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = form.querySelector("button[type=submit]");
    if (button.disabled) return;
    clearMessages();
    const alias = form.elements.Alias.value.trim();
    const version = form.elements.VersionName.value.trim();
    if (!alias) {
      showError(form, new Invalid("Alias", "Alias is required"), (e, message) => problem(e, null, message));
      return;
    }
    button.disabled = true;
    const from = here();
    try {
      await call("PUT", path("models", model.ModelId, "aliases", alias), { body: { VersionName: version } });
      go(from.hash, `Alias ${alias} now names version ${version}.`, { from, focus });
    } catch (error) {
      button.disabled = false;
      showError(form, error, (e, message) => problem(e, null, message));
    }
  });
  return h("section", { "aria-labelledby": "aliases-heading" }, h("h2", { id: "aliases-heading" }, "Aliases"), list, status, form);
}

function versionSection(model, versions, page) {
  const heading = h("h2", { id: "versions-heading" }, "Versions");
  if (versions instanceof Error) return h("section", { "aria-labelledby": "versions-heading" }, heading, problem(versions, reload));
  if (!versions.TotalCount) {
    return h("section", { "aria-labelledby": "versions-heading" }, heading, h("div", { class: "empty" },
      h("p", {}, "No versions yet. "), h("a", { href: `${modelHash(model.ModelId)}/versions/new`, class: "button" }, "Add a version")));
  }
  const status = h("div", { class: "section-status" });
  const pages = Math.ceil(versions.TotalCount / VERSIONS_PER_PAGE);
  const at = (n) => `${modelHash(model.ModelId)}?page=${n}`;
  if (!versions.Versions.length) {
    return h("section", { "aria-labelledby": "versions-heading" }, heading, h("div", { class: "empty" },
      h("p", {}, `There are ${versions.TotalCount} versions, none on page ${page}. `), h("a", { href: at(1) }, "See the newest")));
  }
  return h("section", { "aria-labelledby": "versions-heading" }, heading, status,
    h("table", { class: "versions" },
      h("thead", {}, h("tr", {}, ["Version", "URI", "Format", "Framework", "Approval", "Metrics", "Created", "Actions"]
        .map((title) => h("th", { scope: "col" }, title)))),
      h("tbody", {}, versions.Versions.map((version) => versionRow(model, version, status)))),
    pages > 1 ? h("nav", { class: "pager", "aria-label": "Version pages" },
      page > 1 ? h("a", { href: at(page - 1) }, "← Newer") : h("span", {}), h("span", {}, `Page ${page} of ${pages}`),
      page < pages ? h("a", { href: at(page + 1) }, "Older →") : h("span", {})) : null);
}

const VERSION_FIELDS = [
  ["VersionDescription", "Description"], ["SourceType", "Source"], ["SourceId", "Source ID"], ["Options", "Options"],
  ["InferenceSpec", "Inference spec"], ["TrainingSpec", "Training spec"], ["EvaluationSpec", "Evaluation spec"],
  ["CompressionSpec", "Compression spec"], ["DistillationSpec", "Distillation spec"], ["ExtraInfo", "Extra information"],
];
const openDetails = new Set(); // versions whose details are shown, kept across the page's re-renders

// Everything else a version holds, and its labels, in a row of their own under the version's row.
function versionDetails(model, version, id) {
  const shown = VERSION_FIELDS.filter(([name]) => version[name] !== undefined && version[name] !== ""
    && !(typeof version[name] === "object" && !Object.keys(version[name]).length));
  return h("tr", { class: "version-details", id, hidden: !openDetails.has(id) },
    h("td", { colspan: 8 },
      h("dl", { class: "fields" }, shown.map(([name, title]) => [h("dt", {}, title),
        h("dd", { class: name === "VersionDescription" ? "text" : undefined }, value(version[name]))]),
      h("dt", {}, "Changed"), h("dd", {}, when(version.GmtModifiedTime))),
      h("h3", {}, `Labels of version ${version.VersionName}`),
      labelEditor(version.Labels || [], ["models", model.ModelId, "versions", version.VersionName], `version ${version.VersionName}`)));
}

function versionRow(model, version, status) {
  const name = version.VersionName;
  const detailsId = `version-${model.ModelId}-${name}`.replace(/[^A-Za-z0-9_-]/g, "_");
  const toggle = (event) => {
    const row = document.getElementById(detailsId);
    row.hidden = !row.hidden;
    event.currentTarget.setAttribute("aria-expanded", String(!row.hidden));
    if (row.hidden) openDetails.delete(detailsId);
    else openDetails.add(detailsId);
  };
  const act = async (what, method, body, done, button) => {
    clearMessages();
    const buttons = [...button.parentElement.querySelectorAll("button")];
    const before = buttons.map((b) => b.disabled);
    for (const other of buttons) other.disabled = true; // one request at a time for a version
    const from = here();
    try {
      await call(method, path("models", model.ModelId, "versions", name), { body });
      go(from.hash, done, { from, focus: `[aria-label="${CSS.escape(`Details of version ${name}`)}"]` });
    } catch (error) {
      buttons.forEach((b, i) => { b.disabled = before[i]; });
      status.replaceChildren(problem(error, null, `${what} ${name}: ${error.message}`));
      status.querySelector("[role=alert]").tabIndex = -1;
      status.querySelector("[role=alert]").focus();
    }
  };
  const approval = version.ApprovalStatus || "Pending";
  return [h("tr", {},
    h("td", { "data-title": "Version" }, h("strong", {}, name),
      version.Aliases?.length ? h("p", { class: "small" }, version.Aliases.map((alias) => `@${alias}`).join(" ")) : null,
      version.VersionDescription ? h("p", { class: "muted small" }, version.VersionDescription) : null,
      version.Labels?.length ? labels(version.Labels) : null),
    h("td", { "data-title": "URI", class: "uri" }, link(version.Uri)),
    h("td", { "data-title": "Format" }, version.FormatType || h("span", { class: "muted" }, "—")),
    h("td", { "data-title": "Framework" }, version.FrameworkType || h("span", { class: "muted" }, "—")),
    h("td", { "data-title": "Approval" }, h("span", { class: `status status-${approval.toLowerCase()}` }, approval)),
    h("td", { "data-title": "Metrics" }, version.Metrics && Object.keys(version.Metrics).length ? metrics(version.Metrics) : h("span", { class: "muted" }, "—")),
    h("td", { "data-title": "Created" }, when(version.GmtCreateTime)),
    h("td", { "data-title": "Actions", class: "row-actions" },
      // Approved and Rejected are final (PAI's rule): only a pending version can be decided.
      approval === "Pending" ? [
        h("button", { type: "button", "aria-label": `Approve version ${name}`,
          onclick: (e) => act("Approve", "PUT", { ApprovalStatus: "Approved" }, `Version ${name} approved.`, e.currentTarget) }, "Approve"),
        h("button", { type: "button", "aria-label": `Reject version ${name}`,
          onclick: (e) => act("Reject", "PUT", { ApprovalStatus: "Rejected" }, `Version ${name} rejected.`, e.currentTarget) }, "Reject"),
      ] : null,
      h("button", { type: "button", class: "danger", "aria-label": `Delete version ${name}`,
        onclick: (e) => confirm(`Delete version ${name} of ${model.ModelName}? This cannot be undone.`)
          && act("Delete", "DELETE", undefined, `Version ${name} deleted.`, e.currentTarget) }, "Delete"),
      h("button", { type: "button", "aria-expanded": String(openDetails.has(detailsId)), "aria-controls": detailsId,
        "aria-label": `Details of version ${name}`, onclick: toggle }, "Details"))),
  versionDetails(model, version, detailsId)];
}

async function deleteModel(model, status, button) {
  if (!confirm(`Delete model ${model.ModelName} and all its versions? This cannot be undone.`)) return;
  clearMessages();
  const from = here();
  button.disabled = true;
  try {
    await call("DELETE", path("models", model.ModelId));
    go("#/", `Model ${model.ModelName} deleted.`, { from });
  } catch (error) {
    button.disabled = false;
    status.replaceChildren(problem(error));
  }
}

// ExtraInfo as the registry keeps it (key order, every digit), laid out for editing.
function extraInfoText(model) {
  const exact = model.rawText ? memberText(model.rawText, "ExtraInfo") : undefined;
  if (exact !== undefined) return layout(exact);
  return model.ExtraInfo ? JSON.stringify(model.ExtraInfo, null, 2) : "";
}

export async function editPage(id) {
  const model = await loadModel(id);
  if (model instanceof Error) return missing(model);
  const text = (name) => (model[name] === undefined ? "" : String(model[name]));
  const input = ([name, label, options]) => MODEL_UPDATABLE.includes(name)
    && field(name, label, { ...options, value: name === "ExtraInfo" ? extraInfoText(model) : text(name) });
  const placed = EDIT_FORM.flatMap((entry) => entry.row || [entry]).map(([name]) => name);
  const form = h("form", { class: "form", novalidate: true },
    EDIT_FORM.map((entry) => (entry.row ? h("div", { class: "row" }, entry.row.map(input)) : input(entry))),
    MODEL_UPDATABLE.filter((name) => !placed.includes(name)).map((name) => input([name, name])),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Save changes"), h("a", { href: modelHash(id) }, "Cancel")));
  // In the form's order, so that of two fields emptied the first is the one named.
  const editable = [...form.elements].map((element) => element.name).filter((name) => MODEL_UPDATABLE.includes(name));
  const original = Object.fromEntries(editable.map((name) => [name, form.elements[name].value]));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    // Only what was changed is sent; a text field emptied sends "". A number or ExtraInfo cannot be
    // emptied (the API keeps one once set): said next to the field, rather than ignored.
    const emptied = editable.find((name) => form.elements[name].value.trim() === "" && original[name].trim() !== ""
      && ["integer", "json"].includes(form.elements[name].dataset.kind));
    if (emptied) {
      return showError(form, new Invalid(emptied, emptied === "ExtraInfo" ? "ExtraInfo cannot be emptied; write {} to remove every key"
        : `${emptied} cannot be emptied once set; give another number`), (e, message) => problem(e, null, message));
    }
    const changed = new Set(editable.filter((name) => form.elements[name].value !== original[name]));
    if (!changed.size) return go(modelHash(id), "Nothing changed.");
    const button = form.querySelector("button[type=submit]");
    if (button.disabled) return; // one request per submission
    button.disabled = true;
    const from = here();
    try {
      await call("PUT", path("models", id), { text: bodyText(form, changed) });
      go(modelHash(id), "Changes saved.", { from });
    } catch (error) {
      button.disabled = false;
      showError(form, error, (e, message) => problem(e, null, message));
    }
  });
  return [crumbs(model, "Edit"), h("h1", { tabindex: -1 }, `Edit ${model.ModelName}`), form];
}

export async function versionPage(id) {
  const model = await loadModel(id);
  if (model instanceof Error) return missing(model);
  const form = h("form", { class: "form", novalidate: true },
    h("div", { class: "row" },
      field("VersionName", "Version", { hint: "e.g. 1.0.0; empty: the next after the highest (0.1.0, 0.2.0, ...)" }),
      field("ApprovalStatus", "Approval", { kind: [["Pending", "Pending"], ["Approved", "Approved"], ["Rejected", "Rejected"]], value: "Pending" })),
    field("Uri", "URI", { required: true, hint: "Where the artifact is: https://... or oss://bucket.endpoint/path" }),
    h("div", { class: "row" },
      field("FormatType", "Format", { list: "formats" }), field("FrameworkType", "Framework", { list: "frameworks" })),
    h("datalist", { id: "formats" }, FORMATS.map((f) => h("option", { value: f }))),
    h("datalist", { id: "frameworks" }, FRAMEWORKS.map((f) => h("option", { value: f }))),
    h("div", { class: "row" },
      field("SourceType", "Source", { kind: [["", "Custom (default)"], ["PAIFlow", "PAIFlow"], ["TrainingService", "TrainingService"]] }),
      field("SourceId", "Source ID")),
    field("VersionDescription", "Description", { kind: "textarea" }),
    field("Labels", "Labels", { kind: "labels", hint: "One key=value per line." }),
    field("Metrics", "Metrics", { kind: "json", hint: 'A JSON object, e.g. {"accuracy": 0.93}' }),
    field("InferenceSpec", "Inference spec", { kind: "json", hint: "A JSON object." }),
    field("ExtraInfo", "Extra information", { kind: "json", hint: "A JSON object." }),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Add version"), h("a", { href: modelHash(id) }, "Cancel")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = form.querySelector("button[type=submit]");
    if (button.disabled) return; // one request per submission: an unnamed version would be created twice
    button.disabled = true;
    const from = here();
    try {
      const answer = await call("POST", path("models", id, "versions"), { text: bodyText(form) });
      go(modelHash(id), `Version ${answer.VersionName} added.`, { from });
    } catch (error) {
      button.disabled = false;
      showError(form, error, (e, message) => problem(e, null, message));
    }
  });
  return [crumbs(model, "Add a version"), h("h1", { tabindex: -1 }, `Add a version of ${model.ModelName}`), form];
}
