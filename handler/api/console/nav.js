// What pages ask of the shell: going to a page with a message and a place for the focus, showing it again, the error panel.
import { currentKey } from "./sign.js";
import { failure, h } from "./dom.js";

const main = document.getElementById("main");
let notice = "";
let focusAfter = ""; // a selector to focus once the page shows again
let moves = 0; // page changes so far: an action that started before one finishes without moving the user
window.addEventListener("hashchange", () => { moves += 1; });

// The shell's render and key dialog: console.js gives them once, since it imports the pages that call them.
let shell = { render() {}, openKeyDialog() {} };

export function connect({ render, openKeyDialog }) {
  shell = { render, openKeyDialog };
}

// Where an action starts: `go` leaves the user where they are if they have moved on by the time it finishes.
export function here() {
  return { hash: location.hash, moves };
}

// Show the page at `hash` with a message. Options: `from` (here() when an action started), `focus` (a
// selector to focus afterwards, near what changed), `replace` (no new history entry).
export function go(hash, message = "", { from, focus = "", replace = false } = {}) {
  if (from && (location.hash !== from.hash || moves !== from.moves)) return;
  notice = message;
  focusAfter = focus;
  if (location.hash === hash) shell.render();
  else if (replace) location.replace(hash);
  else location.hash = hash;
}

export function reload() {
  shell.render();
}

// The message `go` left for the page it shows, once.
export function takeNotice() {
  const shown = notice;
  notice = "";
  return shown;
}

// Where `go` asked the focus to be once the page shows, once.
export function takeFocus() {
  const wanted = focusAfter;
  focusAfter = "";
  return wanted;
}

// An error panel, with the way forward the error suggests.
export function problem(error, retry, message) {
  const actions = [];
  if (error.wantsKey) {
    actions.push(h("button", { type: "button", onclick: () => shell.openKeyDialog() }, currentKey() ? "Use another access key" : "Enter an access key"));
  }
  if (retry) actions.push(h("button", { type: "button", onclick: retry }, "Retry"));
  return failure(error, actions, message);
}

// Take away the messages of earlier actions (notices, errors) before a new one starts.
export function clearMessages() {
  for (const old of main.querySelectorAll(".notice, .form-alert, .section-status > *")) old.remove();
}
