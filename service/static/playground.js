// The playground: the served models' size and quality (GET /models), live latency and request rate
// per model (parsed from GET /metrics), and a form whose texts every model embeds (POST /embed), shown
// as one similarity matrix per model, side by side, with each model's latency. The form's options are
// /embed's: the vector type (compact types scored as a store would), the dimensions the models
// support, and windowed encoding of long texts (truncate false, with each text's window count).
"use strict";

const $ = (id) => document.getElementById(id);
const keyInput = $("api-key");
keyInput.value = sessionStorage.getItem("embed-api-key") || "";
keyInput.addEventListener("change", () => { sessionStorage.setItem("embed-api-key", keyInput.value); loadModels(); });

function headers() {
  const h = { "Content-Type": "application/json" };
  if (keyInput.value) h.Authorization = "Bearer " + keyInput.value;
  return h;
}

async function api(path, body) {
  const init = body === undefined ? { headers: headers() } : { method: "POST", headers: headers(), body: JSON.stringify(body) };
  const r = await fetch(path, init);
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error((data.error && data.error.message) || `${path}: HTTP ${r.status}`);
  return data;
}

const fmt = (x, digits = 3) => (x === null || x === undefined ? "–" : Number(x).toFixed(digits));
const mb = (bytes) => (bytes / 1e6).toFixed(2) + " MB";
const cell = (text, attrs = {}) => {
  const td = document.createElement("td");
  td.textContent = text;
  for (const [k, v] of Object.entries(attrs)) td.dataset[k] = v;
  return td;
};

let models = {};

// The worst --eval language beside the mean: its fidelity, with every language's in the tooltip.
function worstLanguage(m) {
  const w = m.worst_language && m.languages[m.worst_language];
  if (!w) return cell("–");
  const td = cell(`${m.worst_language} ${fmt(w.fidelity_mean, 4)}`, { worstLanguage: m.worst_language });
  td.title = Object.entries(m.languages).map(([lang, r]) =>
    `${lang}: fidelity ${fmt(r.fidelity_mean, 4)} / p1 ${fmt(r.fidelity_p1, 4)}` +
    (r.int8_fidelity_mean != null ? ` (int8 ${fmt(r.int8_fidelity_mean, 4)})` : "") +
    `, STS ${fmt(r.stsb_spearman, 2)} (baseline ${fmt(r.baseline_stsb_spearman, 2)})`).join("\n");
  return td;
}

async function loadModels() {
  const err = $("models-error");
  try {
    const body = await api("/models");
    err.hidden = true;
    models = body.models;
    const host = body.host || {};
    $("host").textContent = `${host.model || "?"}, ${host.cores || "?"} cores, int8 features: ${(host.features || []).join(" ") || "none"}`;
    const rows = $("models").tBodies[0];
    rows.replaceChildren();
    for (const [name, m] of Object.entries(models)) {
      const base = m.baseline && models[m.baseline];
      const ratio = base ? base.bytes.file / m.bytes.file : null;
      const q = m.quality || {}, h = m.host_fidelity;
      const tr = document.createElement("tr");
      tr.dataset.model = name;
      // what a person compares first (size, ratio, fidelity, STS), the long recipe string last
      const prompts = Object.entries(m.prompts || {}).map(([p, text]) =>
        `${p}${p === m.default_prompt_name ? " (default)" : ""}: "${text}"`).join(", ");
      const quant = cell(m.quantization || "–", { quantization: m.quantization || "" });
      quant.title = m.quantization || "";
      quant.className = "recipe";
      tr.append(cell(name + (name === body.default ? " (default)" : "")), cell(m.bytes ? mb(m.bytes.file) : "–"),
        cell(ratio ? ratio.toFixed(2) + "× smaller" : "–", ratio ? { ratio } : {}),
        cell(q.fidelity_mean != null ? `${fmt(q.fidelity_mean, 4)} / p1 ${fmt(q.fidelity_p1, 4)}` : "–",
          q.fidelity_mean != null ? { fidelityMean: q.fidelity_mean } : {}),
        worstLanguage(m),
        cell(h ? `${fmt(h.mean, 4)} / p1 ${fmt(h.p1, 4)}` : "–", h ? { hostMean: h.mean } : {}),
        cell(fmt(q.stsb_spearman, 2)), compactTypes(m), cell((m.dimensions || []).join(", ") || "full only",
          { dimensions: (m.dimensions || []).join(",") }),
        cell(prompts || "–", { prompts: prompts }),
        cell(m.baseline || "–"), cell(m.version, { version: m.version }),
        cell(m.built_on ? `${(m.built_on.features || []).join(" ") || "no int8 features"}` : "–"), quant);
      rows.append(tr);
    }
    const choice = $("model-choice");
    const checked = new Set([...choice.querySelectorAll("input:checked")].map((i) => i.value));
    choice.replaceChildren();
    for (const name of Object.keys(models)) {
      const label = document.createElement("label");
      const box = Object.assign(document.createElement("input"), { type: "checkbox", value: name });
      box.checked = checked.size === 0 || checked.has(name);
      box.addEventListener("change", updateDimensions);
      label.append(box, " " + name);
      choice.append(label);
    }
    updateDimensions();
  } catch (e) {
    err.textContent = e.message;
    err.hidden = false;
  }
}

// What each compact vector type kept against float (recall@10 over held-out texts, STS-B), from the
// manifest: the cheapest type's recall on screen, every type's in the tooltip.
function compactTypes(m) {
  const types = m.embedding_types;
  if (!types || !Object.keys(types).length) return cell("–");
  const td = cell(Object.entries(types).map(([t, r]) => `${t} ${fmt(r.recall_at_10, 2)}`).join(" · "),
    { embeddingTypes: Object.keys(types).join(",") });
  td.title = "recall@10 against float" + (Object.values(types)[0].stsb_spearman != null ? ", STS-B" : "") + "\n" +
    Object.entries(types).map(([t, r]) => `${t}: ${fmt(r.recall_at_10, 4)}` +
      (r.stsb_spearman != null ? `, ${fmt(r.stsb_spearman, 2)}` : "")).join("\n");
  return td;
}

// The sizes every chosen model supports (besides its full size), kept selected where still offered.
function updateDimensions() {
  const select = $("dimensions");
  const chosen = [...$("model-choice").querySelectorAll("input:checked")].map((i) => i.value).filter((n) => models[n]);
  const sets = chosen.map((n) => new Set(models[n].dimensions || []));
  const common = sets.length ? [...sets[0]].filter((d) => sets.every((s) => s.has(d))).sort((a, b) => b - a) : [];
  const keep = select.value;
  select.replaceChildren(Object.assign(document.createElement("option"), { value: "", textContent: "full" }),
    ...common.map((d) => Object.assign(document.createElement("option"), { value: String(d), textContent: String(d) })));
  select.value = common.includes(Number(keep)) ? keep : "";
}

// --- live latency from the Prometheus text format -------------------------------------------

function parseHistograms(text) {
  // per model: cumulative bucket counts (le → count) and the request count of status-200 requests
  const out = {};
  const re = /^embedding_request_duration_seconds_(bucket|count)\{([^}]*)\} ([0-9.eE+-]+)$/;
  for (const line of text.split("\n")) {
    const m = re.exec(line);
    if (!m) continue;
    const labels = Object.fromEntries([...m[2].matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    // requests that named no model (the page, /models) or one not served carry no model's latency
    if (labels.status !== "200" || labels.model === "none" || labels.model === "unknown") continue;
    const h = (out[labels.model] ||= { buckets: {}, count: 0 });
    if (m[1] === "count") h.count += Number(m[3]);
    else h.buckets[labels.le] = (h.buckets[labels.le] || 0) + Number(m[3]);
  }
  return out;
}

function quantile(q, buckets) {
  // Prometheus' histogram_quantile: linear interpolation inside the bucket that holds rank q·total
  const bounds = Object.keys(buckets).map((le) => [le === "+Inf" ? Infinity : Number(le), buckets[le]])
    .sort((a, b) => a[0] - b[0]);
  const total = bounds.length ? bounds[bounds.length - 1][1] : 0;
  if (total <= 0) return null;
  const rank = q * total;
  let prevBound = 0, prevCount = 0;
  for (const [bound, count] of bounds) {
    if (count >= rank) {
      if (bound === Infinity) return prevBound;
      return prevBound + (bound - prevBound) * (count > prevCount ? (rank - prevCount) / (count - prevCount) : 0);
    }
    prevBound = bound; prevCount = count;
  }
  return prevBound;
}

let previous = null;

async function loadLive() {
  let text;
  try {
    text = await (await fetch("/metrics")).text();
  } catch (e) { return; }
  const now = { at: performance.now(), hist: parseHistograms(text) };
  const rows = $("live").tBodies[0];
  rows.replaceChildren();
  for (const [model, h] of Object.entries(now.hist)) {
    // over the last interval when there was traffic in it, else since the start
    const before = previous && previous.hist[model];
    const delta = { buckets: {}, count: h.count - (before ? before.count : 0) };
    for (const le of Object.keys(h.buckets)) delta.buckets[le] = h.buckets[le] - (before ? before.buckets[le] || 0 : 0);
    const window = before && delta.count > 0 ? delta : h;
    const seconds = previous ? (now.at - previous.at) / 1000 : null;
    const rate = seconds ? delta.count / seconds : null;
    const p50 = quantile(0.5, window.buckets), p99 = quantile(0.99, window.buckets);
    const tr = document.createElement("tr");
    tr.dataset.model = model;
    tr.append(cell(model), cell(rate === null ? "–" : rate.toFixed(1)),
      cell(p50 === null ? "–" : (p50 * 1000).toFixed(2) + " ms", p50 === null ? {} : { p50 }),
      cell(p99 === null ? "–" : (p99 * 1000).toFixed(2) + " ms", p99 === null ? {} : { p99 }),
      cell(String(h.count)));
    rows.append(tr);
  }
  previous = now;
}

// --- the comparison ----------------------------------------------------------------------------

function cosineMatrix(vectors) {
  const norm = (v) => Math.sqrt(v.reduce((s, x) => s + x * x, 0)) || 1;
  const unit = vectors.map((v) => { const n = norm(v); return v.map((x) => x / n); });
  return unit.map((a) => unit.map((b) => a.reduce((s, x, k) => s + x * b[k], 0)));
}

// Packed signs (binary: int8 bytes, ubinary: uint8) as a store scores them: the share of agreeing bits,
// from -1 (every bit differs) to 1 (the same signs), i.e. common/output_types.py's count over the bits.
function bitMatrix(vectors) {
  const bits = vectors.map((v) => v.flatMap((b) => [...Array(8)].map((_, k) => ((b & 0xff) >> (7 - k)) & 1)));
  return bits.map((a) => bits.map((b) => a.reduce((s, x, k) => s + (x === b[k] ? 1 : -1), 0) / a.length));
}

const similarityMatrix = (vectors, type) => (type === "binary" || type === "ubinary" ? bitMatrix(vectors) : cosineMatrix(vectors));

function matrixCard(name, texts, matrix, ms, inference, reference, shape) {
  const card = document.createElement("div");
  card.className = "card";
  card.id = "result-" + name;
  card.dataset.model = name;
  const title = Object.assign(document.createElement("h3"), { textContent: name });
  const meta = document.createElement("p");
  meta.className = "meta";
  const latency = Object.assign(document.createElement("span"), { className: "latency", textContent: `${ms.toFixed(1)} ms` });
  latency.dataset.ms = ms;
  meta.append("round trip ", latency, `, inference ${inference} ms`);
  // what was asked for and what came back: the vector type and size, and each text's window count
  const vector = Object.assign(document.createElement("span"), { className: "vector",
    textContent: `${shape.type}, ${shape.width} ${shape.packed ? "bytes (packed signs)" : "numbers"} a vector` });
  vector.dataset.type = shape.type;
  vector.dataset.width = shape.width;
  meta.append(" · ", vector);
  if (shape.windows) {
    const counts = Object.assign(document.createElement("span"), { className: "windows",
      textContent: shape.windows.join(", ") });
    counts.dataset.counts = shape.windows.join(",");
    meta.append(" · windows per text: ", counts);
  }
  if (reference) {
    let worst = 0;
    matrix.forEach((row, i) => row.forEach((x, j) => { worst = Math.max(worst, Math.abs(x - reference.matrix[i][j])); }));
    const diff = Object.assign(document.createElement("span"), { className: "diff", textContent: worst.toFixed(4) });
    diff.dataset.value = worst;
    meta.append(` · largest change vs ${reference.name}: `, diff);
  }
  const table = document.createElement("table");
  table.className = "matrix";
  const head = table.createTHead().insertRow();
  head.append(Object.assign(document.createElement("th"), { textContent: "" }));
  texts.forEach((_, j) => head.append(Object.assign(document.createElement("th"), { textContent: `#${j + 1}` })));
  const body = table.createTBody();
  matrix.forEach((row, i) => {
    const tr = body.insertRow();
    const label = Object.assign(document.createElement("th"), { textContent: `#${i + 1} ${texts[i].slice(0, 40)}` });
    label.title = texts[i];
    tr.append(label);
    row.forEach((x, j) => tr.append(cell(x.toFixed(3), { i, j, value: x })));
  });
  card.append(title, meta, table);
  return card;
}

$("compare").addEventListener("submit", async (event) => {
  event.preventDefault();
  const err = $("compare-error");
  err.hidden = true;
  const texts = $("texts").value.split("\n").map((t) => t.trim()).filter(Boolean);
  const chosen = [...$("model-choice").querySelectorAll("input:checked")].map((i) => i.value);
  if (texts.length < 2) { err.textContent = "enter at least two texts, one per line"; err.hidden = false; return; }
  if (!chosen.length) { err.textContent = "choose at least one model"; err.hidden = false; return; }
  const results = $("results");
  results.replaceChildren();
  results.dataset.state = "running";
  const done = {};
  const type = $("embedding-type").value, dims = $("dimensions").value, windowed = $("windows").checked;
  const request = { inputs: texts, embedding_type: type };
  if (dims) request.dimensions = Number(dims);
  if (windowed) Object.assign(request, { truncate: false, return_windows: true });
  try {
    for (const name of chosen) {  // one after another, so each latency is the model's alone
      const t0 = performance.now();
      const r = await fetch("/embed", { method: "POST", headers: headers(), body: JSON.stringify({ ...request, model: name }) });
      const ms = performance.now() - t0;
      const data = await r.json();
      if (!r.ok) throw new Error(`${name}: ${data.error ? data.error.message : "HTTP " + r.status}`);
      const shape = { type, width: data.embeddings[0].length, packed: type.endsWith("binary"),
        windows: data.windows ? data.windows.map((w) => w.length) : null };
      done[name] = { name, matrix: similarityMatrix(data.embeddings, type), ms, shape,
        inference: r.headers.get("x-inference-time") || "?" };
    }
    for (const name of chosen) {
      const base = models[name] && models[name].baseline;
      const d = done[name];
      results.append(matrixCard(name, texts, d.matrix, d.ms, d.inference, base && done[base] ? done[base] : null, d.shape));
    }
    results.dataset.state = "done";
  } catch (e) {
    err.textContent = e.message;
    err.hidden = false;
    results.dataset.state = "failed";
  }
});

loadModels();
loadLive();
setInterval(loadLive, 2000);
setInterval(loadModels, 15000);
