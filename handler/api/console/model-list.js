// The model list (search, filters, sort, pages) and the form that registers a model.
import { ApiFailure, call, path } from "./api.js";
import { go, here, problem, reload } from "./nav.js";
import { h, labels, when } from "./dom.js";
import { bodyText, field, showError } from "./forms.js";

const FILTERS = ["Query", "Domain", "Task", "Label", "WorkspaceId"];
const SORTS = [
  ["GmtCreateTime DESC", "Newest first"], ["GmtCreateTime ASC", "Oldest first"],
  ["GmtModifiedTime DESC", "Recently changed"], ["ModelName ASC", "Name, A to Z"], ["ModelName DESC", "Name, Z to A"],
];
const SIZES = ["10", "20", "50", "100"];

function listHash(params) {
  const kept = [...params].filter(([, value]) => value !== "");
  return "#/" + (kept.length ? "?" + new URLSearchParams(kept) : "");
}

export async function listPage(params) {
  const sort = params.get("Sort") || SORTS[0][0];
  const [sortBy, order] = sort.split(" ");
  const size = SIZES.includes(params.get("PageSize")) ? params.get("PageSize") : "20";
  const page = Math.max(1, parseInt(params.get("PageNumber") || "1", 10) || 1);
  const filters = Object.fromEntries(FILTERS.map((name) => [name, params.get(name) || ""]));
  const heading = h("h1", { tabindex: -1 }, "Models");
  const search = searchForm(filters, sort, size);
  let answer;
  try {
    answer = await call("GET", path("models"), { query: { ...filters, SortBy: sortBy, Order: order, PageSize: size, PageNumber: page } });
  } catch (error) {
    if (!(error instanceof ApiFailure)) throw error;
    const named = error.code === "InvalidParameter" && search.querySelector(`[name="${(error.message.match(/^[A-Za-z]+/) || [""])[0]}"]`);
    if (named) { // a filter the API refuses: said next to it
      showError(search, error, (e, message) => problem(e, null, message));
      return [heading, search];
    }
    return [heading, search, problem(error, reload)];
  }
  const filtered = FILTERS.some((name) => filters[name]);
  if (!answer.TotalCount) {
    return [heading, search, h("div", { class: "empty" }, filtered
      ? [h("p", {}, "No models match these filters."), h("p", {}, h("a", { href: "#/" }, "Clear the filters"))]
      : [h("p", {}, "No models yet."), h("p", {}, "Register one here, or with PAI's SDK or an upload. ",
        h("a", { href: "#/new", class: "button" }, "Register a model"))])];
  }
  const pages = Math.max(1, Math.ceil(answer.TotalCount / Number(size)));
  const at = (n) => listHash(new URLSearchParams({ ...filters, Sort: sort, PageSize: size, PageNumber: String(n) }));
  if (!answer.Models.length) {
    return [heading, search, h("div", { class: "empty" }, h("p", {}, `Page ${page} is past the last page (${pages}).`),
      h("a", { href: at(1) }, "Go to the first page"))];
  }
  return [heading, search,
    h("p", { class: "count", role: "status" }, `${answer.TotalCount} model${answer.TotalCount === 1 ? "" : "s"}`),
    h("table", { class: "models" },
      h("thead", {}, h("tr", {}, ["Name", "Latest version", "Labels", "Created", "Changed"].map((title) => h("th", { scope: "col" }, title)))),
      h("tbody", {}, answer.Models.map((model) => h("tr", {},
        h("td", { "data-title": "Name" }, h("a", { href: `#/models/${encodeURIComponent(model.ModelId)}`, class: "model-link" }, model.ModelName),
          model.ModelDescription ? h("p", { class: "muted small" }, model.ModelDescription) : null),
        h("td", { "data-title": "Latest version" }, model.LatestVersion?.VersionName || h("span", { class: "muted" }, "none")),
        h("td", { "data-title": "Labels" }, labels(model.Labels)),
        h("td", { "data-title": "Created" }, when(model.GmtCreateTime)),
        h("td", { "data-title": "Changed" }, when(model.GmtModifiedTime)))))),
    pages > 1 ? h("nav", { class: "pager", "aria-label": "Pages" },
      page > 1 ? h("a", { href: at(page - 1), rel: "prev" }, "← Previous") : h("span", {}),
      h("span", {}, `Page ${page} of ${pages}`),
      page < pages ? h("a", { href: at(page + 1), rel: "next" }, "Next →") : h("span", {})) : null];
}

function searchForm(filters, sort, size) {
  const form = h("form", { class: "search", role: "search", "aria-label": "Search models" },
    h("div", { class: "search-main" },
      field("Query", "Search", { value: filters.Query, placeholder: "name, domain, task or label" }),
      h("button", { type: "submit" }, "Search")),
    h("div", { class: "filters" },
      field("Domain", "Domain", { value: filters.Domain, hint: "exact" }),
      field("Task", "Task", { value: filters.Task, hint: "exact" }),
      field("Label", "Label", { value: filters.Label, hint: "key or value contains" }),
      field("WorkspaceId", "Workspace", { value: filters.WorkspaceId, hint: "default if empty" }),
      field("Sort", "Sort", { kind: SORTS, value: sort }),
      field("PageSize", "Per page", { kind: SIZES.map((n) => [n, n]), value: size })));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const params = new URLSearchParams();
    for (const element of form.elements) if (element.name) params.set(element.name, element.value.trim());
    const replace = form.dataset.replace === "yes";
    delete form.dataset.replace;
    go(listHash(params), "", { replace });
  });
  // A new sort or page size applies at once (the focus stays on it when the list is shown again); stepping
  // through the choices with the arrow keys leaves one entry in the history, not one per choice.
  for (const select of form.querySelectorAll("select")) {
    select.addEventListener("change", () => {
      form.dataset.replace = "yes";
      form.requestSubmit();
    });
  }
  return form;
}

export function registerPage() {
  const form = h("form", { class: "form", novalidate: true },
    field("ModelName", "Name", { required: true, hint: "Unique in its workspace." }),
    field("WorkspaceId", "Workspace", { hint: "Leave empty for the registry's default workspace." }),
    field("ModelDescription", "Description", { kind: "textarea" }),
    h("div", { class: "row" }, field("Domain", "Domain", { placeholder: "e.g. nlp" }), field("Task", "Task", { placeholder: "e.g. text-classification" })),
    h("div", { class: "row" }, field("Origin", "Origin"), field("ModelType", "Type")),
    h("div", { class: "row" },
      field("Accessibility", "Accessibility", { kind: [["PRIVATE", "Private"], ["PUBLIC", "Public"]], value: "PRIVATE" }),
      field("OrderNumber", "Order number", { kind: "integer" }),
      field("ParameterSize", "Parameters (millions)", { kind: "integer" })),
    field("ModelDoc", "Documentation URL"),
    field("Tag", "Labels", { kind: "labels", hint: "One key=value per line." }),
    field("ExtraInfo", "Extra information", { kind: "json", hint: "A JSON object, kept exactly as given." }),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Register model"), h("a", { href: "#/" }, "Cancel")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = form.querySelector("button[type=submit]");
    if (button.disabled) return; // one request per submission, however often Enter is pressed
    button.disabled = true;
    const from = here();
    try {
      const answer = await call("POST", path("models"), { text: bodyText(form) });
      go(`#/models/${encodeURIComponent(answer.ModelId)}`, "Model registered.", { from });
    } catch (error) {
      button.disabled = false;
      showError(form, error, (e, message) => problem(e, null, message));
    }
  });
  return [h("p", { class: "crumbs" }, h("a", { href: "#/" }, "Models"), " / Register"), h("h1", { tabindex: -1 }, "Register a model"), form];
}
