// Agents: list, create, edit every setting, versions with a diff and roll back.
import { api, all } from "../api.js";
import { h, field, card, say, when, attempt } from "../dom.js";

const lines = (text) => text.split(/[\n,]/).map((s) => s.trim()).filter(Boolean);

function parseJson(text, fallback) {
  if (!text.trim()) return fallback;
  return JSON.parse(text);
}

/** The settings form; `agent` is null for a new one. */
function editor(agent, kbs, onSaved) {
  const c = agent || { name: "", instructions: "", first_message: "", model: { provider: "default" }, tools: [], knowledge_base_ids: [], voice: { voice: null, language: "en" }, end_of_conversation_phrases: [], limits: {}, metadata: {}, analysis_plan: null };
  const name = h("input", { testid: "agent-name", required: true, value: c.name, maxlength: 200 });
  const instructions = h("textarea", { testid: "agent-instructions", rows: 6, value: c.instructions || "" });
  instructions.value = c.instructions || "";
  const firstMessage = h("input", { value: c.first_message || "" });
  const provider = h("select", {}, ["default", "openai", "anthropic", "ollama", "vllm"].map((p) => h("option", { value: p, text: p })));
  provider.value = (c.model && c.model.provider) || "default";
  const model = h("input", { value: (c.model && c.model.model) || "", placeholder: "deployment default" });
  const providerId = h("input", { value: (c.model && c.model.provider_id) || "", placeholder: "mpr_… (optional)" });
  const temperature = h("input", { type: "number", step: "0.1", min: "0", max: "2", value: c.model && c.model.temperature != null ? c.model.temperature : "" });
  const voice = h("input", { value: (c.voice && c.voice.voice) || "", placeholder: "engine default" });
  const language = h("input", { value: (c.voice && c.voice.language) || "en" });
  const phrases = h("input", { value: (c.end_of_conversation_phrases || []).join(", ") });
  const idle = h("input", { type: "number", min: "1", value: (c.limits && c.limits.idle_timeout_s) || "" });
  const maxDuration = h("input", { type: "number", min: "1", value: (c.limits && c.limits.max_duration_s) || "" });
  const tools = h("textarea", { rows: 3, class: "mono" });
  tools.value = JSON.stringify(c.tools || [], null, 1);
  const analysis = h("textarea", { rows: 2, class: "mono" });
  analysis.value = c.analysis_plan ? JSON.stringify(c.analysis_plan, null, 1) : "";
  const metadata = h("textarea", { rows: 2, class: "mono" });
  metadata.value = JSON.stringify(c.metadata || {});
  const kbBoxes = kbs.map((kb) => {
    const box = h("input", { type: "checkbox", value: kb.id, checked: (c.knowledge_base_ids || []).includes(kb.id), id: `kb-${kb.id}` });
    return h("label", { class: "check", for: box.id }, box, ` ${kb.name}`);
  });
  const form = h("form", { class: "agent-form", "aria-label": agent ? `Edit ${agent.name}` : "New agent" },
    field("Name", name),
    field("Instructions", instructions, "The system prompt."),
    field("First message", firstMessage, "Said when a conversation starts; empty lets the user start."),
    h("fieldset", {}, h("legend", { text: "Knowledge bases" }), kbBoxes.length ? kbBoxes : h("p", { class: "hint", text: "No knowledge bases yet." })),
    h("fieldset", { class: "grid2" }, h("legend", { text: "Model" }), field("Provider", provider), field("Model", model), field("Provider id", providerId), field("Temperature", temperature)),
    h("fieldset", { class: "grid2" }, h("legend", { text: "Voice" }), field("Voice", voice), field("Language", language)),
    h("fieldset", { class: "grid2" }, h("legend", { text: "Conversation" }), field("End phrases", phrases, "Comma-separated."), field("Idle timeout (s)", idle), field("Max duration (s)", maxDuration)),
    h("details", {}, h("summary", { text: "Advanced (JSON)" }), field("Tools", tools), field("Analysis plan", analysis), field("Metadata", metadata)),
    h("div", { class: "actions" }, h("button", { type: "submit", testid: "agent-save", text: agent ? "Save changes" : "Create agent" })));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    let body;
    try {
      const modelSettings = { ...(c.model || {}), provider: provider.value, model: model.value || null, provider_id: providerId.value || null, temperature: temperature.value === "" ? null : Number(temperature.value) };
      body = {
        name: name.value.trim(),
        instructions: instructions.value,
        first_message: firstMessage.value || null,
        model: modelSettings,
        knowledge_base_ids: kbBoxes.map((l) => l.querySelector("input")).filter((b) => b.checked).map((b) => b.value),
        voice: { ...(c.voice || {}), voice: voice.value || null, language: language.value || "en" },
        end_of_conversation_phrases: lines(phrases.value),
        limits: { idle_timeout_s: idle.value ? Number(idle.value) : null, max_duration_s: maxDuration.value ? Number(maxDuration.value) : null },
        tools: parseJson(tools.value, []),
        analysis_plan: parseJson(analysis.value, null),
        metadata: parseJson(metadata.value, {}),
      };
    } catch (err) {
      say(`Invalid JSON: ${err.message}`, "error");
      return;
    }
    const saved = await attempt(() => agent
      ? api(`/v1/agents/${agent.id}`, { method: "PATCH", json: body })
      : api("/v1/agents", { method: "POST", json: body }), agent ? "Agent saved." : "Agent created.");
    if (saved) onSaved(saved);
  });
  return form;
}

/** A line diff of two JSON documents (longest common subsequence of lines). */
export function diff(before, after) {
  const a = JSON.stringify(before, null, 2).split("\n");
  const b = JSON.stringify(after, null, 2).split("\n");
  const n = a.length, m = b.length;
  const lcs = Array.from({ length: n + 1 }, () => new Int32Array(m + 1));
  for (let i = n - 1; i >= 0; i--) for (let j = m - 1; j >= 0; j--) lcs[i][j] = a[i] === b[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
  const out = [];
  let i = 0, j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && a[i] === b[j]) { out.push([" ", a[i]]); i++; j++; }
    else if (j < m && (i === n || lcs[i][j + 1] >= lcs[i + 1][j])) { out.push(["+", b[j]]); j++; }
    else { out.push(["-", a[i]]); i++; }
  }
  return h("pre", { class: "diff", "aria-label": "Changes" }, out.map(([sign, text]) => h("span", { class: sign === "+" ? "add" : sign === "-" ? "del" : "same", text: `${sign} ${text}\n` })));
}

async function versionsPanel(agent, onRestored) {
  const page = await api(`/v1/agents/${agent.id}/versions?limit=50`);
  const current = configOf(agent);
  const diffHost = h("div", {});
  const rows = page.data.map((v) => h("li", {},
    h("span", { text: `v${v.version} · ${when(v.created_at)}${v.version === agent.version ? " (live)" : ""}` }),
    h("button", { type: "button", class: "ghost", text: "Diff", onclick: () => diffHost.replaceChildren(h("h3", { text: `v${v.version} → live (v${agent.version})` }), diff(v.config, current)) }),
    v.version === agent.version ? null : h("button", { type: "button", class: "ghost", text: "Roll back", onclick: async () => {
      const saved = await attempt(() => api(`/v1/agents/${agent.id}`, { method: "PATCH", json: v.config }), `Rolled back to v${v.version} (published as a new version).`);
      if (saved) onRestored(saved);
    } })));
  return card("Versions", h("p", { class: "hint", text: "Every save publishes a new version; conversations keep the version they started on. Rolling back publishes an old version's settings again." }), h("ul", { class: "versions" }, rows), diffHost);
}

function configOf(agent) {
  const { id, object, version, created_at, updated_at, ...config } = agent;
  return config;
}

export async function agentsScreen(host, [selected]) {
  const [agents, kbs] = await Promise.all([all("/v1/agents"), all("/v1/knowledge-bases").catch(() => [])]);
  const list = h("ul", { class: "list", "aria-label": "Agents" });
  const detail = h("div", { class: "detail" });
  const show = async (agent) => {
    for (const li of list.children) li.classList.toggle("active", li.dataset.id === (agent && agent.id));
    if (!agent) {
      detail.replaceChildren(card("New agent", editor(null, kbs, (saved) => { location.hash = `#/agents/${saved.id}`; })));
      detail.querySelector("input").focus();
      return;
    }
    const reload = (saved) => { if (location.hash === `#/agents/${saved.id}`) agentsScreen(host, [saved.id]); else location.hash = `#/agents/${saved.id}`; };
    detail.replaceChildren(
      card(`${agent.name} · v${agent.version}`,
        h("p", { class: "hint" }, `id ${agent.id} · `, h("a", { href: `#/playground/${agent.id}`, text: "Talk to it in the playground" })),
        editor(agent, kbs, reload)),
      await versionsPanel(agent, reload));
  };
  for (const agent of agents) {
    list.append(h("li", { dataset: { id: agent.id } }, h("a", { href: `#/agents/${agent.id}`, text: agent.name }), h("small", { text: ` v${agent.version}` })));
  }
  host.replaceChildren(
    h("div", { class: "head" }, h("h1", { text: "Agents" }), h("button", { type: "button", testid: "new-agent", text: "New agent", onclick: () => show(null) })),
    h("div", { class: "split" }, card(null, agents.length ? list : h("p", { class: "empty", text: "No agents yet: create one." })), detail));
  const chosen = agents.find((a) => a.id === selected);
  if (chosen) await show(chosen);
  else if (!agents.length) await show(null);
  else detail.replaceChildren(card(null, h("p", { class: "empty", text: "Pick an agent to edit it, or create a new one." })));
}
