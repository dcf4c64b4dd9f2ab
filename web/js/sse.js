// Server-Sent Events over fetch(): EventSource cannot send the Authorization header the API needs.
// Parses the stream (id/event/data fields, blank-line separated), resumes after the last id when the
// connection drops, and stops at the `end` event.
import { accessToken } from "./api.js";

export function parseEvents(buffer, emit) {
  const blocks = buffer.split(/\r?\n\r?\n/);
  const rest = blocks.pop();
  for (const block of blocks) {
    const message = { id: null, event: "message", data: [] };
    for (const line of block.split(/\r?\n/)) {
      if (!line || line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "data") message.data.push(value);
      else if (field === "id") message.id = value;
      else if (field === "event") message.event = value;
    }
    if (message.data.length) emit({ ...message, data: message.data.join("\n") });
  }
  return rest;
}

/** Follow `url` (under /api/v1) calling onEvent(message) until `end` or stop(); returns stop. */
export function follow(url, { after = 0, onEvent, onEnd, onError }) {
  const controller = new AbortController();
  let last = after;
  let ended = false;

  async function connect() {
    while (!ended && !controller.signal.aborted) {
      try {
        const token = await accessToken();
        const separator = url.includes("?") ? "&" : "?";
        const response = await fetch(`/api/v1${url}${separator}after=${last}`, {
          headers: { Authorization: `Bearer ${token}`, Accept: "text/event-stream" }, signal: controller.signal,
        });
        if (!response.ok) throw new Error(`stream answered ${response.status}`);
        const reader = response.body.getReader();
        const decoder = new TextDecoder();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer = parseEvents(buffer + decoder.decode(value, { stream: true }), (message) => {
            if (message.event === "end") {
              ended = true;
              onEnd && onEnd(JSON.parse(message.data));
              return;
            }
            if (message.id) last = Number(message.id);
            onEvent(JSON.parse(message.data));
          });
          if (ended) { controller.abort(); return; }
        }
      } catch (error) {
        if (controller.signal.aborted) return;
        onError && onError(error);
      }
      if (!ended) await new Promise((resolve) => setTimeout(resolve, 2000));
    }
  }
  connect();
  return () => controller.abort();
}
