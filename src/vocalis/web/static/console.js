"use strict";
// The console talks to the public REST API with the key the user pastes; nothing else.
const $ = (id) => document.getElementById(id);
const state = { key: sessionStorage.getItem("vocalis-key") || "", agent: null, conversation: null };

function status(text) { $("status").textContent = text || ""; }

async function api(path, options = {}) {
  const headers = { Authorization: `Bearer ${state.key}`, ...(options.headers || {}) };
  if (options.json !== undefined) {
    headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(options.json);
  }
  const response = await fetch(path, { ...options, headers });
  if (!response.ok) {
    let detail = response.statusText;
    try { const p = await response.json(); detail = `${p.code}: ${p.detail}`; } catch (_) { /* not JSON */ }
    throw new Error(detail);
  }
  return response.status === 204 ? null : response.json();
}

function item(list, text, onClick) {
  const li = document.createElement("li");
  li.textContent = text;
  li.addEventListener("click", () => { [...list.children].forEach((c) => c.classList.remove("active")); li.classList.add("active"); onClick(); });
  list.appendChild(li);
}

function bubble(role, text, citations) {
  const div = document.createElement("div");
  div.className = `msg ${role}`;
  div.textContent = text;
  if (citations && citations.length) {
    const c = document.createElement("div");
    c.className = "cite";
    c.textContent = "Sources: " + citations.map((x) => x.document_name || x.document_id).join(", ");
    div.appendChild(c);
  }
  $("transcript").appendChild(div);
  $("transcript").scrollTop = $("transcript").scrollHeight;
  return div;
}

async function refresh() {
  const org = await api("/v1/org");
  $("org").textContent = org.name;
  const agents = await api("/v1/agents?limit=100");
  $("agents").replaceChildren();
  agents.data.forEach((a) => item($("agents"), a.name, () => selectAgent(a)));
  try {
    const kbs = await api("/v1/knowledge-bases?limit=100");
    $("kbs").replaceChildren();
    $("upload-kb").replaceChildren();
    kbs.data.forEach((kb) => {
      item($("kbs"), `${kb.name} (${kb.id})`, () => {});
      const opt = document.createElement("option");
      opt.value = kb.id; opt.textContent = kb.name;
      $("upload-kb").appendChild(opt);
    });
  } catch (_) { /* knowledge bases not available to this key */ }
  const conversations = await api("/v1/conversations?limit=30");
  $("conversations").replaceChildren();
  conversations.data.forEach((c) => item($("conversations"), `${c.created_at.slice(0, 16)} · ${c.status}`, () => showConversation(c.id)));
}

function selectAgent(agent) {
  state.agent = agent; state.conversation = null;
  $("current-agent").textContent = `— ${agent.name}`;
  $("transcript").replaceChildren();
}

async function showConversation(id) {
  const c = await api(`/v1/conversations/${id}`);
  state.conversation = c.status === "active" ? c : null;
  $("transcript").replaceChildren();
  (c.messages || c.transcript || []).forEach((m) => bubble(m.role, m.content, m.citations));
}

async function send(text) {
  if (!state.agent) { status("Pick an agent first."); return; }
  if (!state.conversation) {
    state.conversation = await api(`/v1/agents/${state.agent.id}/conversations`, { method: "POST", json: {} });
    (state.conversation.messages || []).forEach((m) => bubble(m.role, m.content, m.citations));
  }
  bubble("user", text);
  const reply = bubble("assistant", "");
  const response = await fetch(`/v1/conversations/${state.conversation.id}/messages`, {
    method: "POST",
    headers: { Authorization: `Bearer ${state.key}`, "Content-Type": "application/json", Accept: "text/event-stream" },
    body: JSON.stringify({ content: text, stream: true }),
  });
  if (!response.ok) { status((await response.json()).detail); return; }
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut); buffer = buffer.slice(cut + 2);
      const event = (block.match(/^event: (.*)$/m) || [])[1];
      const data = (block.match(/^data: (.*)$/m) || [])[1];
      if (!data) continue;
      const payload = JSON.parse(data);
      if (event === "message.delta") reply.firstChild ? reply.firstChild.appendData(payload.delta || "") : reply.append(payload.delta || "");
      if (event === "message.completed") { reply.remove(); bubble("assistant", payload.content, payload.citations); }
      if (event === "error") status(payload.detail || "error");
    }
  }
}

$("key-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  state.key = $("api-key").value.trim();
  sessionStorage.setItem("vocalis-key", state.key);
  try { await refresh(); status(""); } catch (err) { status(err.message); }
});
$("agent-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const kbs = $("agent-kbs").value.split(",").map((s) => s.trim()).filter(Boolean);
  try {
    await api("/v1/agents", { method: "POST", json: { name: $("agent-name").value, instructions: $("agent-instructions").value, knowledge_base_ids: kbs } });
    await refresh();
  } catch (err) { status(err.message); }
});
$("kb-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  try { await api("/v1/knowledge-bases", { method: "POST", json: { name: $("kb-name").value } }); await refresh(); } catch (err) { status(err.message); }
});
$("upload-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const form = new FormData();
  form.append("file", $("upload-file").files[0]);
  try {
    const doc = await api(`/v1/knowledge-bases/${$("upload-kb").value}/documents`, { method: "POST", body: form });
    status(`Uploaded: ${doc.id} (${doc.status})`);
  } catch (err) { status(err.message); }
});
$("chat-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const text = $("chat-input").value; $("chat-input").value = "";
  try { await send(text); } catch (err) { status(err.message); }
});
$("end-button").addEventListener("click", async () => {
  if (!state.conversation) return;
  try { await api(`/v1/conversations/${state.conversation.id}/end`, { method: "POST" }); state.conversation = null; await refresh(); } catch (err) { status(err.message); }
});
if (state.key) { $("api-key").value = state.key; refresh().catch((err) => status(err.message)); }
