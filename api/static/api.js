// The REST client of the page: the bearer token lives in this tab's sessionStorage only and is
// sent as a header, never in a URL.
const KEY = "callrec.token";

export class Unauthorized extends Error {}

export const session = {
  get token() { return sessionStorage.getItem(KEY); },
  set token(value) { value ? sessionStorage.setItem(KEY, value) : sessionStorage.removeItem(KEY); },
};

export async function api(path, { method = "GET", params, signal } = {}) {
  const url = new URL(`/api/v1${path}`, location.origin);
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== undefined && v !== null && v !== "") url.searchParams.set(k, v);
  }
  const response = await fetch(url, {
    method, signal, headers: { Authorization: `Bearer ${session.token}`, Accept: "application/json" },
  });
  if (response.status === 401) throw new Unauthorized("Your token is not valid (any more).");
  if (!response.ok) {
    let detail = response.statusText;
    try {
      const body = await response.json();
      detail = Array.isArray(body.detail)
        ? body.detail.map((d) => `${d.loc.at(-1)}: ${d.msg}`).join("; ")
        : body.detail;
    } catch { /* not JSON */ }
    throw new Error(detail);
  }
  return response.json();
}

// Server-sent events over fetch(), so the bearer header can go along (EventSource cannot).
export async function subscribe(path, onEvent, signal) {
  const response = await fetch(`/api/v1${path}`, {
    signal, headers: { Authorization: `Bearer ${session.token}`, Accept: "text/event-stream" },
  });
  if (response.status === 401) throw new Unauthorized("Your token is not valid (any more).");
  if (!response.ok || !response.body) throw new Error(`live feed: ${response.status}`);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = "message", data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event: ")) event = line.slice(7);
        else if (line.startsWith("data: ")) data += line.slice(6);
      }
      if (data) onEvent(event, JSON.parse(data));
    }
  }
}
