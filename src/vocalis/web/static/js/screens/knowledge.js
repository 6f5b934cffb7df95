// Knowledge bases: create, upload by drag and drop, live per-document status, query tester.
import { api, all } from "../api.js";
import { h, field, card, say, when, attempt, table } from "../dom.js";

const SETTLED = new Set(["ready", "failed"]);
const POLL_MS = 1000;

function statusBadge(doc) {
  const text = doc.status === "failed" && doc.error ? `failed: ${doc.error.code || doc.error.message || ""}` : doc.status;
  return h("span", { class: `badge ${doc.status}`, testid: "doc-status", dataset: { document: doc.name, status: doc.status }, text });
}

function documentsTable(docs) {
  return table([
    { title: "Document", cell: (d) => d.name },
    { title: "Status", cell: statusBadge },
    { title: "Type", cell: (d) => d.type },
    { title: "Chunks", cell: (d) => String(d.chunk_count) },
    { title: "Size", cell: (d) => `${Math.ceil(d.size_bytes / 1024)} KB` },
    { title: "Updated", cell: (d) => when(d.updated_at) },
    { title: "", cell: (d) => h("button", { type: "button", class: "ghost", text: "Delete", "aria-label": `Delete ${d.name}`, dataset: { delete: d.id } }) },
  ], docs, "No documents yet: drop files above.");
}

async function detail(kb, stopSignal) {
  const docsHost = h("div", { "aria-live": "polite" });
  let timer = null;
  const refresh = async () => {
    clearTimeout(timer);
    if (stopSignal.stopped) return;
    let docs;
    try { docs = await all(`/v1/knowledge-bases/${kb.id}/documents`); } catch (err) { say(err.message, "error"); return; }
    if (stopSignal.stopped) return;
    docsHost.replaceChildren(documentsTable(docs));
    for (const button of docsHost.querySelectorAll("button[data-delete]")) {
      button.addEventListener("click", async () => {
        await attempt(() => api(`/v1/knowledge-bases/${kb.id}/documents/${button.dataset.delete}`, { method: "DELETE" }), "Document deleted.");
        refresh();
      });
    }
    // Poll while anything is still being ingested, so status never goes stale on screen.
    if (docs.some((d) => !SETTLED.has(d.status))) timer = setTimeout(refresh, POLL_MS);
  };
  stopSignal.stop = () => { stopSignal.stopped = true; clearTimeout(timer); };

  const upload = async (files) => {
    for (const file of files) {
      const body = new FormData();
      body.append("file", file, file.name);
      const doc = await attempt(() => api(`/v1/knowledge-bases/${kb.id}/documents`, { method: "POST", body }), `Uploaded ${file.name}.`);
      if (doc && doc.deduplicated) say(`${file.name} is already there (same bytes).`);
    }
    refresh();
  };
  const input = h("input", { type: "file", multiple: true, testid: "kb-upload", class: "file-input", "aria-label": "Upload documents" });
  input.addEventListener("change", () => { upload([...input.files]); input.value = ""; });
  const zone = h("label", { class: "dropzone", for: input.id || (input.id = `upload-${kb.id}`) },
    h("strong", { text: "Drop files here" }), " or click to choose (PDF, DOCX, HTML, Markdown, text).", input);
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => { e.preventDefault(); zone.classList.remove("over"); upload([...e.dataTransfer.files]); });

  const query = h("input", { placeholder: "Ask the knowledge base…", required: true });
  const topK = h("input", { type: "number", min: "1", max: "50", value: "5" });
  const alpha = h("input", { type: "number", min: "0", max: "1", step: "0.1", value: "" , placeholder: "default" });
  const results = h("div", { "aria-live": "polite" });
  const tester = h("form", { class: "row-form" }, field("Query", query), field("Top k", topK), field("Alpha", alpha), h("button", { type: "submit", text: "Search" }));
  tester.addEventListener("submit", async (e) => {
    e.preventDefault();
    const json = { query: query.value, top_k: Number(topK.value) || 5 };
    if (alpha.value !== "") json.alpha = Number(alpha.value);
    const out = await attempt(() => api(`/v1/knowledge-bases/${kb.id}/query`, { method: "POST", json }));
    if (!out) return;
    results.replaceChildren(table([
      { title: "Score", cell: (r) => r.score.toFixed(3) },
      { title: "Passage", cell: (r) => r.text },
      { title: "Source", cell: (r) => `${r.document_name}${r.section ? ` § ${r.section}` : ""}${r.page ? ` p.${r.page}` : ""}` },
    ], out.results, "No passage matched."));
  });
  await refresh();
  return [card(`${kb.name}`, h("p", { class: "hint", text: `id ${kb.id}` }), zone, docsHost), card("Query tester", tester, results)];
}

export async function knowledgeScreen(host, [selected]) {
  const kbs = await all("/v1/knowledge-bases");
  const stopSignal = { stopped: false, stop: () => {} };
  const name = h("input", { required: true, placeholder: "Store policies" });
  const create = h("form", { class: "row-form" }, field("New knowledge base", name), h("button", { type: "submit", text: "Create" }));
  create.addEventListener("submit", async (e) => {
    e.preventDefault();
    const kb = await attempt(() => api("/v1/knowledge-bases", { method: "POST", json: { name: name.value } }), "Knowledge base created.");
    if (kb) location.hash = `#/knowledge/${kb.id}`;
  });
  const list = h("ul", { class: "list", "aria-label": "Knowledge bases" }, kbs.map((kb) =>
    h("li", { class: kb.id === selected ? "active" : "" }, h("a", { href: `#/knowledge/${kb.id}`, text: kb.name }), h("small", { text: ` ${kb.document_count} docs` }))));
  const right = h("div", { class: "detail" });
  host.replaceChildren(h("div", { class: "head" }, h("h1", { text: "Knowledge bases" })),
    h("div", { class: "split" }, card(null, create, kbs.length ? list : h("p", { class: "empty", text: "None yet." })), right));
  const kb = kbs.find((k) => k.id === selected) || (kbs.length === 1 ? kbs[0] : null);
  if (kb) right.replaceChildren(...(await detail(kb, stopSignal)));
  else right.replaceChildren(card(null, h("p", { class: "empty", text: "Pick or create a knowledge base to upload documents." })));
  return () => stopSignal.stop();
}
