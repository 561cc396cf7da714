// The console's shell: routes (in the URL's fragment), the access key dialog, and the error and empty states.
import { canSign, currentKey, forgetKey, rememberKey } from "./sign.js";
import { failure, h } from "./dom.js";
import { modelPage, editPage, versionPage } from "./model.js";
import { listPage, registerPage } from "./models.js";

const main = document.getElementById("main");
const dialog = document.getElementById("key-dialog");
let notice = "";

// #/ (with ?Query=... for the list), #/new, #/models/<id>, #/models/<id>/edit, #/models/<id>/versions/new
const ROUTES = [
  [/^\/?$/, (params) => listPage(params)],
  [/^\/new$/, () => registerPage()],
  [/^\/models\/([^/]+)$/, (params, id) => modelPage(id, params)],
  [/^\/models\/([^/]+)\/edit$/, (params, id) => editPage(id)],
  [/^\/models\/([^/]+)\/versions\/new$/, (params, id) => versionPage(id)],
];

export function go(hash, message = "") {
  notice = message;
  if (location.hash === hash) render();
  else location.hash = hash;
}

export function reload() {
  render();
}

// An error panel, with the way forward the error suggests.
export function problem(error, retry, message) {
  const actions = [];
  if (error.wantsKey) actions.push(h("button", { type: "button", onclick: openKeyDialog }, currentKey() ? "Use another access key" : "Enter an access key"));
  if (retry) actions.push(h("button", { type: "button", onclick: retry }, "Retry"));
  return failure(error, actions, message);
}

let rendering = 0;

async function render() {
  const turn = ++rendering;
  const hash = location.hash.slice(1);
  const at = hash.includes("?") ? hash.indexOf("?") : hash.length;
  let route;
  try {
    route = decodeURIComponent(hash.slice(0, at));
  } catch {
    route = "\u0000"; // not percent-encoded UTF-8: no page
  }
  const params = new URLSearchParams(hash.slice(at + 1));
  const found = ROUTES.map(([pattern, page]) => [route.match(pattern), page]).find(([match]) => match);
  const shown = notice;
  notice = "";
  let content;
  if (!found) {
    content = [h("h1", { tabindex: -1 }, "Not found"), h("p", {}, "There is no such page. ", h("a", { href: "#/" }, "See all models"))];
  } else {
    const [match, page] = found;
    try {
      content = await page(params, ...match.slice(1));
    } catch (error) {
      content = [h("h1", { tabindex: -1 }, "Something went wrong"), problem(error, reload)];
    }
  }
  if (turn !== rendering) return; // a later navigation has rendered, or will
  main.replaceChildren(...(shown ? [h("p", { class: "notice", role: "status" }, shown)] : []), ...[content].flat().filter(Boolean));
  main.querySelector("h1")?.focus({ preventScroll: true });
  document.title = `${main.querySelector("h1")?.textContent || "Console"} · Model registry`;
}

function showKeyState() {
  const key = currentKey();
  document.getElementById("key-state").textContent = key ? `Signed with ${key.id}` : "Not signed";
  document.getElementById("key-button").textContent = key ? "Change key" : "Access key";
  document.getElementById("key-forget").hidden = !key;
}

function openKeyDialog() {
  const form = dialog.querySelector("form");
  form.reset();
  form.elements.AccessKeyId.value = currentKey()?.id || "";
  dialog.querySelector(".dialog-error").hidden = canSign();
  dialog.showModal();
}

dialog.querySelector("form").addEventListener("submit", (event) => {
  event.preventDefault();
  if (event.submitter?.value === "cancel") return dialog.close();
  const form = event.target;
  const id = form.elements.AccessKeyId.value.trim();
  const secret = form.elements.AccessKeySecret.value;
  if (!id || !secret || !canSign()) return;
  rememberKey(id, secret);
  form.reset();
  dialog.close();
  showKeyState();
  render();
});
document.getElementById("key-button").addEventListener("click", openKeyDialog);
document.getElementById("key-forget").addEventListener("click", () => {
  forgetKey();
  showKeyState();
  render();
});
window.addEventListener("hashchange", render);
showKeyState();
render();
