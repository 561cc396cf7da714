// JSON kept exact: numbers the browser cannot hold exactly are kept as their text, and a member's text is
// taken from the answer as it came (key order, 1.0, 12345678901234567890), laid out without re-encoding.

// A number whose text a JavaScript number would change (too large, too precise, or written like 1.0).
export class ExactNumber {
  constructor(text) {
    this.text = text;
  }

  toString() {
    return this.text;
  }

  toJSON() { // inside JSON.stringify: the number as written, where the browser can say so
    return JSON.rawJSON ? JSON.rawJSON(this.text) : Number(this.text);
  }
}

// JSON.parse, keeping such numbers as ExactNumber where the browser tells a value's source text.
export function parseExact(text) {
  return JSON.parse(text, (key, value, context) =>
    typeof value === "number" && context?.source !== undefined && String(value) !== context.source ? new ExactNumber(context.source) : value);
}

const TOKEN = /\s*("(?:[^"\\]|\\.)*"|[{}[\]:,]|[^\s{}[\]:,"]+)/gy;

function tokens(text) {
  const found = [];
  TOKEN.lastIndex = 0;
  let match;
  while (TOKEN.lastIndex < text.length && (match = TOKEN.exec(text))) found.push(match[1]);
  return found;
}

// The text of member `name` of the JSON object `text`, exactly as written there, or undefined.
export function memberText(text, name) {
  const list = tokens(text);
  let depth = 0;
  for (let i = 0; i < list.length; i++) {
    const token = list[i];
    if (depth === 1 && token.startsWith('"') && list[i + 1] === ":" && JSON.parse(token) === name && "{[,".includes(list[i - 1])) {
      const start = i + 2;
      let end = start;
      for (let inner = 0; end < list.length; end++) {
        if (list[end] === "{" || list[end] === "[") inner++;
        else if (list[end] === "}" || list[end] === "]") inner--;
        if (inner === 0) break;
      }
      return list.slice(start, end + 1).join("");
    }
    if (token === "{" || token === "[") depth++;
    else if (token === "}" || token === "]") depth--;
  }
  return undefined;
}

// Valid JSON text laid out with two-space indents, or compacted: every string and number as written.
export function layout(text, indent = "  ") {
  let depth = 0;
  let out = "";
  const line = () => (indent ? "\n" + indent.repeat(depth) : "");
  const list = tokens(text);
  list.forEach((token, i) => {
    if (token === "{" || token === "[") {
      const empty = list[i + 1] === (token === "{" ? "}" : "]");
      depth++;
      out += token + (empty ? "" : line());
    } else if (token === "}" || token === "]") {
      depth--;
      out += ("{[".includes(list[i - 1]) ? "" : line()) + token;
    } else if (token === ",") {
      out += "," + line();
    } else if (token === ":") {
      out += indent ? ": " : ":";
    } else {
      out += token;
    }
  });
  return out;
}
