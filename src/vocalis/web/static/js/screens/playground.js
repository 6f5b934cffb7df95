// Playground: talk to an agent by text (streamed, with citations) or by voice (microphone ->
// /v1/realtime with a client secret, speech played back, barge-in, per-turn latency).
import { api, all, stream } from "../api.js";
import { h, field, card, say, ms } from "../dom.js";
import { VoiceSession } from "../voice/realtime.js";
import { waterfall } from "../waterfall.js";

export function citationsList(citations) {
  if (!citations || !citations.length) return null;
  return h("ol", { class: "citations", "aria-label": "Sources" }, citations.map((c) =>
    h("li", { value: c.n || undefined, title: `${c.attributed ? "Attributed (the reply cites no passage): " : ""}${c.text || ""}` }, `${c.document_name || c.document_id}${c.section ? ` § ${c.section}` : ""}${c.page ? ` p.${c.page}` : ""}${c.attributed ? " (attributed)" : ""}`)));
}

function bubble(role, text, testid) {
  return h("div", { class: `msg ${role}`, testid }, h("div", { class: "text", text }));
}

function chatPanel(agentId) {
  const log = h("div", { class: "log", role: "log", "aria-label": "Chat transcript", "aria-live": "polite" });
  const input = h("input", { testid: "chat-input", autocomplete: "off", required: true, placeholder: "Ask something…" });
  const send = h("button", { type: "submit", testid: "chat-send", text: "Send" });
  let conversation = null;
  const newChat = h("button", { type: "button", class: "ghost", text: "New chat", onclick: async () => {
    if (conversation) await api(`/v1/conversations/${conversation.id}/end`, { method: "POST", json: {} }).catch(() => {});
    conversation = null;
    log.replaceChildren();
  } });
  const form = h("form", { class: "chat-form" }, field("Message", input), send);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = input.value.trim();
    if (!text) return;
    input.value = "";
    send.disabled = true;
    try {
      if (!conversation) {
        conversation = await api(`/v1/agents/${agentId}/conversations`, { method: "POST", json: {} });
        for (const m of conversation.messages || []) log.append(bubble(m.role, m.content));
      }
      log.append(bubble("user", text));
      const reply = bubble("assistant", "");
      reply.classList.add("streaming");
      log.append(reply);
      const textEl = reply.querySelector(".text");
      await stream(`/v1/conversations/${conversation.id}/messages`, { content: text, stream: true }, (name, data) => {
        if (name === "message.delta") textEl.textContent += data.delta || "";
        else if (name === "message.completed") {
          textEl.textContent = data.content;
          reply.classList.remove("streaming");
          reply.dataset.testid = "chat-reply";
          const cites = citationsList(data.citations);
          if (cites) reply.append(cites);
          if (data.latency_ms && data.latency_ms.total !== undefined) reply.append(h("small", { class: "meta", text: `first token ${ms(data.latency_ms.first_token)} · total ${ms(data.latency_ms.total)}` }));
        } else if (name === "error") say(data.detail || "The reply failed.", "error");
        log.scrollTop = log.scrollHeight;
      });
    } catch (err) {
      say(err.message, "error");
    } finally {
      send.disabled = false;
      input.focus();
    }
  });
  return card("Chat", h("div", { class: "head" }, h("span", { class: "hint", text: "Streamed replies with their sources." }), newChat), log, form);
}

function voicePanel(agentId) {
  const start = h("button", { type: "button", testid: "voice-start", text: "Start talking" });
  const stop = h("button", { type: "button", testid: "voice-stop", text: "Stop", disabled: true, class: "ghost" });
  const state = h("span", { class: "voice-state", role: "status", text: "Idle" });
  const meter = h("span", { class: "meter-fill" });
  const audio = h("output", { testid: "voice-audio", dataset: { samples: "0", audible: "0", peak: "0" }, text: "0.0 s played" });
  const log = h("div", { class: "log", role: "log", "aria-label": "Voice transcript", "aria-live": "polite" });
  const turns = h("div", { class: "turns" });
  let voice = null;
  let raf = 0;
  const replies = new Map();
  const draw = () => {
    if (!voice) return;
    meter.style.width = `${Math.min(100, Math.round(voice.level() * 140))}%`;
    raf = requestAnimationFrame(draw);
  };
  const finish = (why = "Stopped") => {
    cancelAnimationFrame(raf);
    start.disabled = false;
    stop.disabled = true;
    state.textContent = why;
    meter.style.width = "0%";
  };
  const onEvent = (event) => {
    switch (event.type) {
      case "session.created":
        state.textContent = "Listening…";
        log.dataset.conversation = (event.vocalis && event.vocalis.conversation_id) || "";
        break;
      case "input_audio_buffer.speech_started": state.textContent = "Hearing you…"; break;
      case "input_audio_buffer.speech_stopped": state.textContent = "Thinking…"; break;
      case "conversation.item.input_audio_transcription.completed":
        log.append(bubble("user", event.transcript, "voice-transcript"));
        break;
      case "response.output_audio_transcript.delta": {
        let el = replies.get(event.item_id);
        if (!el) { el = bubble("assistant", "", "voice-reply"); replies.set(event.item_id, el); log.append(el); }
        el.querySelector(".text").textContent += event.delta;
        state.textContent = "Speaking…";
        break;
      }
      case "response.output_audio_transcript.done": {
        const el = replies.get(event.item_id);
        if (el) el.querySelector(".text").textContent = event.transcript;
        break;
      }
      case "response.done": {
        const v = event.vocalis || {};
        const el = replies.get((event.response.output || []).map((o) => o.id).find((id) => replies.has(id)));
        if (el && v.citations) { const c = citationsList(v.citations); if (c) el.append(c); }
        if (event.response.status === "cancelled" && el) el.classList.add("interrupted");
        if (v.latency_ms && Object.keys(v.latency_ms).length) turns.prepend(waterfall(v.latency_ms, `Turn ${turns.children.length + 1}${event.response.status === "cancelled" ? " (interrupted)" : ""}`));
        state.textContent = "Listening…";
        break;
      }
      case "error": say(event.error ? event.error.message : "Voice error", "error"); break;
      case "vocalis.conversation.ended": state.textContent = "Conversation ended"; break;
      default: break;
    }
    log.scrollTop = log.scrollHeight;
  };
  const onStats = (stats) => {
    audio.dataset.samples = String(stats.played);
    audio.dataset.audible = String(stats.audible);
    audio.dataset.peak = stats.peak.toFixed(3);
    audio.textContent = `${(stats.played / 24000).toFixed(1)} s played`;
  };
  start.addEventListener("click", async () => {
    start.disabled = true;
    state.textContent = "Connecting…";
    voice = new VoiceSession(agentId, { onEvent, onStats, onClose: (e) => { voice = null; finish(e.code === 1000 || e.code === 1005 ? "Stopped" : `Disconnected (${e.code}${e.reason ? `: ${e.reason}` : ""})`); } });
    try {
      await voice.start();
      stop.disabled = false;
      stop.focus();
      draw();
    } catch (err) {
      say(`Voice: ${err.message}`, "error");
      if (voice) voice.stop();
      voice = null;
      finish();
    }
  });
  stop.addEventListener("click", () => { if (voice) voice.stop(); voice = null; finish(); });
  const panel = card("Voice",
    h("div", { class: "voice-controls" }, start, stop, state),
    h("div", { class: "meter", "aria-hidden": "true" }, meter), h("p", { class: "hint" }, "Agent audio: ", audio, ". Speak over the agent to interrupt it."),
    log, h("h3", { text: "Latency per turn" }), turns);
  return { panel, stop: () => { if (voice) voice.stop(); voice = null; } };
}

export async function playgroundScreen(host, [agentId]) {
  const agents = await all("/v1/agents");
  if (!agentId && agents.length) agentId = agents[0].id;
  const picker = h("select", { "aria-label": "Agent" }, h("option", { value: "", text: "Choose an agent…" }), agents.map((a) => h("option", { value: a.id, text: a.name })));
  picker.value = agentId || "";
  picker.addEventListener("change", () => { location.hash = `#/playground/${picker.value}`; });
  const headRow = h("div", { class: "head" }, h("h1", { text: "Playground" }), field("Agent", picker));
  if (!agentId || !agents.some((a) => a.id === agentId)) {
    host.replaceChildren(headRow, card(null, h("p", { class: "empty", text: agents.length ? "Choose an agent to talk to." : "Create an agent first." })));
    return null;
  }
  const voice = voicePanel(agentId);
  host.replaceChildren(headRow, h("div", { class: "columns" }, chatPanel(agentId), voice.panel));
  return voice.stop;
}
