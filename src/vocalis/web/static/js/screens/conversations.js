// Conversations: filters, the list (agent, channel, status, turns), a transcript with each
// turn's audio, citations, tool calls, the analysis and a per-turn latency waterfall.
import { api, all, blobUrl } from "../api.js";
import { h, field, card, when, attempt, ms } from "../dom.js";
import { citationsList } from "./playground.js";
import { waterfall } from "../waterfall.js";

function message(conversation, m) {
  const el = h("div", { class: `msg ${m.role}${m.interrupted ? " interrupted" : ""}` }, h("div", { class: "text", text: m.content }));
  const cites = citationsList(m.citations);
  if (cites) el.append(cites);
  for (const call of m.tool_calls || []) el.append(h("pre", { class: "tool", text: `→ ${call.name}(${typeof call.arguments === "string" ? call.arguments : JSON.stringify(call.arguments)})` }));
  for (const result of m.tool_results || []) el.append(h("pre", { class: "tool", text: `← ${result.name || result.call_id}: ${typeof result.output === "string" ? result.output : JSON.stringify(result.output)}` }));
  if (m.recording && m.recording.url) {
    const play = h("button", { type: "button", class: "ghost small", text: `▶ Play ${m.role === "user" ? "caller" : "agent"} audio` });
    play.addEventListener("click", async () => {
      const url = await attempt(() => blobUrl(m.recording.url));
      if (url) play.replaceWith(h("audio", { controls: true, src: url, "aria-label": `${m.role} audio` }));
    });
    el.append(play);
  }
  if (m.role === "assistant" && m.latency_ms && Object.keys(m.latency_ms).length) {
    el.append(h("details", { open: m.latency_ms.first_audio_byte !== undefined }, h("summary", { text: `Latency ${ms(m.latency_ms.first_audio_byte ?? m.latency_ms.total)}` }), waterfall(m.latency_ms)));
  }
  return el;
}

async function transcript(id, names = {}) {
  const c = await api(`/v1/conversations/${id}`);
  const facts = [
    ["Agent", `${names[c.agent_id] || c.agent_id} (v${c.agent_version})`], ["Channel", c.channel], ["Status", c.status],
    ["Started", when(c.created_at)], ["Ended", c.ended_at ? `${when(c.ended_at)} (${c.ended_reason})` : "–"],
    ["Duration", c.duration_s != null ? `${c.duration_s.toFixed(1)} s` : "–"], ["Cost", `$${(c.usage && c.usage.cost_usd || 0).toFixed(4)}`],
  ];
  const parts = [h("dl", { class: "facts" }, facts.flatMap(([k, v]) => [h("dt", { text: k }), h("dd", { text: v })]))];
  if (c.status === "active") parts.push(h("button", { type: "button", class: "ghost", text: "End conversation", onclick: async () => { await attempt(() => api(`/v1/conversations/${id}/end`, { method: "POST", json: {} }), "Ended."); location.hash = `#/conversations/${id}?r=${Date.now()}`; } }));
  if (c.analysis) {
    parts.push(h("section", { class: "analysis" }, h("h3", { text: "Analysis" }),
      h("p", { text: c.analysis.summary || "" }),
      h("p", { class: "hint", text: `Outcome: ${c.analysis.outcome || "–"} · sentiment: ${c.analysis.sentiment || "–"}` }),
      c.analysis.fields ? h("pre", { class: "mono", text: JSON.stringify(c.analysis.fields, null, 2) }) : null));
  }
  parts.push(h("div", { class: "log transcript", role: "log", "aria-label": "Transcript" }, (c.messages || []).map((m) => message(c, m))));
  return card(`Conversation ${c.id}`, ...parts);
}

export async function conversationsScreen(host, [selectedRaw]) {
  const selected = selectedRaw ? selectedRaw.split("?")[0] : null;
  const agents = await all("/v1/agents").catch(() => []);
  const names = Object.fromEntries(agents.map((a) => [a.id, a.name]));
  const params = new URLSearchParams(sessionStorage.getItem("vocalis-conv-filters") || "");
  const agent = h("select", {}, h("option", { value: "", text: "All agents" }), agents.map((a) => h("option", { value: a.id, text: a.name })));
  const status = h("select", {}, ["", "active", "ended"].map((s) => h("option", { value: s, text: s || "Any status" })));
  const channel = h("select", {}, ["", "api", "voice", "phone", "chat"].map((s) => h("option", { value: s, text: s || "Any channel" })));
  const after = h("input", { type: "date" });
  agent.value = params.get("agent_id") || "";
  status.value = params.get("status") || "";
  channel.value = params.get("channel") || "";
  after.value = (params.get("created_after") || "").slice(0, 10);
  const listHost = h("div", {});
  const detail = h("div", { class: "detail" });
  const load = async () => {
    const q = new URLSearchParams();
    if (agent.value) q.set("agent_id", agent.value);
    if (status.value) q.set("status", status.value);
    if (channel.value) q.set("channel", channel.value);
    if (after.value) q.set("created_after", new Date(after.value).toISOString());
    sessionStorage.setItem("vocalis-conv-filters", q.toString());
    q.set("limit", "50");
    const page = await attempt(() => api(`/v1/conversations?${q}`));
    if (!page) return;
    listHost.replaceChildren(page.data.length ? h("ul", { class: "list conversations", "aria-label": "Conversations" }, page.data.map((c) =>
      h("li", { class: c.id === selected ? "active" : "" },
        h("a", { href: `#/conversations/${c.id}` }, h("strong", { text: names[c.agent_id] || c.agent_id }), ` · ${c.channel}`),
        h("small", { text: `${when(c.created_at)} · ${c.message_count} msgs · ${c.status}${c.ended_reason ? ` (${c.ended_reason})` : ""}` })))) : h("p", { class: "empty", text: "No conversation matches." }));
  };
  const filters = h("form", { class: "filters", "aria-label": "Filters" }, field("Agent", agent), field("Status", status), field("Channel", channel), field("Since", after));
  filters.addEventListener("change", load);
  filters.addEventListener("submit", (e) => { e.preventDefault(); load(); });
  host.replaceChildren(h("div", { class: "head" }, h("h1", { text: "Conversations" })), filters, h("div", { class: "split" }, card(null, listHost), detail));
  await load();
  if (selected) detail.replaceChildren(await transcript(selected, names));
  else detail.replaceChildren(card(null, h("p", { class: "empty", text: "Pick a conversation to read its transcript." })));
}
