// The heartbeat strip: one bar per recent run, oldest on the left, coloured by its status.
import { esc } from "../dom.js";
import { runClass } from "./status.js";

export const BEATS = 30;

export function heartbeat(beats, count = BEATS) {
  const recent = (beats || []).slice(-count);
  const pad = count - recent.length;
  let out = `<span class="beats" aria-label="last ${recent.length} runs">`;
  for (let i = 0; i < pad; i += 1) out += '<i class="s-none"></i>';
  for (const beat of recent) {
    const title = `${beat.status} ${beat.at ? new Date(beat.at).toLocaleTimeString() : ""}` +
      (beat.response_time_ms !== null && beat.response_time_ms !== undefined ? ` ${Math.round(beat.response_time_ms)} ms` : "");
    out += `<i class="${runClass(beat.status)}" title="${esc(title)}"></i>`;
  }
  return `${out}</span>`;
}
