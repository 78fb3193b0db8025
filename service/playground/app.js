// cellstate playground: plain JavaScript, no dependencies, no build step. It talks to the service only through
// its public API (the same requests as in /docs), with paths relative to this page so that it also works under a
// path prefix. Nothing is fetched from another host.
"use strict";

(() => {
  const KEY_STORAGE = "cellstate.apiKey"; // sessionStorage only: the key leaves with the tab
  const KEY_HEADER = "X-API-Key"; // service/security.py also accepts `Authorization: Bearer <key>`
  const SVG_NS = "http://www.w3.org/2000/svg";
  const SAMPLE_SERIES = [ // monthly airline passengers, 1949-1954 (thousands)
    112, 118, 132, 129, 121, 135, 148, 148, 136, 119, 104, 118, 115, 126, 141, 135, 125, 149, 170, 170, 158, 133,
    114, 140, 145, 150, 178, 163, 172, 178, 199, 199, 184, 162, 146, 166, 171, 180, 193, 181, 183, 218, 230, 242,
    209, 191, 172, 194, 196, 196, 236, 235, 229, 243, 264, 272, 237, 211, 180, 201, 204, 188, 235, 227, 234, 264,
    302, 293, 259, 229, 203, 229,
  ];

  const $ = (id) => document.getElementById(id);
  const state = {
    spec: null, // openapi.json
    models: [], // GET /models
    streamPath: "generate/stream", // switched to `generate` + {"stream": true} if the spec has no /generate/stream
    gen: { controller: null, sessionId: null, tokens: 0 },
    inspect: null, // last /inspect answer and the request it answered
    forecast: null, // last /forecast answer and its history (redrawn when the window changes size)
  };

  // ---- API access -----------------------------------------------------------------------------------------------
  class ApiError extends Error {
    constructor(status, body, fallback) {
      super((body && typeof body.message === "string" && body.message) || fallback);
      this.status = status;
      this.code = body && body.error;
      this.requestId = body && body.request_id;
    }
  }

  function apiKey() {
    try { return sessionStorage.getItem(KEY_STORAGE) || ""; } catch { return ""; }
  }

  function headers(json) {
    const h = { Accept: "application/json" };
    if (json) h["Content-Type"] = "application/json";
    const key = apiKey();
    if (key) h[KEY_HEADER] = key;
    return h;
  }

  async function errorFrom(response) {
    let body = null;
    try { body = await response.json(); } catch { /* not JSON: a proxy's page, say */ }
    return new ApiError(response.status, body, `HTTP ${response.status} ${response.statusText}`.trim());
  }

  async function send(method, path, body, signal) {
    let response;
    try {
      response = await fetch(path, {
        method, signal, headers: headers(body !== undefined),
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (err) {
      if (err.name === "AbortError") throw err;
      throw new ApiError(0, null, `could not reach the service (${err.message})`);
    }
    if (!response.ok) throw await errorFrom(response);
    return response;
  }

  async function api(method, path, body) {
    const response = await send(method, path, body);
    return response.status === 204 ? null : response.json();
  }

  function showError(el, err) {
    el.replaceChildren();
    if (!err) { el.hidden = true; return; }
    const msg = document.createElement("span");
    msg.className = "message";
    msg.textContent = err.message;
    el.append(msg);
    if (err.code || err.status) {
      const code = document.createElement("span");
      code.className = "code";
      const parts = [err.status ? `HTTP ${err.status}` : "", err.code || "", err.requestId ? `request ${err.requestId}` : ""];
      code.textContent = ` (${parts.filter(Boolean).join(" · ")})`;
      el.append(code);
    }
    el.hidden = false;
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else node.setAttribute(k, v === true ? "" : v);
    }
    node.append(...children.filter((c) => c !== null && c !== undefined));
    return node;
  }

  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) if (v !== undefined && v !== null) node.setAttribute(k, v);
    node.append(...children);
    return node;
  }

  function fmt(x) {
    if (typeof x !== "number" || !Number.isFinite(x)) return String(x);
    if (Number.isInteger(x)) return x.toLocaleString("en-US");
    if (x !== 0 && Math.abs(x) < 0.001) return x.toExponential(1);
    return String(Number(x.toPrecision(4)));
  }

  function numberOrNull(input) {
    const raw = input.value.trim();
    if (raw === "") return null;
    const n = Number(raw);
    return Number.isFinite(n) ? n : raw; // a non-number goes to the API as is: its 422 names the field
  }

  // ---- limits from the spec -------------------------------------------------------------------------------------
  function numericSchema(schema) {
    if (!schema) return null;
    if (schema.anyOf) return schema.anyOf.find((s) => s.type === "integer" || s.type === "number") || null;
    return schema;
  }

  function applyLimit(inputId, schema) {
    const s = numericSchema(schema);
    const input = $(inputId);
    if (!s || !input) return;
    if (s.minimum !== undefined) input.min = s.minimum;
    if (s.maximum !== undefined) input.max = s.maximum;
    if (s.type === "integer") input.step = "1";
    const lo = s.minimum !== undefined ? fmt(s.minimum) : s.exclusiveMinimum !== undefined ? `>${fmt(s.exclusiveMinimum)}` : "";
    const hi = s.maximum !== undefined ? fmt(s.maximum) : "";
    const label = document.querySelector(`[data-limit-for="${inputId}"]`);
    if (label && (lo || hi)) label.textContent = hi ? `(${lo || "…"}–${hi})` : `(at least ${lo})`;
  }

  async function loadSpec() {
    try {
      state.spec = await api("GET", "openapi.json");
    } catch {
      return; // the page still works with the defaults in the HTML
    }
    const schemas = state.spec.components?.schemas || {};
    const gen = schemas.GenerateRequest?.properties || {};
    applyLimit("gen-max", gen.max_new_tokens);
    applyLimit("gen-temp", gen.temperature);
    applyLimit("gen-topk", gen.top_k);
    applyLimit("gen-topp", gen.top_p);
    applyLimit("fc-horizon", schemas.ForecastRequest?.properties?.horizon);
    applyLimit("insp-k", schemas.InspectRequest?.properties?.top_k_neurons);
    const nbParams = state.spec.paths?.["/embeddings/neighbors"]?.get?.parameters || [];
    applyLimit("nb-k", nbParams.find((p) => p.name === "k")?.schema);
    const paths = state.spec.paths || {};
    if (!paths["/generate/stream"] && paths["/generate"]) state.streamPath = "generate";
  }

  // ---- Models ---------------------------------------------------------------------------------------------------
  function flattenMetrics(obj, prefix, out, depth) {
    for (const [k, v] of Object.entries(obj || {})) {
      const path = prefix ? `${prefix}.${k}` : k;
      if (typeof v === "number") out.push([path, v]);
      else if (v && typeof v === "object" && !Array.isArray(v) && depth < 3) flattenMetrics(v, path, out, depth + 1);
    }
    return out;
  }

  function precisionOf(model) {
    const others = Object.keys(model.variants || {}).filter((v) => v !== model.precision);
    if (model.precision) return `${model.precision} served` + (others.length ? ` (also available: ${others.join(", ")})` : "");
    if (model.config && model.config.precision) return String(model.config.precision);
    const dtypes = new Set();
    for (const graph of Object.values(model.graphs || {}))
      for (const t of graph.outputs || []) if (/float|int8|bf16/.test(t.dtype)) dtypes.add(t.dtype);
    return dtypes.size ? `${[...dtypes].join(", ")} (graph outputs)` : "—";
  }

  // The model's figures, side by side with each baseline's figure of the same name (the manifests measure them on
  // the same data); figures only a baseline has (its own tuning, say) are left out.
  function metricsTable(model) {
    const mine = flattenMetrics(model.metrics?.model, "", [], 0);
    if (!mine.length) return el("p", { class: "hint", text: "no quality figures in the manifest" });
    const baselines = Object.entries(model.metrics?.baselines || {}).map(([name, figures]) =>
      [name, new Map(flattenMetrics(figures, "", [], 1))]);
    const cols = [el("th", { scope: "col", text: "figure" }), el("th", { scope: "col", class: "num", text: "model" }),
      ...baselines.map(([name]) => el("th", { scope: "col", class: "num", text: name }))];
    const rows = mine.map(([k, v]) => el("tr", {}, el("th", { scope: "row", text: k }), el("td", { class: "num", text: fmt(v) }),
      ...baselines.map(([, figures]) => el("td", { class: "num", text: figures.has(k) ? fmt(figures.get(k)) : "—" }))));
    return el("table", { class: "metrics" },
      el("caption", { class: "hint", text: baselines.length ? "Quality, against the baselines (from the manifest)" : "Quality (from the manifest)" }),
      el("thead", {}, el("tr", {}, ...cols)), el("tbody", {}, ...rows));
  }

  function modelCard(model, versions) {
    const versionText = versions
      ? versions.versions.map((v) => `v${v.version}${v.served ? " (served)" : v.loaded ? " (loaded)" : ""}${v.problem ? ` — ${v.problem}` : ""}`).join(", ")
      : `v${model.version}`;
    const dl = el("dl", {},
      el("dt", { text: "version" }), el("dd", { text: String(model.version) }),
      el("dt", { text: "on disk" }), el("dd", { text: versionText }),
      el("dt", { text: "precision" }), el("dd", { text: precisionOf(model) }),
      el("dt", { text: "created" }), el("dd", { text: model.created_at || "—" }));
    if (model.limits && Object.keys(model.limits).length) {
      const text = Object.entries(model.limits).map(([k, v]) => `${k} ${Array.isArray(v) ? v.join("/") : fmt(v)}`).join(", ");
      dl.append(el("dt", { text: "limits" }), el("dd", { class: "limits", text }));
    }
    if (model.stateful !== undefined) dl.append(el("dt", { text: "sessions" }), el("dd", { text: model.stateful ? "yes" : "no" }));
    if (model.tokenizer) dl.append(el("dt", { text: "vocabulary" }), el("dd", { text: `${fmt(model.tokenizer.vocab_size)} ${model.tokenizer.kind || ""} tokens` }));
    return el("article", { class: "card", "data-family": model.family },
      el("div", { class: "family", text: model.family }),
      el("h3", { text: model.name }),
      el("p", { class: "desc", text: model.description || "" }),
      dl, metricsTable(model));
  }

  async function loadModels() {
    const list = $("models-list");
    showError($("models-error"), null);
    try {
      state.models = await api("GET", "models");
    } catch (err) {
      state.models = [];
      list.replaceChildren();
      showError($("models-error"), err);
      return;
    }
    const versions = await Promise.all(state.models.map((m) => api("GET", `models/${encodeURIComponent(m.family)}`).catch(() => null)));
    list.replaceChildren(...state.models.map((m, i) => modelCard(m, versions[i])));
    if (!state.models.length) list.append(el("p", { text: "No model is served (see GET /ready)." }));
    applyModelLimits();
  }

  // The limits GET /models reports for the served versions (the same values its 422s enforce).
  function applyModelLimits() {
    const limitsOf = (family) => state.models.find((m) => m.family === family)?.limits || {};
    const upTo = (max) => (Number.isInteger(max) ? { type: "integer", minimum: 1, maximum: max } : null);
    const w = limitsOf("wordlm");
    applyLimit("gen-max", upTo(w.max_new_tokens));
    applyLimit("insp-k", upTo(w.max_neurons));
    applyLimit("nb-k", upTo(w.max_neighbors));
    const wordlm = state.models.find((m) => m.family === "wordlm");
    const h0 = wordlm?.graphs?.step?.inputs?.find((t) => t.name === "h0");
    const layers = Number.isInteger(w.layers) ? w.layers : h0 && Number.isInteger(h0.dims?.[0]) ? h0.dims[0] : null;
    if (layers) {
      const select = $("insp-layer");
      const current = select.value;
      select.replaceChildren(...Array.from({ length: layers }, (_, i) => el("option", { value: String(i), text: String(i) })));
      if (Number(current) < layers) select.value = current;
    }
    const f = limitsOf("forecast");
    applyLimit("fc-horizon", upTo(f.max_horizon));
    if (Number.isInteger(f.max_season_length)) $("fc-season").max = f.max_season_length;
    if (Number.isInteger(f.min_history)) $("fc-history-limit").textContent = `(at least ${f.min_history} numbers, oldest first; or drop a CSV file here)`;
  }

  // ---- Generate (streaming) -------------------------------------------------------------------------------------
  // Server-Sent Events from a fetch body: blocks separated by a blank line, `event:` and `data:` fields.
  async function* sseEvents(response) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let match;
        while ((match = buffer.match(/\r?\n\r?\n/))) {
          const block = buffer.slice(0, match.index);
          buffer = buffer.slice(match.index + match[0].length);
          let event = "message";
          const data = [];
          for (const line of block.split(/\r?\n/)) {
            if (!line || line.startsWith(":")) continue;
            const colon = line.indexOf(":");
            const field = colon < 0 ? line : line.slice(0, colon);
            const val = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
            if (field === "event") event = val;
            else if (field === "data") data.push(val);
          }
          if (data.length) yield { event, data: JSON.parse(data.join("\n")) };
        }
      }
    } finally {
      reader.releaseLock();
    }
  }

  function genStatus(text) { $("gen-status").textContent = text; }

  function generateBody() {
    const body = {};
    const max = numberOrNull($("gen-max")); if (max !== null) body.max_new_tokens = max;
    const temp = numberOrNull($("gen-temp")); if (temp !== null) body.temperature = temp;
    const topk = numberOrNull($("gen-topk")); if (topk !== null) body.top_k = topk;
    const topp = numberOrNull($("gen-topp")); if (topp !== null) body.top_p = topp;
    const stop = $("gen-stop").value.split(",").map((s) => s.trim()).filter(Boolean);
    if (stop.length) body.stop = stop;
    body.ignore_eos = $("gen-eos").checked;
    return body;
  }

  async function forgetSession() {
    const id = state.gen.sessionId;
    state.gen.sessionId = null;
    if (id) await api("DELETE", `sessions/${encodeURIComponent(id)}`).catch(() => {});
  }

  async function runGenerate(event) {
    event.preventDefault();
    if (state.gen.controller) return;
    const output = $("gen-output");
    const useSession = $("gen-session").checked;
    const prompt = $("gen-prompt").value;
    const body = generateBody();
    const seed = numberOrNull($("gen-seed"));
    showError($("gen-error"), null);
    const controller = new AbortController();
    state.gen.controller = controller;
    state.gen.tokens = 0;
    $("gen-run").disabled = true;
    $("gen-stop-btn").disabled = false;
    try {
      if (useSession) {
        if (!state.gen.sessionId) {
          const created = await api("POST", "sessions", seed === null ? { model: "wordlm" } : { model: "wordlm", seed });
          state.gen.sessionId = created.session_id;
          output.replaceChildren();
        }
        body.session_id = state.gen.sessionId;
        if (prompt.trim()) body.prompt = prompt;
      } else {
        body.prompt = prompt;
        if (seed !== null) body.seed = seed;
        output.replaceChildren();
      }
      if (state.streamPath === "generate") body.stream = true;
      genStatus("waiting for the first word…");
      const response = await send("POST", state.streamPath, body, controller.signal);
      if (output.childNodes.length) output.append(el("span", { class: "sep", "aria-hidden": "true" }));
      if (body.prompt) output.append(el("span", { class: "prompt", text: body.prompt }));
      for await (const { event: kind, data } of sseEvents(response)) {
        if (kind === "token") {
          output.append(el("span", { class: "tok", text: data.text }));
          state.gen.tokens += 1;
          genStatus(`streaming… ${state.gen.tokens} tokens`);
        } else if (kind === "done") {
          const u = data.usage || {};
          const model = data.model ? `${data.model.name} v${data.model.version}` : "";
          const session = data.session_id ? ` · session ${data.session_id.slice(0, 8)}… (the next run continues)` : "";
          genStatus(`done: ${data.finish_reason} · ${u.prompt_tokens ?? 0} prompt tokens, ${u.completion_tokens ?? state.gen.tokens} new${u.unknown_tokens ? `, ${u.unknown_tokens} unknown` : ""} · ${model}${session}`);
          output.dataset.finish = data.finish_reason;
          if (useSession) $("gen-prompt").value = "";
        } else if (kind === "error") {
          showError($("gen-error"), new ApiError(200, data, "the stream ended with an error"));
          genStatus(`stopped by an error after ${state.gen.tokens} tokens`);
        }
      }
    } catch (err) {
      if (err.name === "AbortError") {
        output.dataset.finish = "stopped";
        genStatus(`stopped after ${state.gen.tokens} tokens: the connection was closed, so the service stopped generating` +
          (useSession ? " (the session keeps the state it had before this run)" : ""));
      } else {
        showError($("gen-error"), err);
        genStatus("");
        if (useSession && err.status === 404) state.gen.sessionId = null; // expired or unknown: the next run starts anew
      }
    } finally {
      state.gen.controller = null;
      $("gen-run").disabled = false;
      $("gen-stop-btn").disabled = true;
    }
  }

  function stopGenerate() {
    if (state.gen.controller) state.gen.controller.abort();
  }

  async function clearGenerate() {
    stopGenerate();
    await forgetSession();
    $("gen-output").replaceChildren();
    delete $("gen-output").dataset.finish;
    genStatus("");
    showError($("gen-error"), null);
  }

  // ---- Forecast -------------------------------------------------------------------------------------------------
  function parseSeries(text) {
    const values = [];
    for (const item of text.split(/[\s,;]+/).filter(Boolean)) {
      const n = Number(item);
      if (!Number.isFinite(n)) throw new Error(`history: "${item}" is not a number`);
      values.push(n);
    }
    return values;
  }

  // A CSV's last numeric field on every row; header and blank rows are skipped.
  function csvValues(text) {
    const values = [];
    for (const line of text.split(/\r?\n/)) {
      const fields = line.split(/[,;\t]/).map((f) => f.trim().replace(/^"|"$/g, ""));
      for (let i = fields.length - 1; i >= 0; i -= 1) {
        if (fields[i] !== "" && Number.isFinite(Number(fields[i]))) { values.push(Number(fields[i])); break; }
      }
    }
    return values;
  }

  async function loadCsv(file) {
    const values = csvValues(await file.text());
    $("fc-series").value = values.join(", ");
    $("fc-status").textContent = `${values.length} values read from ${file.name}`;
  }

  function niceTicks(lo, hi, count) {
    const span = hi - lo || Math.abs(hi) || 1;
    const step0 = span / count;
    const mag = 10 ** Math.floor(Math.log10(step0));
    const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => span / s <= count) || 10 * mag;
    const ticks = [];
    for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) ticks.push(Number(t.toPrecision(12)));
    return ticks;
  }

  // Drawn at the container's width, so that its text keeps its size on a phone.
  function chartWidth(container) {
    return Math.round(Math.max(300, Math.min(960, container.clientWidth || 720)));
  }

  function lineChart({ width = 720, height = 300, n, yValues, title, desc }) {
    const pad = { l: 52, r: 14, t: 12, b: 30 };
    let lo = Math.min(...yValues);
    let hi = Math.max(...yValues);
    if (lo === hi) { lo -= 1; hi += 1; }
    const margin = (hi - lo) * 0.05;
    lo -= margin; hi += margin;
    const x = (i) => pad.l + (n <= 1 ? 0 : (i * (width - pad.l - pad.r)) / (n - 1));
    const y = (v) => pad.t + ((hi - v) * (height - pad.t - pad.b)) / (hi - lo);
    const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": title, preserveAspectRatio: "xMidYMid meet" });
    root.append(svg("title", {}, title), svg("desc", {}, desc || title));
    for (const t of niceTicks(lo, hi, 5)) {
      root.append(svg("line", { class: "axis", x1: pad.l, x2: width - pad.r, y1: y(t), y2: y(t) }),
        svg("text", { x: pad.l - 6, y: y(t) + 4, "text-anchor": "end" }, fmt(t)));
    }
    return { root, x, y, pad, width, height };
  }

  const pts = (xs) => xs.map(([a, b]) => `${a.toFixed(1)},${b.toFixed(1)}`).join(" ");

  function forecastChart(history, median, lower, upper) {
    const n = history.length + median.length;
    const all = [...history, ...median, ...(lower || []), ...(upper || [])];
    const width = chartWidth($("fc-chart"));
    const c = lineChart({ width, height: Math.round(Math.max(220, Math.min(320, width * 0.42))), n, yValues: all, title: `Forecast: ${history.length} observations, ${median.length} forecast steps`,
      desc: "History as a dark line, the median forecast as a blue line with points, the 80% interval as a shaded band." });
    const h = history.length;
    for (const t of niceTicks(0, n - 1, c.width < 500 ? 5 : 8).filter((t) => Number.isInteger(t))) {
      c.root.append(svg("text", { x: c.x(t), y: c.height - 10, "text-anchor": "middle" }, String(t + 1)));
    }
    c.root.append(svg("line", { class: "axis", x1: c.x(h - 0.5), x2: c.x(h - 0.5), y1: c.pad.t, y2: c.height - c.pad.b }));
    if (lower && upper) {
      const top = upper.map((v, i) => [c.x(h + i), c.y(v)]);
      const bottom = lower.map((v, i) => [c.x(h + i), c.y(v)]).reverse();
      c.root.append(svg("polygon", { class: "band", points: pts([...top, ...bottom]), "data-points": String(upper.length) }));
    }
    c.root.append(svg("polyline", { class: "history", points: pts(history.map((v, i) => [c.x(i), c.y(v)])), "data-points": String(h) }));
    c.root.append(svg("polyline", { class: "median", points: pts(median.map((v, i) => [c.x(h + i), c.y(v)])), "data-points": String(median.length) }));
    c.root.append(svg("polyline", { class: "median", "stroke-dasharray": "3 3",
      points: pts([[c.x(h - 1), c.y(history[h - 1])], [c.x(h), c.y(median[0])]]) }));
    median.forEach((v, i) => {
      const dot = svg("circle", { class: "median-pt", cx: c.x(h + i).toFixed(1), cy: c.y(v).toFixed(1), r: 2.6 });
      dot.append(svg("title", {}, `step ${i + 1}: ${fmt(v)}${lower ? ` (${fmt(lower[i])} – ${fmt(upper[i])})` : ""}`));
      c.root.append(dot);
    });
    return c.root;
  }

  function drawForecast() {
    if (!state.forecast) return;
    const { history, result } = state.forecast;
    $("fc-chart").replaceChildren(forecastChart(history, result.median, result.quantiles?.["0.1"], result.quantiles?.["0.9"]));
  }

  function forecastCsv(history, result) {
    const qs = Object.keys(result.quantiles || {}).sort((a, b) => Number(a) - Number(b));
    const lines = [["t", "history", "median", ...qs.map((q) => `q${q}`)].join(",")];
    history.forEach((v, i) => lines.push([i + 1, v, "", ...qs.map(() => "")].join(",")));
    result.median.forEach((v, i) => lines.push([history.length + i + 1, "", v, ...qs.map((q) => result.quantiles[q][i])].join(",")));
    return `${lines.join("\n")}\n`;
  }

  async function runForecast(event) {
    event.preventDefault();
    showError($("fc-error"), null);
    let history;
    try {
      history = parseSeries($("fc-series").value);
    } catch (err) {
      showError($("fc-error"), err);
      return;
    }
    const body = { series: history };
    const horizon = numberOrNull($("fc-horizon")); if (horizon !== null) body.horizon = horizon;
    const season = numberOrNull($("fc-season")); if (season !== null) body.season_length = season;
    $("fc-run").disabled = true;
    $("fc-status").textContent = "forecasting…";
    try {
      const result = await api("POST", "forecast", body);
      state.forecast = { history, result };
      drawForecast();
      $("fc-figure").hidden = false;
      $("fc-status").textContent = `${result.median.length} steps ahead from ${history.length} observations · season length ${result.season_length}` +
        `${season === null ? " (chosen by the service)" : ""} · ${result.model.name} v${result.model.version}`;
      const link = $("fc-download");
      if (link.href && link.href.startsWith("blob:")) URL.revokeObjectURL(link.href);
      link.href = URL.createObjectURL(new Blob([forecastCsv(history, result)], { type: "text/csv" }));
      link.hidden = false;
    } catch (err) {
      showError($("fc-error"), err);
      $("fc-status").textContent = "";
    } finally {
      $("fc-run").disabled = false;
    }
  }

  // ---- Sentiment ------------------------------------------------------------------------------------------------
  function bar(label, value, cls, asNumber) {
    const pct = Math.max(0, Math.min(1, value)) * 100;
    const shown = asNumber ? value.toFixed(3) : `${pct.toFixed(1)}%`;
    const track = el("div", { class: "bar", role: "meter", "aria-label": label, "aria-valuemin": "0", "aria-valuemax": "1",
      "aria-valuenow": String(value), "aria-valuetext": shown });
    const fill = el("span");
    fill.style.width = `${pct.toFixed(1)}%`;
    track.append(fill);
    return el("div", { class: `bar-row ${cls || ""}` }, el("span", { text: label }), track, el("span", { class: "pct", text: shown }));
  }

  async function runSentiment(event) {
    event.preventDefault();
    showError($("sent-error"), null);
    const texts = $("sent-texts").value.split(/\r?\n/).filter((t) => t.trim());
    $("sent-run").disabled = true;
    try {
      const answer = await api("POST", "sentiment", { texts });
      $("sent-results").replaceChildren(...answer.results.map((r, i) => {
        const meta = `${r.tokens} tokens${r.unknown_tokens ? `, ${r.unknown_tokens} unknown` : ""}${r.truncated ? ", truncated" : ""}`;
        return el("li", { "data-label": r.label },
          el("p", { class: "text" }, el("span", { class: "label-chip", text: `${r.label}: ` }), texts[i]),
          ...Object.entries(r.probabilities).map(([label, p]) => bar(label, p, label)),
          el("div", { class: "meta", text: meta }));
      }));
    } catch (err) {
      showError($("sent-error"), err);
    } finally {
      $("sent-run").disabled = false;
    }
  }

  // ---- Inside the LSTM ------------------------------------------------------------------------------------------
  const GATES = ["input", "forget", "candidate", "output"];

  function valuesOf(tokenLayer, which) {
    if (!tokenLayer) return {};
    if (GATES.includes(which)) return tokenLayer.gates ? tokenLayer.gates[which] : {};
    return tokenLayer[which] || {};
  }

  // Diverging colour: blue for negative, white at 0, red for positive; |v| / scale sets the strength.
  function heat(v, scale) {
    const t = Math.max(-1, Math.min(1, v / (scale || 1)));
    const [r, g, b] = t >= 0 ? [179, 38, 30] : [11, 87, 208];
    const a = Math.abs(t);
    const mix = (c) => Math.round(255 + (c - 255) * a);
    return `rgb(${mix(r)}, ${mix(g)}, ${mix(b)})`;
  }

  function renderHeatmap() {
    const wrap = $("insp-heatmap");
    const line = $("insp-line");
    if (!state.inspect) { wrap.replaceChildren(); line.replaceChildren(); return; }
    const { answer, layer } = state.inspect;
    const which = $("insp-state").value;
    const summary = answer.layers.find((l) => l.layer === layer) || answer.layers[0];
    const neurons = summary.neurons.map((n) => n.neuron);
    const perToken = answer.tokens.map((t) => valuesOf(t.layers.find((l) => l.layer === summary.layer), which));
    let scale = 0;
    for (const values of perToken) for (const n of neurons) scale = Math.max(scale, Math.abs(values[n] ?? 0));
    if (which === "hidden" || GATES.includes(which)) scale = Math.max(scale, 1e-6);
    const head = el("tr", {}, el("th", { scope: "col", text: "neuron" }),
      ...answer.tokens.map((t) => el("th", { scope: "col", class: t.unknown ? "unknown" : "", text: t.unknown ? `${t.token}?` : t.token })));
    const rows = neurons.map((n) => {
      const button = el("button", { type: "button", "data-neuron": String(n), "aria-pressed": "false",
        "aria-label": `neuron ${n}: show its ${which} line`, text: String(n) });
      button.addEventListener("click", () => selectNeuron(n));
      const cells = perToken.map((values, i) => {
        const v = values[n];
        const cell = el("td", { class: "cell", title: `${answer.tokens[i].token} · neuron ${n} · ${which} ${v === undefined ? "—" : v.toFixed(3)}` });
        if (v !== undefined) cell.style.background = heat(v, scale);
        return cell;
      });
      return el("tr", { "data-neuron": String(n) }, el("th", { scope: "row" }, button), ...cells);
    });
    const table = el("table", { class: "heatmap", "aria-label": `Layer ${summary.layer}, ${which}: top neurons (rows) over the tokens (columns)` },
      el("thead", {}, head), el("tbody", {}, ...rows));
    const ramp = el("span", { class: "ramp" });
    ramp.style.background = `linear-gradient(to right, ${heat(-1, 1)}, #fff, ${heat(1, 1)})`;
    const scaleRow = el("div", { class: "scale" }, el("span", { text: fmt(-scale) }), ramp, el("span", { text: fmt(scale) }),
      el("span", { text: `· layer ${summary.layer}, ${which}${answer.unknown_tokens ? ` · ${answer.unknown_tokens} unknown tokens (marked ?)` : ""}` }));
    wrap.replaceChildren(scaleRow, table);
    selectNeuron(state.inspect.selected ?? neurons[0]);
  }

  function selectNeuron(n) {
    if (!state.inspect) return;
    state.inspect.selected = n;
    const { answer, layer } = state.inspect;
    const which = $("insp-state").value;
    for (const row of $("insp-heatmap").querySelectorAll("tr[data-neuron]")) {
      const on = row.dataset.neuron === String(n);
      row.classList.toggle("selected", on);
      row.querySelector("button").setAttribute("aria-pressed", String(on));
    }
    const values = answer.tokens.map((t) => valuesOf(t.layers.find((l) => l.layer === layer), which)[n] ?? 0);
    const bounded = which === "hidden" || which === "candidate" ? [-1, 1] : GATES.includes(which) ? [0, 1] : [];
    const tokens = answer.tokens.map((t) => t.token);
    const width = chartWidth($("insp-line"));
    const c = lineChart({ width, height: Math.round(Math.max(200, Math.min(260, width * 0.4))), n: values.length, yValues: [...values, ...bounded],
      title: `Layer ${layer}, neuron ${n}, ${which}, over the text's ${values.length} tokens` });
    if (Math.min(...values, ...bounded) < 0) c.root.append(svg("line", { class: "zero", x1: c.pad.l, x2: c.width - c.pad.r, y1: c.y(0), y2: c.y(0) }));
    c.root.append(svg("polyline", { class: "activation", points: pts(values.map((v, i) => [c.x(i), c.y(v)])), "data-points": String(values.length) }));
    const every = Math.max(1, Math.ceil(tokens.length / Math.max(8, Math.floor(c.width / 18))));
    tokens.forEach((tok, i) => {
      const dot = svg("circle", { cx: c.x(i).toFixed(1), cy: c.y(values[i]).toFixed(1), r: 2.4, fill: "currentColor", class: "activation-pt" });
      dot.append(svg("title", {}, `${tok}: ${values[i].toFixed(3)}`));
      c.root.append(dot);
      if (i % every === 0) {
        const x = c.x(i).toFixed(1);
        const y = c.height - c.pad.b + 10;
        c.root.append(svg("text", { x, y, "text-anchor": "end", transform: `rotate(-45 ${x} ${y})` }, tok));
      }
    });
    c.root.setAttribute("viewBox", `0 0 ${c.width} ${c.height + 30}`);
    $("insp-line").replaceChildren(el("p", { class: "hint", text: `Neuron ${n}, layer ${layer}, ${which}` }), c.root);
  }

  async function runInspect(event) {
    if (event) event.preventDefault();
    showError($("insp-error"), null);
    const layer = Number($("insp-layer").value);
    const body = { text: $("insp-text").value, layer, gates: true };
    const k = numberOrNull($("insp-k")); if (k !== null) body.top_k_neurons = k;
    $("insp-run").disabled = true;
    try {
      const answer = await api("POST", "inspect", body);
      state.inspect = { answer, layer, selected: null };
      renderHeatmap();
    } catch (err) {
      state.inspect = null;
      renderHeatmap();
      showError($("insp-error"), err);
    } finally {
      $("insp-run").disabled = false;
    }
  }

  async function runNeighbors(event) {
    event.preventDefault();
    showError($("nb-error"), null);
    const params = new URLSearchParams({ word: $("nb-word").value.trim() });
    const k = $("nb-k").value.trim(); if (k) params.set("k", k);
    $("nb-run").disabled = true;
    try {
      const answer = await api("GET", `embeddings/neighbors?${params}`);
      $("nb-results").replaceChildren(...answer.neighbors.map((nb) => el("li", {}, bar(nb.word, nb.similarity, "", true))));
      $("nb-results").setAttribute("aria-label", `Nearest words to ${answer.word} (cosine similarity)`);
    } catch (err) {
      $("nb-results").replaceChildren();
      showError($("nb-error"), err);
    } finally {
      $("nb-run").disabled = false;
    }
  }

  // ---- wiring ---------------------------------------------------------------------------------------------------
  function init() {
    const keyInput = $("api-key");
    keyInput.value = apiKey();
    $("key-form").addEventListener("submit", (e) => {
      e.preventDefault();
      try {
        if (keyInput.value.trim()) sessionStorage.setItem(KEY_STORAGE, keyInput.value.trim());
        else sessionStorage.removeItem(KEY_STORAGE);
      } catch { /* storage disabled: the key cannot be kept */ }
      loadModels();
    });
    $("models-refresh").addEventListener("click", loadModels);
    $("gen-form").addEventListener("submit", runGenerate);
    $("gen-stop-btn").addEventListener("click", stopGenerate);
    $("gen-clear").addEventListener("click", clearGenerate);
    $("gen-session").addEventListener("change", () => { if (!$("gen-session").checked) forgetSession(); });
    $("fc-form").addEventListener("submit", runForecast);
    $("fc-sample").addEventListener("click", () => { $("fc-series").value = SAMPLE_SERIES.join(", "); $("fc-season").value = "12"; });
    $("fc-file").addEventListener("change", () => { const f = $("fc-file").files[0]; if (f) loadCsv(f); });
    const drop = $("fc-series");
    drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("dragging"); });
    drop.addEventListener("dragleave", () => drop.classList.remove("dragging"));
    drop.addEventListener("drop", (e) => {
      drop.classList.remove("dragging");
      const f = e.dataTransfer && e.dataTransfer.files[0];
      if (f) { e.preventDefault(); loadCsv(f); }
    });
    $("sent-form").addEventListener("submit", runSentiment);
    $("insp-form").addEventListener("submit", runInspect);
    $("insp-state").addEventListener("change", renderHeatmap);
    $("insp-layer").addEventListener("change", () => { if (state.inspect) runInspect(); });
    $("nb-form").addEventListener("submit", runNeighbors);
    let resizing = null;
    window.addEventListener("resize", () => {
      clearTimeout(resizing);
      resizing = setTimeout(() => {
        drawForecast();
        if (state.inspect && state.inspect.selected !== null) selectNeuron(state.inspect.selected);
      }, 150);
    });
    if (!$("fc-series").value) { $("fc-series").value = SAMPLE_SERIES.join(", "); $("fc-season").value = "12"; }
    // The spec first: the limits GET /models reports for the served versions then refine its general ones.
    window.playground = { ready: loadSpec().then(loadModels).then(() => { document.body.dataset.ready = "true"; }) };
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
