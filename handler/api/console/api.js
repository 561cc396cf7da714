// The registry's public API, as the SDK calls it: the console can do nothing the API would refuse.
import { parseExact } from "./json.js";
import { canSign, currentKey, encode, signatureHeaders } from "./sign.js";

// Where the function is mounted: the page is <root>console/..., the API <root>api/v1/... (a gateway or
// trigger may put a prefix in front of both).
const ROOT = location.pathname.replace(/console\/[^/]*$/, "");
const SLOW = 300; // milliseconds before a request shows the loading indicator

export class ApiFailure extends Error {
  constructor(status, code, message, requestId = "") {
    super(message);
    this.status = status;
    this.code = code;
    this.requestId = requestId;
  }

  // Whether an access key (another one, or one at all) could change the answer.
  get wantsKey() {
    return ["MissingAuthorization", "InvalidAccessKeyId.NotFound", "SignatureDoesNotMatch", "InvalidAuthorization",
      "Forbidden.RAM", "Forbidden.AccessKeysNotConfigured"].includes(this.code);
  }
}

// The API path of some segments: path("models", id) is /api/v1/models/<id, encoded>.
export function path(...segments) {
  return "/api/v1/" + segments.map(encode).join("/");
}

let pending = 0;
let timer = 0;

function busy(change) {
  pending += change;
  const indicator = document.getElementById("busy");
  if (pending > 0 && !timer) {
    timer = setTimeout(() => { indicator.hidden = pending === 0; }, SLOW);
  } else if (pending === 0) {
    clearTimeout(timer);
    timer = 0;
    indicator.hidden = true;
  }
}

// One API call. `query` is an object of parameters (empty ones left out); `body` is sent as JSON, or
// `text` as the exact JSON text. Resolves to the answer's JSON (its text in `rawText`), or rejects with an ApiFailure.
export async function call(method, apiPath, { query = {}, body, text } = {}) {
  const pairs = Object.entries(query).filter(([, v]) => v !== undefined && v !== null && v !== "").map(([k, v]) => [k, String(v)]);
  const payload = text !== undefined ? text : body !== undefined ? JSON.stringify(body) : "";
  const headers = { accept: "application/json" };
  if (payload) headers["content-type"] = "application/json";
  const key = currentKey();
  if (key) {
    if (!canSign()) {
      throw new ApiFailure(0, "SigningUnavailable", "this browser can sign requests only on an HTTPS page (or on localhost)");
    }
    Object.assign(headers, await signatureHeaders(key, method, apiPath, pairs, payload));
  }
  const search = pairs.map(([name, value]) => `${encode(name)}=${encode(value)}`).join("&");
  const url = ROOT + apiPath.slice(1) + (search ? "?" + search : "");
  busy(+1);
  try {
    let response;
    try {
      response = await fetch(url, { method, headers, body: payload || undefined, credentials: "omit", cache: "no-store" });
    } catch {
      throw new ApiFailure(0, "NetworkError", "the registry could not be reached; check the connection and retry");
    }
    let answer = null;
    const text = await response.text().catch(() => "");
    try {
      answer = parseExact(text);
    } catch {
      answer = null;
    }
    if (key) {
      const rejected = ["SignatureDoesNotMatch", "InvalidAccessKeyId.NotFound"].includes(answer?.Code);
      if (response.ok || rejected) document.dispatchEvent(new CustomEvent("key-state", { detail: rejected ? "rejected" : "accepted" }));
    }
    if (!response.ok || !answer || typeof answer !== "object") {
      throw new ApiFailure(response.status, answer?.Code || `HTTP${response.status}`,
        answer?.Message || `the registry answered ${response.status} ${response.statusText}`, answer?.RequestId || "");
    }
    Object.defineProperty(answer, "rawText", { value: text }); // the answer as sent, for values kept exactly
    return answer;
  } finally {
    busy(-1);
  }
}
