// A turn's latency as a waterfall, from the end of the user's speech: endpointing (the
// silence that ended the turn), STT, first token, first audio (the turn latency).
import { h, ms } from "./dom.js";

export function waterfall(latency, label = "Turn latency") {
  const num = (key) => (typeof latency[key] === "number" ? latency[key] : null);
  const rows = [];
  let at = 0;
  const add = (key, title, start, value) => { if (value !== null) rows.push({ key, title, start, value }); };
  add("endpointing", "Endpointing", at, num("endpointing"));
  at += num("endpointing") || 0;
  add("stt", "STT", at, num("stt"));
  at += num("stt") || 0;
  // The agent's part: retrieval, then the first token. A spoken turn measures the first token
  // from the reply's start (retrieval included); a typed one from the end of retrieval.
  const retrieve = num("retrieve");
  const firstToken = num("first_token");
  add("retrieve", "Retrieval", at, retrieve);
  const tokenFrom = retrieve !== null && firstToken !== null && firstToken < retrieve ? at + retrieve : at;
  add("first_token", "First token", tokenFrom, firstToken);
  if (firstToken !== null) at = tokenFrom + firstToken;
  else if (retrieve !== null) at += retrieve;
  add("tts_first_byte", "TTS first byte", at, num("tts_first_byte"));
  const firstAudio = num("first_audio_byte");
  add(firstAudio !== null ? "first_audio_byte" : "total", firstAudio !== null ? "First audio" : "Total", 0, firstAudio !== null ? firstAudio : num("total"));
  if (!rows.length) return h("p", { class: "hint", text: "No latency recorded for this turn." });
  const span = Math.max(1, ...rows.map((r) => r.start + r.value));
  return h("figure", { class: "waterfall", testid: "latency-waterfall" },
    h("figcaption", { text: label }),
    rows.map((r) => {
      const bar = h("span", { class: `bar ${r.key}` });
      bar.style.marginLeft = `${(100 * r.start) / span}%`;
      bar.style.width = `${Math.max(0.5, (100 * r.value) / span)}%`;
      return h("div", { class: "wf-row", dataset: { stage: r.key, ms: String(r.value) } },
        h("span", { class: "wf-label", text: r.title }),
        h("span", { class: "wf-track" }, bar),
        h("span", { class: "wf-value", text: ms(r.value) }));
    }));
}
