// The console's shell: routes (in the URL's fragment), the access key dialog, and the error and empty states.
import { canSign, currentKey, forgetKey, rememberKey } from "./sign.js";
import { h } from "./dom.js";
import { connect, problem, reload, takeFocus, takeNotice } from "./nav.js";
import { modelPage, editPage, versionPage } from "./model-page.js";
import { listPage, registerPage } from "./model-list.js";

const main = document.getElementById("main");
const dialog = document.getElementById("key-dialog");

// #/ (with ?Query=... for the list), #/new, #/models/<id>, #/models/<id>/edit, #/models/<id>/versions/new
const ROUTES = [
  [/^\/?$/, (params) => listPage(params)],
  [/^\/new$/, () => registerPage()],
  [/^\/models\/([^/]+)$/, (params, id) => modelPage(id, params)],
  [/^\/models\/([^/]+)\/edit$/, (params, id) => editPage(id)],
  [/^\/models\/([^/]+)\/versions\/new$/, (params, id) => versionPage(id)],
];

let rendering = 0;
let shownRoute = null;

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
  const shown = takeNotice();
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
  // The same page again (a search, a change made here): focus stays on the control it was on (in the same
  // form), or goes where the action asked; a new page starts at its top, with its heading focused.
  const active = document.activeElement;
  const samePage = route === shownRoute;
  const kept = samePage && active?.name ? { name: active.name, form: active.form?.getAttribute("aria-label") } : null;
  const wanted = takeFocus();
  shownRoute = route;
  main.replaceChildren(...(shown ? [h("p", { class: "notice", role: "status" }, shown)] : []), ...[content].flat().filter(Boolean));
  if (!samePage) scrollTo(0, 0);
  const again = (wanted && main.querySelector(wanted))
    || (kept && main.querySelector(`${kept.form ? `form[aria-label="${CSS.escape(kept.form)}"] ` : ""}[name="${CSS.escape(kept.name)}"]`));
  if (again) again.focus();
  else main.querySelector("h1")?.focus({ preventScroll: true });
  document.title = `${main.querySelector("h1")?.textContent || "Console"} · Model registry`;
}

function showKeyState(accepted = true) {
  const key = currentKey();
  document.getElementById("key-state").textContent = !key ? "Not signed" : accepted ? `Signed with ${key.id}` : `Key ${key.id} not accepted`;
  document.getElementById("key-button").textContent = key ? "Change key" : "Access key";
  document.getElementById("key-forget").hidden = !key;
}

function openKeyDialog() {
  const form = dialog.querySelector("form");
  form.reset();
  form.elements.AccessKeyId.value = currentKey()?.id || "";
  const message = dialog.querySelector(".dialog-error");
  message.textContent = canSign() ? "" : "This browser signs requests only on an HTTPS page or on localhost.";
  message.hidden = canSign();
  dialog.showModal();
}

dialog.querySelector("form").addEventListener("submit", (event) => {
  event.preventDefault();
  if (event.submitter?.value === "cancel") return dialog.close();
  const form = event.target;
  const id = form.elements.AccessKeyId.value.trim();
  const secret = form.elements.AccessKeySecret.value;
  const problemText = !id || !secret ? "Enter the key's ID and secret."
    : !/^[\x21-\x2b\x2d-\x7e]+$/.test(id) ? "An access key ID is letters, digits and punctuation, without spaces or commas."
      : !canSign() ? "This browser signs requests only on an HTTPS page or on localhost." : "";
  const message = dialog.querySelector(".dialog-error");
  message.textContent = problemText;
  message.hidden = !problemText;
  if (problemText) {
    (!id ? form.elements.AccessKeyId : !secret ? form.elements.AccessKeySecret : form.elements.AccessKeyId).focus();
    return;
  }
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
document.addEventListener("key-state", (event) => showKeyState(event.detail === "accepted"));
// A link to the page already shown shows it afresh (no hashchange would).
document.addEventListener("click", (event) => {
  const link = event.target.closest?.("a[href^='#']");
  if (link && link.getAttribute("href") === location.hash && !event.defaultPrevented) render();
});
connect({ render, openKeyDialog });
showKeyState();
render();
