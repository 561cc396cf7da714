// Requests signed with ACS3-HMAC-SHA256 as PAI's SDK signs them, by Web Crypto. The access key is kept
// in this tab's sessionStorage only: the secret signs here and is never sent; closing the tab forgets it.
const KEY = "pai-model-registry.access-key";
const encoder = new TextEncoder();

export function currentKey() {
  try {
    const key = JSON.parse(sessionStorage.getItem(KEY) || "null");
    return key && typeof key.id === "string" && typeof key.secret === "string" ? key : null;
  } catch {
    return null;
  }
}

export function rememberKey(id, secret) {
  sessionStorage.setItem(KEY, JSON.stringify({ id, secret }));
}

export function forgetKey() {
  sessionStorage.removeItem(KEY);
}

export function canSign() {
  return Boolean(globalThis.crypto && crypto.subtle && crypto.randomUUID);
}

// RFC 3986 percent-encoding, as the SDK (and the registry) encode paths and queries.
export function encode(text) {
  return encodeURIComponent(text).replace(/[!'()*]/g, (c) => "%" + c.charCodeAt(0).toString(16).toUpperCase());
}

function hex(buffer) {
  return Array.from(new Uint8Array(buffer), (b) => b.toString(16).padStart(2, "0")).join("");
}

async function sha256(text) {
  return hex(await crypto.subtle.digest("SHA-256", encoder.encode(text)));
}

// The headers that sign one request. `path` is the API path (/api/v1/...), encoded; `pairs` the query
// as [name, value] pairs, unencoded; `body` the exact text sent ("" for none).
export async function signatureHeaders(key, method, path, pairs, body) {
  const headers = {
    "x-acs-content-sha256": await sha256(body),
    "x-acs-date": new Date().toISOString().replace(/\.\d+Z$/, "Z"),
    "x-acs-signature-nonce": crypto.randomUUID(),
  };
  const names = Object.keys(headers).sort();
  const query = pairs
    .map(([name, value]) => [encode(name), encode(value)])
    .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0))
    .map(([name, value]) => `${name}=${value}`)
    .join("&");
  const canonicalHeaders = names.map((name) => `${name}:${headers[name].trim()}\n`).join("");
  const canonicalRequest = [method, path, query, canonicalHeaders, names.join(";"), headers["x-acs-content-sha256"]].join("\n");
  const stringToSign = "ACS3-HMAC-SHA256\n" + (await sha256(canonicalRequest));
  const hmac = await crypto.subtle.importKey("raw", encoder.encode(key.secret), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  const signature = hex(await crypto.subtle.sign("HMAC", hmac, encoder.encode(stringToSign)));
  headers.authorization = `ACS3-HMAC-SHA256 Credential=${key.id},SignedHeaders=${names.join(";")},Signature=${signature}`;
  return headers;
}
