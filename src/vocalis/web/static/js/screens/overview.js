// Overview: conversations per day (this organisation), and the platform's own metrics from
// GET /metrics (Prometheus text): turn latency p50/p95, errors, ingestion. Charts are small
// SVG bar charts drawn here (a dozen values each: a chart library would outweigh them).
import { api, all } from "../api.js";
import { h, card, ms } from "../dom.js";

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  for (const c of children) el.append(c);
  return el;
}

/** A bar chart of [label, value] pairs. */
export function barChart(pairs, title, format = String) {
  const width = 360, height = 150, pad = 22;
  const max = Math.max(1, ...pairs.map(([, v]) => v));
  const bw = (width - pad) / Math.max(1, pairs.length);
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": `${title}: ${pairs.map(([l, v]) => `${l} ${format(v)}`).join(", ")}`, class: "chart" });
  pairs.forEach(([label, value], i) => {
    const bh = ((height - 2 * pad) * value) / max;
    const x = pad + i * bw + 2;
    chart.append(svg("rect", { x, y: height - pad - bh, width: Math.max(2, bw - 4), height: bh, class: "bar" }, svg("title", {}, document.createTextNode(`${label}: ${format(value)}`))));
    if (pairs.length <= 16) chart.append(svg("text", { x: x + (bw - 4) / 2, y: height - 6, "text-anchor": "middle", class: "axis" }, document.createTextNode(label)));
    if (value) chart.append(svg("text", { x: x + (bw - 4) / 2, y: height - pad - bh - 3, "text-anchor": "middle", class: "value" }, document.createTextNode(format(value))));
  });
  return h("figure", { class: "chart-box" }, h("figcaption", { text: title }), chart);
}

/** Prometheus text exposition -> [{name, labels, value}]. */
export function parseMetrics(text) {
  const out = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = line.match(/^([a-zA-Z_:][\w:]*)(\{(.*)\})?\s+(\S+)/);
    if (!m) continue;
    const labels = {};
    for (const pair of (m[3] || "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[pair[1]] = pair[2];
    out.push({ name: m[1], labels, value: Number(m[4]) });
  }
  return out;
}

/** A quantile of a histogram (all label sets summed), by linear interpolation in buckets. */
export function quantile(samples, name, q) {
  const buckets = new Map();
  for (const s of samples) if (s.name === `${name}_bucket`) buckets.set(s.labels.le, (buckets.get(s.labels.le) || 0) + s.value);
  const sorted = [...buckets.entries()].map(([le, c]) => [le === "+Inf" ? Infinity : Number(le), c]).sort((a, b) => a[0] - b[0]);
  const total = sorted.length ? sorted[sorted.length - 1][1] : 0;
  if (!total) return null;
  const rank = q * total;
  let prevLe = 0, prevCount = 0;
  for (const [le, count] of sorted) {
    if (count >= rank) {
      if (le === Infinity) return prevLe;
      return prevLe + ((le - prevLe) * (rank - prevCount)) / Math.max(1, count - prevCount);
    }
    prevLe = le; prevCount = count;
  }
  return prevLe;
}

const sum = (samples, name, pred = () => true) => samples.filter((s) => s.name === name && pred(s.labels)).reduce((a, s) => a + s.value, 0);

export async function overviewScreen(host) {
  const [org, agents, kbs, conversations, metricsText] = await Promise.all([
    api("/v1/org"), all("/v1/agents"), all("/v1/knowledge-bases").catch(() => []), all("/v1/conversations", 500).catch(() => []),
    fetch("/metrics").then((r) => (r.ok ? r.text() : "")).catch(() => ""),
  ]);
  const days = [];
  for (let i = 13; i >= 0; i--) { const d = new Date(Date.now() - i * 86400000); days.push(d.toISOString().slice(0, 10)); }
  const perDay = Object.fromEntries(days.map((d) => [d, 0]));
  for (const c of conversations) { const d = c.created_at.slice(0, 10); if (d in perDay) perDay[d] += 1; }
  const samples = parseMetrics(metricsText);
  const latency = [
    ["Voice turn", "vocalis_voice_turn_latency_seconds"],
    ["LLM first token", "vocalis_llm_time_to_first_token_seconds"],
    ["Retrieval", "vocalis_retrieval_duration_seconds"],
    ["HTTP request", "vocalis_http_request_duration_seconds"],
  ];
  const latencyRows = latency.map(([title, name]) => [title, quantile(samples, name, 0.5), quantile(samples, name, 0.95)]);
  const statusOf = (l) => String(l.status || l.status_code || l.code || "");
  const requests = sum(samples, "vocalis_http_requests_total");
  const clientErrors = sum(samples, "vocalis_http_requests_total", (l) => statusOf(l).startsWith("4"));
  const serverErrors = sum(samples, "vocalis_http_requests_total", (l) => statusOf(l).startsWith("5"));
  const docsByOutcome = {};
  for (const s of samples.filter((x) => x.name === "vocalis_documents_total")) {
    const key = s.labels.status || s.labels.outcome || "all";
    docsByOutcome[key] = (docsByOutcome[key] || 0) + s.value;
  }
  const tiles = [["Agents", agents.length], ["Knowledge bases", kbs.length], ["Conversations", conversations.length], ["Active now", conversations.filter((c) => c.status === "active").length]];
  host.replaceChildren(
    h("div", { class: "head" }, h("h1", { text: `Overview · ${org.name}` })),
    h("div", { class: "tiles" }, tiles.map(([t, v]) => h("div", { class: "tile" }, h("strong", { text: String(v) }), h("span", { text: t })))),
    h("div", { class: "columns" },
      card("Conversations per day", barChart(days.map((d) => [d.slice(8), perDay[d]]), "Conversations started, last 14 days")),
      card("Latency (this server, since start)", barChart(latencyRows.flatMap(([t, p50, p95]) => (p50 === null ? [] : [[`${t} p50`, p50 * 1000], [`${t} p95`, p95 * 1000]])).map(([l, v]) => [l.replace("LLM first token", "TTFT").replace("HTTP request", "HTTP").replace("Voice turn", "Turn").replace("Retrieval", "Retr."), v]), "p50 / p95 per stage", ms),
        h("table", { class: "small-table" }, h("thead", {}, h("tr", {}, h("th", { text: "Stage" }), h("th", { text: "p50" }), h("th", { text: "p95" }))),
          h("tbody", {}, latencyRows.map(([t, p50, p95]) => h("tr", {}, h("td", { text: t }), h("td", { text: p50 === null ? "–" : ms(p50 * 1000) }), h("td", { text: p95 === null ? "–" : ms(p95 * 1000) })))))),
      card("Errors", barChart([["2xx/3xx", requests - clientErrors - serverErrors], ["4xx", clientErrors], ["5xx", serverErrors]], "HTTP responses since start")),
      card("Ingestion", Object.keys(docsByOutcome).length ? barChart(Object.entries(docsByOutcome), "Documents processed, by outcome") : h("p", { class: "empty", text: "No document ingested since this server started." }))));
}
