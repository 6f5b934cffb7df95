// Webhooks (endpoints, deliveries, replay, test event), API keys, dead letters, feature flags.
import { api, all } from "../api.js";
import { h, field, card, say, when, attempt, table } from "../dom.js";

function rerender(screen, host, args) { return () => screen(host, args); }

export async function webhooksScreen(host, [selected]) {
  const hooks = await all("/v1/webhooks");
  const url = h("input", { type: "url", required: true, placeholder: "https://example.com/hooks" });
  const types = h("input", { placeholder: "conversation.ended, document.ready (empty = all)" });
  const secretOut = h("div", { "aria-live": "polite" });
  const form = h("form", { class: "row-form" }, field("Endpoint URL", url), field("Event types", types), h("button", { type: "submit", text: "Add endpoint" }));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const created = await attempt(() => api("/v1/webhooks", { method: "POST", json: { url: url.value, event_types: types.value.split(",").map((s) => s.trim()).filter(Boolean) } }), "Endpoint added.");
    if (created) { await webhooksScreen(host, [created.id]); host.querySelector(".secret-slot").replaceChildren(h("p", { class: "secret" }, "Signing secret (shown once): ", h("code", { text: created.secret || "" }))); }
  });
  const refresh = rerender(webhooksScreen, host, [selected]);
  const rows = table([
    { title: "URL", cell: (w) => h("a", { href: `#/webhooks/${w.id}`, text: w.url }) },
    { title: "Events", cell: (w) => (w.event_types.length ? w.event_types.join(", ") : "all") },
    { title: "State", cell: (w) => h("span", { class: `badge ${w.enabled ? "ready" : "failed"}`, text: w.enabled ? (w.consecutive_failures ? `failing (${w.consecutive_failures})` : "enabled") : `disabled${w.disabled_reason ? `: ${w.disabled_reason}` : ""}` }) },
    { title: "", cell: (w) => h("span", { class: "buttons" },
      h("button", { type: "button", class: "ghost", text: "Send test", onclick: async () => { await attempt(() => api(`/v1/webhooks/${w.id}/test`, { method: "POST" }), "Test event queued."); refresh(); } }),
      h("button", { type: "button", class: "ghost", text: w.enabled ? "Disable" : "Enable", onclick: async () => { await attempt(() => api(`/v1/webhooks/${w.id}`, { method: "PATCH", json: { enabled: !w.enabled } })); refresh(); } }),
      h("button", { type: "button", class: "ghost", text: "Delete", onclick: async () => { await attempt(() => api(`/v1/webhooks/${w.id}`, { method: "DELETE" }), "Deleted."); location.hash = "#/webhooks"; } })) },
  ], hooks, "No endpoints yet.");
  const parts = [h("div", { class: "head" }, h("h1", { text: "Webhooks" })), card("Endpoints", form, h("div", { class: "secret-slot" }, secretOut), rows)];
  const hook = hooks.find((w) => w.id === selected);
  if (hook) {
    const deliveries = await api(`/v1/webhooks/${hook.id}/deliveries?limit=50`);
    parts.push(card(`Deliveries to ${hook.url}`, table([
      { title: "Event", cell: (d) => d.event_type },
      { title: "Status", cell: (d) => h("span", { class: `badge ${d.status === "delivered" ? "ready" : d.status === "failed" ? "failed" : "processing"}`, text: d.status }) },
      { title: "Attempts", cell: (d) => String(d.attempts.length) },
      { title: "Last", cell: (d) => `${d.last_status_code || ""} ${d.last_error || ""}`.trim() || "–" },
      { title: "Created", cell: (d) => when(d.created_at) },
      { title: "", cell: (d) => h("button", { type: "button", class: "ghost", text: "Replay", onclick: async () => { await attempt(() => api(`/v1/webhooks/${hook.id}/deliveries/${d.id}/replay`, { method: "POST" }), "Replayed."); refresh(); } }) },
    ], deliveries.data, "No deliveries yet.")));
  }
  host.replaceChildren(...parts);
}

export async function keysScreen(host) {
  const keys = await all("/v1/api-keys");
  const name = h("input", { required: true, placeholder: "Server key" });
  const role = h("select", {}, ["member", "admin", "owner", "viewer"].map((r) => h("option", { value: r, text: r })));
  const slot = h("div", { "aria-live": "polite" });
  const form = h("form", { class: "row-form" }, field("Name", name), field("Role", role), h("button", { type: "submit", text: "Create key" }));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const created = await attempt(() => api("/v1/api-keys", { method: "POST", json: { name: name.value, role: role.value } }), "Key created.");
    if (created) { await keysScreen(host); host.querySelector(".secret-slot").replaceChildren(h("p", { class: "secret" }, "New key (shown once): ", h("code", { text: created.key || created.secret || "" }))); }
  });
  host.replaceChildren(h("div", { class: "head" }, h("h1", { text: "API keys" })), card("Keys", form, h("div", { class: "secret-slot" }, slot), table([
    { title: "Name", cell: (k) => k.name },
    { title: "Prefix", cell: (k) => h("code", { text: k.prefix }) },
    { title: "Role", cell: (k) => k.role },
    { title: "Last used", cell: (k) => when(k.last_used_at) || "never" },
    { title: "State", cell: (k) => (k.revoked_at ? `revoked ${when(k.revoked_at)}` : "active") },
    { title: "", cell: (k) => (k.revoked_at ? "" : h("button", { type: "button", class: "ghost", text: "Revoke", "aria-label": `Revoke ${k.name}`, onclick: async () => { await attempt(() => api(`/v1/api-keys/${k.id}`, { method: "DELETE" }), "Revoked."); keysScreen(host); } })) },
  ], keys)));
}

export async function deadLettersScreen(host) {
  let letters;
  try { letters = await all("/v1/admin/dead-letters"); } catch (err) { host.replaceChildren(h("h1", { text: "Dead letters" }), card(null, h("p", { class: "empty", text: `Not available to this key: ${err.message}` }))); return; }
  host.replaceChildren(h("div", { class: "head" }, h("h1", { text: "Dead letters" })), card("Tasks that gave up", h("p", { class: "hint", text: "Background tasks whose retries ran out or that failed permanently. Replay re-queues one; discard drops it." }), table([
    { title: "Task", cell: (d) => d.task_name },
    { title: "Error", cell: (d) => `${d.error_type}: ${d.error}` },
    { title: "Kind", cell: (d) => (d.transient ? "retries ran out" : "permanent") },
    { title: "Attempts", cell: (d) => String(d.attempts) },
    { title: "Last failed", cell: (d) => when(d.last_failed_at) },
    { title: "", cell: (d) => h("span", { class: "buttons" },
      d.replayable ? h("button", { type: "button", class: "ghost", text: "Replay", onclick: async () => { await attempt(() => api(`/v1/admin/dead-letters/${d.id}/replay`, { method: "POST" }), "Replayed."); deadLettersScreen(host); } }) : null,
      h("button", { type: "button", class: "ghost", text: "Discard", onclick: async () => { await attempt(() => api(`/v1/admin/dead-letters/${d.id}/discard`, { method: "POST" }), "Discarded."); deadLettersScreen(host); } })) },
  ], letters, "No dead letters: every background task succeeded or is still retrying.")));
}

function flagControl(flag, onSet) {
  const value = flag.value;
  let control;
  if (flag.type === "boolean" || typeof value === "boolean") {
    control = h("input", { type: "checkbox", checked: Boolean(value), "aria-label": flag.key });
    control.addEventListener("change", () => onSet(control.checked));
  } else {
    control = h("input", { value: value === null || value === undefined ? "" : String(value), "aria-label": flag.key, size: 10 });
    control.addEventListener("change", () => onSet(typeof value === "number" ? Number(control.value) : control.value));
  }
  return control;
}

export async function flagsScreen(host) {
  let flags;
  try { const got = await api("/v1/admin/flags"); flags = Array.isArray(got) ? got : got.data; } catch (err) { host.replaceChildren(h("h1", { text: "Feature flags" }), card(null, h("p", { class: "empty", text: `Not available to this key: ${err.message}` }))); return; }
  const set = async (key, value) => { await attempt(() => api(`/v1/admin/flags/${key}`, { method: "PUT", json: { value } }), `${key} set for this organisation.`); flagsScreen(host); };
  const reset = async (key) => { await attempt(() => api(`/v1/admin/flags/${key}`, { method: "DELETE" }), `${key} back to the default.`); flagsScreen(host); };
  host.replaceChildren(h("div", { class: "head" }, h("h1", { text: "Feature flags" })), card("This organisation's flags", table([
    { title: "Flag", cell: (f) => h("span", {}, h("code", { text: f.key }), h("br"), h("small", { class: "hint", text: f.description })) },
    { title: "Value", cell: (f) => flagControl(f, (v) => set(f.key, v)) },
    { title: "Default", cell: (f) => JSON.stringify(f.default) },
    { title: "Override", cell: (f) => (f.org_override === null || f.org_override === undefined ? "–" : h("button", { type: "button", class: "ghost", text: "Reset", onclick: () => reset(f.key) })) },
  ], flags)));
}

export async function phoneNumbersScreen(host) {
  const [numbers, agents] = await Promise.all([all("/v1/phone-numbers"), all("/v1/agents")]);
  const names = Object.fromEntries(agents.map((a) => [a.id, a.name]));
  const agentSelect = (value) => h("select", {}, agents.map((a) => h("option", { value: a.id, text: a.name, selected: a.id === value })));
  const number = h("input", { required: true, placeholder: "+15551234567", pattern: "\\+[1-9][0-9]{6,14}" });
  const provider = h("select", {}, ["twilio", "telnyx"].map((p) => h("option", { value: p, text: p })));
  const agent = agentSelect(agents[0] && agents[0].id);
  const first = h("input", { required: true, autocomplete: "off", placeholder: "Twilio account SID / Telnyx API key" });
  const second = h("input", { required: true, type: "password", autocomplete: "off", placeholder: "Twilio auth token / Telnyx connection id" });
  const form = h("form", { class: "row-form" }, field("Number (E.164)", number), field("Carrier", provider), field("Answered by", agent), field("Credential 1", first), field("Credential 2", second), h("button", { type: "submit", text: "Add number" }));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const credentials = provider.value === "twilio" ? { account_sid: first.value, auth_token: second.value } : { api_key: first.value, connection_id: second.value };
    const created = await attempt(() => api("/v1/phone-numbers", { method: "POST", json: { number: number.value, provider: provider.value, agent_id: agent.value, credentials } }), "Number added.");
    if (created) phoneNumbersScreen(host);
  });
  host.replaceChildren(h("div", { class: "head" }, h("h1", { text: "Phone numbers" })), card("Numbers", h("p", { class: "hint", text: "Point the carrier's voice webhook at this server (docs 10: Take your first phone call). Credentials are stored encrypted and never shown again." }), agents.length ? form : h("p", { class: "empty", text: "Create an agent first." }), table([
    { title: "Number", cell: (n) => n.number },
    { title: "Carrier", cell: (n) => n.provider },
    { title: "Agent", cell: (n) => {
      const select = agentSelect(n.agent_id);
      select.setAttribute("aria-label", `Agent answering ${n.number}`);
      select.addEventListener("change", async () => { await attempt(() => api(`/v1/phone-numbers/${n.id}`, { method: "PATCH", json: { agent_id: select.value } }), `${n.number} now answered by ${names[select.value]}.`); });
      return select;
    } },
    { title: "Added", cell: (n) => when(n.created_at) },
    { title: "", cell: (n) => h("button", { type: "button", class: "ghost", text: "Delete", "aria-label": `Delete ${n.number}`, onclick: async () => { await attempt(() => api(`/v1/phone-numbers/${n.id}`, { method: "DELETE" }), "Deleted."); phoneNumbersScreen(host); } }) },
  ], numbers, "No phone numbers yet.")));
}
