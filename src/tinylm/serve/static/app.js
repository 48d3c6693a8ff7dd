// The inspector page. It only draws: every number comes from the server's JSON API,
// which computes it with tinylm's own functions. No framework, no build step, and
// nothing fetched from anywhere but this server.
"use strict";

const state = {
  info: null,        // /api/runs: runs, comparison tokenizers, limits
  view: "tokens",
  attention: null,   // the last /api/attention answer
  query: null,       // index of the token whose attention row is shown
  layer: 0,
  head: 0,
  generation: null,  // AbortController of the running stream
  chat: [],          // the conversation: {role, content} messages, sent whole with each one
  chatStream: null,  // AbortController of the reply being written
  requests: {},      // latest request number per view: older answers are dropped
};

const $ = (selector) => document.querySelector(selector);

function el(tag, props = {}, children = []) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "className") node.className = value;
    else node[key] = value;
  }
  for (const child of [].concat(children)) node.append(child);
  return node;
}

// -- talking to the server -------------------------------------------------------------

async function api(path, body) {
  const options = body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  };
  const response = await fetch(path, options);
  let answer;
  try { answer = await response.json(); } catch { answer = { error: `HTTP ${response.status}` }; }
  if (!response.ok) throw new Error(answer.error || `HTTP ${response.status}`);
  return answer;
}

function showError(message) {
  const box = $("#error");
  box.textContent = message;
  box.hidden = !message;
}

// Run a view's request; show its error, and drop the answer if a newer one was asked for.
// A failed request clears its view: what it showed belonged to another prompt or run.
async function latest(view, work) {
  const number = (state.requests[view] || 0) + 1;
  state.requests[view] = number;
  try {
    const result = await work();
    if (state.requests[view] !== number) return;
    showError("");
    return result;
  } catch (error) {
    if (state.requests[view] === number) {
      clearView(view);
      showError(error.message);
    }
  }
}

// Empty a view, so it never shows an answer to a prompt or run other than the current ones.
function clearView(view) {
  if (view === "tokens") $("#token-rows").replaceChildren();
  if (view === "next") {
    $("#bars").replaceChildren();
    delete $("#bars").dataset.temperature;
    $("#bars-rest").textContent = "";
  }
  if (view === "attention") {
    state.attention = null;
    $("#attn-tokens").replaceChildren();
    $("#attn-grid").replaceChildren();
    const canvas = $("#heatmap");
    canvas.getContext("2d").clearRect(0, 0, canvas.width, canvas.height);
    delete canvas.dataset.tokens;
    $("#heatmap-tip").textContent = "\u00a0";
  }
  if (view === "lens") $("#lens-table").replaceChildren();
}

const runName = () => $("#run").value;
const promptText = () => $("#prompt").value;
const currentRun = () => state.info.runs.find((r) => r.name === runName());

// Make whitespace in a token visible without changing what it is; a token standing
// alone (a bar's label) shows a space as ␣, or " the" and "the" would look alike.
function shown(text, spaces = false) {
  const out = text.replace(/\n/g, "\\n").replace(/\t/g, "\\t").replace(/\r/g, "\\r");
  return spaces ? out.replace(/ /g, "\u2423") : out;
}

function tokenTitle(token) {
  return `id ${token.id}` + (token.bytes !== undefined ? ` · bytes ${token.bytes}` : "");
}

// -- tokens ------------------------------------------------------------------------------

function drawCompareChoices() {
  const box = $("#compare");
  box.replaceChildren();
  if (!state.info.tokenizers.length) return;
  box.append("compare with: ");
  for (const tok of state.info.tokenizers) {
    const input = el("input", { type: "checkbox", dataset: { tokenizer: tok.name } });
    input.addEventListener("change", refresh);
    box.append(el("label", {}, [input, ` ${tok.name} (${tok.vocab_size.toLocaleString()})`]));
  }
}

async function refreshTokens() {
  const compare = [...document.querySelectorAll("#compare input:checked")].map((i) => i.dataset.tokenizer);
  const answer = await latest("tokens", () =>
    api("/api/tokenize", { run: runName(), text: promptText(), compare }));
  if (!answer) return;
  const rows = $("#token-rows");
  rows.replaceChildren();
  for (const row of answer.rows) {
    const line = el("div", { className: "token-line" });
    for (const token of row.tokens) {
      line.append(el("span", { className: "tok", title: tokenTitle(token), dataset: { id: token.id } },
        shown(token.text)));
    }
    const perToken = (answer.chars / Math.max(row.tokens.length, 1)).toFixed(2);
    const facts = row.error
      ? row.error
      : `${row.tokens.length} tokens · ${perToken} characters per token · vocabulary ${row.vocab_size.toLocaleString()}`;
    const heading = el("h4", {}, [`${row.name} `,
      el("span", { className: row.error ? "row-error" : "muted tok-count" }, facts)]);
    rows.append(el("div", { className: "tok-row", dataset: { name: row.name } }, [heading, line]));
  }
}

// -- next token --------------------------------------------------------------------------

async function refreshNext() {
  const temperature = Number($("#temperature").value);
  $("#temperature-value").textContent = temperature.toFixed(2);
  const k = Number($("#k").value) || 10;
  const answer = await latest("next", () =>
    api("/api/next", { run: runName(), text: promptText(), temperature, k }));
  if (!answer) return;
  const bars = $("#bars");
  bars.replaceChildren();
  bars.dataset.temperature = answer.temperature;
  const top = Math.max(...answer.top.map((t) => Math.max(t.prob, t.prob_t1)), 1e-9);
  for (const token of answer.top) {
    const t1 = el("div", { className: "bar-t1" });
    const fill = el("div", { className: "bar-fill" });
    t1.style.width = `${(100 * token.prob_t1) / top}%`;
    fill.style.width = `${(100 * token.prob) / top}%`;
    const row = el("div", {
      className: "bar-row", title: `${tokenTitle(token)} · p at temperature 1: ${token.prob_t1.toFixed(4)}`,
      dataset: { id: token.id, text: token.text, prob: token.prob, probT1: token.prob_t1 },
    }, [
      el("span", { className: "bar-label" }, shown(token.text, true)),
      el("div", { className: "bar-track" }, [t1, fill]),
      el("span", { className: "bar-value" }, token.prob.toFixed(4)),
    ]);
    row.addEventListener("click", () => appendToken(token.text));
    bars.append(row);
  }
  $("#bars-rest").textContent =
    `all other tokens: ${answer.rest.toFixed(4)} · context: ${answer.context.length} tokens`;
}

function appendToken(text) {
  $("#prompt").value += text;
  refresh();
}

// -- attention ---------------------------------------------------------------------------

// Viridis, by five stops: dark for no attention, yellow for all of it.
const STOPS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
function colour(weight) {
  const x = Math.min(Math.max(weight, 0), 1) * (STOPS.length - 1);
  const i = Math.min(Math.floor(x), STOPS.length - 2);
  const f = x - i;
  const c = STOPS[i].map((v, n) => Math.round(v + f * (STOPS[i + 1][n] - v)));
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}

function drawMap(canvas, rows, size) {
  const T = rows.length;
  const cell = Math.max(1, Math.floor(size / T));
  canvas.width = canvas.height = cell * T;
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#e3e5e8"; // the causal mask: the future is not "no attention", it is hidden
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  rows.forEach((row, i) => row.forEach((w, j) => {
    ctx.fillStyle = colour(w);
    ctx.fillRect(j * cell, i * cell, cell, cell);
  }));
  if (state.query !== null && canvas.id === "heatmap" && state.query < T) {
    ctx.strokeStyle = "#d9480f";
    ctx.lineWidth = 2;
    ctx.strokeRect(1, state.query * cell + 1, canvas.width - 2, cell - 2);
  }
  return cell;
}

async function refreshAttention() {
  const answer = await latest("attention", () =>
    api("/api/attention", { run: runName(), text: promptText() }));
  if (!answer) return;
  state.attention = answer;
  if (state.layer >= answer.n_layer) state.layer = 0;
  if (state.head >= answer.n_head) state.head = 0;
  if (state.query !== null && state.query >= answer.tokens.length) state.query = null;
  fillSelect($("#layer"), answer.n_layer, state.layer);
  fillSelect($("#head"), answer.n_head, state.head);
  drawAttention();
}

function fillSelect(select, n, chosen) {
  if (select.options.length !== n) {
    select.replaceChildren(...Array.from({ length: n }, (_, i) => el("option", { value: i }, String(i))));
  }
  select.value = String(chosen);
}

// The token line is rebuilt only for a new answer; choosing a query token repaints it in
// place, so hovering never replaces the element under the mouse.
function drawAttention() {
  const answer = state.attention;
  if (!answer) return;
  const line = $("#attn-tokens");
  line.replaceChildren();
  answer.tokens.forEach((token, i) => {
    const span = el("span", { className: "attn-tok", dataset: { index: i } }, shown(token.text));
    span.addEventListener("click", () => chooseQuery(i));
    span.addEventListener("mouseenter", () => chooseQuery(i));
    line.append(span);
  });
  paintAttention();
  drawGrid(answer);
}

function chooseQuery(i) {
  if (state.query === i) return;
  state.query = i;
  paintAttention();
}

function paintAttention() {
  const answer = state.attention;
  const rows = answer.weights[state.layer][state.head];
  const q = state.query;
  document.querySelectorAll("#attn-tokens .attn-tok").forEach((span, i) => {
    const token = answer.tokens[i];
    span.title = tokenTitle(token);
    span.classList.toggle("query", i === q);
    if (q === null) {
      delete span.dataset.weight;
      span.style.background = span.style.color = "";
      return;
    }
    const weight = i <= q ? rows[q][i] : 0;
    span.dataset.weight = weight;
    span.style.background = i <= q ? colour(weight) : "";
    span.style.color = i > q ? "" : weight > 0.55 ? "#000" : "#fff";
    span.title += ` · weight ${weight.toFixed(4)}`;
  });
  const canvas = $("#heatmap");
  const cell = drawMap(canvas, rows, 360);
  canvas.dataset.tokens = rows.length;
  canvas.onmousemove = (event) => {
    const i = Math.floor(event.offsetY / cell), j = Math.floor(event.offsetX / cell);
    const tokens = answer.tokens;
    if (i >= tokens.length || j >= tokens.length) return;
    $("#heatmap-tip").textContent = j <= i
      ? `"${shown(tokens[i].text)}" → "${shown(tokens[j].text)}": ${rows[i][j].toFixed(4)}`
      : "above the diagonal: the future, masked";
  };
  canvas.onclick = (event) => chooseQuery(Math.min(Math.floor(event.offsetY / cell), answer.tokens.length - 1));
}

function drawGrid(answer) {
  const grid = $("#attn-grid");
  grid.replaceChildren();
  grid.style.gridTemplateColumns = `auto repeat(${answer.n_head}, auto)`;
  grid.append(el("span"));
  for (let h = 0; h < answer.n_head; h++) grid.append(el("span", { className: "grid-label" }, `head ${h}`));
  const size = Math.max(48, Math.min(110, Math.floor(520 / answer.n_head)));
  for (let l = 0; l < answer.n_layer; l++) {
    grid.append(el("span", { className: "grid-label" }, `layer ${l}`));
    for (let h = 0; h < answer.n_head; h++) {
      const canvas = el("canvas", { className: "grid-cell", title: `layer ${l}, head ${h}`,
        dataset: { layer: l, head: h } });
      drawMap(canvas, answer.weights[l][h], size);
      if (l === state.layer && h === state.head) canvas.classList.add("selected");
      canvas.addEventListener("click", () => { state.layer = l; state.head = h; refreshAttentionChoice(); });
      grid.append(canvas);
    }
  }
}

function refreshAttentionChoice() {
  $("#layer").value = String(state.layer);
  $("#head").value = String(state.head);
  paintAttention();
  document.querySelectorAll("#attn-grid canvas").forEach((c) => c.classList.toggle("selected",
    Number(c.dataset.layer) === state.layer && Number(c.dataset.head) === state.head));
}

// -- logit lens --------------------------------------------------------------------------

async function refreshLens() {
  const answer = await latest("lens", () =>
    api("/api/lens", { run: runName(), text: promptText(), k: 3 }));
  if (!answer) return;
  const table = $("#lens-table");
  table.replaceChildren();
  table.append(el("tr", {}, [el("th", {}, "after"),
    ...answer.tokens.map((t) => el("th", { className: "lens-token", title: tokenTitle(t) }, shown(t.text, true)))]));
  answer.top.forEach((stage, s) => {
    const cells = stage.map((guesses, t) => {
      const best = guesses[0];
      const cell = el("td", {
        className: "lens-cell",
        title: guesses.map((g) => `${shown(g.text, true)} ${g.prob.toFixed(3)}`).join("\n"),
        dataset: { stage: s, position: t, id: best.id, prob: best.prob },
      }, shown(best.text, true));
      cell.style.background = `rgba(45, 108, 223, ${(0.08 + 0.8 * best.prob).toFixed(3)})`;
      cell.style.color = best.prob > 0.55 ? "#fff" : "";
      return cell;
    });
    table.append(el("tr", {}, [el("th", {}, answer.stages[s]), ...cells]));
  });
}

// -- generation --------------------------------------------------------------------------

function probColour(p) {
  return `hsl(${Math.round(120 * p)}, 75%, 82%)`;
}

function optionalNumber(selector) {
  const text = $(selector).value.trim();
  return text === "" ? null : Number(text);
}

async function generate() {
  stopGeneration();
  const output = $("#gen-output");
  output.replaceChildren(el("span", { className: "gen-prompt" }, promptText()));
  $("#gen-status").textContent = "generating…";
  delete $("#gen-status").dataset.done;
  const body = {
    run: runName(), text: promptText(), max_tokens: Number($("#gen-max").value),
    temperature: Number($("#gen-temperature").value), top_k: optionalNumber("#gen-top-k"),
    top_p: optionalNumber("#gen-top-p"), seed: optionalNumber("#gen-seed"),
  };
  const controller = new AbortController();
  state.generation = controller;
  $("#gen-start").disabled = true;
  $("#gen-stop").disabled = false;
  try {
    const response = await fetch("/api/generate", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body), signal: controller.signal,
    });
    if (!response.ok) {
      const answer = await response.json().catch(() => ({}));
      throw new Error(answer.error || `HTTP ${response.status}`);
    }
    showError("");
    await readEvents(response, (event) => showEvent(event, output));
  } catch (error) {
    if (error.name !== "AbortError") {
      showError(error.message);
      $("#gen-status").textContent = "";
    }
  } finally {
    if (state.generation === controller) finishGeneration();
  }
}

// Server-sent events over fetch: blocks separated by a blank line, each "data: {json}".
async function readEvents(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = block.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
      if (data) onEvent(JSON.parse(data));
    }
  }
}

// A generated token, coloured by the probability the model gave it.
function tokenSpan(event) {
  const span = el("span", {
    className: "gen-tok", title: `${tokenTitle(event)} · p ${event.prob.toFixed(4)}`,
    dataset: { id: event.id, prob: event.prob },
  }, event.text);
  span.style.background = probColour(event.prob);
  return span;
}

function showEvent(event, output) {
  if (event.type === "token") {
    output.append(tokenSpan(event));
    $("#gen-status").textContent = `${output.querySelectorAll(".gen-tok").length} tokens…`;
  } else if (event.type === "done") {
    $("#gen-status").textContent =
      `${event.tokens} tokens in ${event.seconds.toFixed(2)} s (stopped: ${event.reason})`;
    $("#gen-status").dataset.done = "true";
  } else if (event.type === "error") {
    showError(event.error);
  }
}

function stopGeneration() {
  if (state.generation) {
    state.generation.abort();
    $("#gen-status").textContent = "stopped";
    finishGeneration();
  }
}

function finishGeneration() {
  state.generation = null;
  $("#gen-start").disabled = false;
  $("#gen-stop").disabled = true;
}

// -- chat --------------------------------------------------------------------------------

// Only a run fine-tuned on conversations (it has a chat template) can chat; another gets
// the command that makes one.
function drawChatAvailability() {
  const run = currentRun();
  $("#chat-missing").hidden = run.chat;
  $("#chat-ready").hidden = !run.chat;
  $("#chat-advice").textContent =
    `tinylm train --init-from ${run.path} --data chat:builtin --out DIR\ntinylm serve DIR`;
}

function chatBubble(role, text) {
  const bubble = el("div", { className: `chat-msg ${role}`, dataset: { role } }, text);
  $("#chat-log").append(bubble);
  return bubble;
}

// The conversation stays in the page: each message sends all of it, with the settings,
// and the server answers with the reply's tokens as they are written.
async function sendChat() {
  const text = $("#chat-message").value;
  if (!text.trim() || state.chatStream) return;
  const conversation = [...state.chat, { role: "user", content: text }];
  const body = {
    run: runName(), messages: conversation, system: $("#chat-system").value,
    max_tokens: Number($("#chat-max").value), temperature: Number($("#chat-temperature").value),
    top_k: optionalNumber("#chat-top-k"), top_p: optionalNumber("#chat-top-p"),
    seed: optionalNumber("#chat-seed"),
  };
  const controller = new AbortController();
  state.chatStream = controller;
  $("#chat-send").disabled = true;
  $("#chat-stop").disabled = false;
  $("#chat-notice").textContent = "";
  let bubble = null, written = null;
  try {
    const response = await fetch("/api/chat", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body), signal: controller.signal,
    });
    if (!response.ok) {
      const answer = await response.json().catch(() => ({}));
      throw new Error(answer.error || `HTTP ${response.status}`);
    }
    showError("");
    state.chat = conversation; // the message joins the conversation once it is accepted
    chatBubble("user", text);
    $("#chat-message").value = "";
    bubble = chatBubble("assistant", "");
    await readEvents(response, (event) => {
      if (event.type === "done") written = event.text;
      showChatEvent(event, bubble);
    });
  } catch (error) {
    if (error.name !== "AbortError") showError(error.message);
  } finally {
    // A stopped reply keeps what was written, as in tinylm chat; after Reset, nothing.
    if (bubble && state.chat === conversation) {
      const content = written ?? [...bubble.querySelectorAll(".gen-tok")].map((s) => s.textContent).join("");
      conversation.push({ role: "assistant", content });
      bubble.dataset.done = "true";
    }
    if (state.chatStream === controller) finishChat();
  }
}

function showChatEvent(event, bubble) {
  if (event.type === "token") {
    bubble.append(tokenSpan(event));
  } else if (event.type === "notice") {
    $("#chat-notice").textContent = event.text; // history trimmed to fit the context
  } else if (event.type === "done") {
    bubble.dataset.reason = event.reason;
    bubble.title = `${event.tokens} tokens in ${event.seconds.toFixed(2)} s (stopped: ${event.reason})`;
  } else if (event.type === "error") {
    showError(event.error);
  }
}

function stopChat() {
  if (state.chatStream) {
    state.chatStream.abort();
    finishChat();
  }
}

function finishChat() {
  state.chatStream = null;
  $("#chat-send").disabled = false;
  $("#chat-stop").disabled = true;
}

function resetChat() {
  stopChat();
  state.chat = [];
  $("#chat-log").replaceChildren();
  $("#chat-notice").textContent = "";
}

// -- training ----------------------------------------------------------------------------

const RUN_COLOURS = ["#2d6cdf", "#d9480f", "#2b8a3e", "#862e9c", "#c2255c", "#1098ad", "#5c940d", "#e67700"];

function drawTrainingChoices() {
  const box = $("#train-runs");
  box.replaceChildren("runs: ");
  state.info.runs.forEach((run, n) => {
    const input = el("input", { type: "checkbox", checked: true, dataset: { run: run.name } });
    input.addEventListener("change", refresh);
    const swatch = el("span", {}, "■ ");
    swatch.style.color = RUN_COLOURS[n % RUN_COLOURS.length];
    box.append(el("label", {}, [input, " ", swatch, run.name]));
  });
}

async function refreshTraining() {
  const chosen = state.info.runs.filter((run) =>
    document.querySelector(`#train-runs input[data-run="${CSS.escape(run.name)}"]`)?.checked);
  const curves = await latest("training", () =>
    Promise.all(chosen.map((run) => api(`/api/metrics?run=${encodeURIComponent(run.name)}`))));
  if (!curves) return;
  drawLossCharts(chosen, curves);
  drawConfigTable(chosen);
  drawParamsTable(chosen);
}

function niceTicks(low, high, count) {
  const span = high - low || 1;
  const step0 = span / count;
  const magnitude = 10 ** Math.floor(Math.log10(step0));
  const step = [1, 2, 5, 10].map((m) => m * magnitude).find((s) => s >= step0);
  const ticks = [];
  for (let v = Math.ceil(low / step) * step; v <= high + 1e-9; v += step) ticks.push(Number(v.toPrecision(12)));
  return ticks;
}

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

// A loss is in nats per token of the run's tokenizer: per character for a char model,
// per (longer) BPE token for another. Curves in different units are not comparable, so
// each unit gets its own chart, titled with it.
function lossUnit(run) {
  const tok = run.tokenizer;
  return tok.loss_unit === "character"
    ? { key: "character", title: "loss per character (nats)" }
    : { key: `token ${tok.fingerprint}`,
        title: `loss per token of ${tok.kind} (${tok.vocab_size.toLocaleString()}) (nats)` };
}

function drawLossCharts(runs, curves) {
  const box = $("#loss-chart");
  box.replaceChildren();
  const groups = new Map();
  runs.forEach((run, n) => {
    const unit = lossUnit(run);
    if (!groups.has(unit.key)) groups.set(unit.key, { unit, runs: [], curves: [] });
    groups.get(unit.key).runs.push(run);
    groups.get(unit.key).curves.push(curves[n]);
  });
  for (const group of groups.values()) {
    const chart = svg("svg", { width: 760, height: 340, role: "img", class: "loss-chart",
      "data-unit": group.unit.key, "aria-label": group.unit.title });
    box.append(chart);
    drawLossChart(chart, group.runs, group.curves, group.unit.title);
  }
  // Bits per byte are one unit whatever the tokenizer: every run on one chart.
  const bpb = curves.map((c) => ({ run: c.run, train: [], val: c.val_bpb || [] }));
  if (bpb.some((c) => c.val.length)) {
    const title = "validation bits per byte (comparable across tokenizers)";
    const chart = svg("svg", { width: 760, height: 340, role: "img", class: "loss-chart bpb-chart",
      "data-unit": "bpb", "aria-label": title });
    box.append(chart);
    drawLossChart(chart, runs, bpb, title);
  }
}

function drawLossChart(chart, runs, curves, title) {
  const W = Number(chart.getAttribute("width")), H = Number(chart.getAttribute("height"));
  const pad = { left: 52, right: 150, top: 24, bottom: 36 };
  const points = curves.flatMap((c) => [...c.train, ...c.val]);
  if (!points.length) {
    chart.append(svg("text", { x: 20, y: 40 }, "no training metrics recorded for these runs"));
    return;
  }
  const xs = points.map((p) => p[0]), ys = points.map((p) => p[1]);
  const [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  const [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  const sx = (x) => pad.left + ((x - x0) / (x1 - x0 || 1)) * (W - pad.left - pad.right);
  const sy = (y) => H - pad.bottom - ((y - y0) / (y1 - y0 || 1)) * (H - pad.top - pad.bottom);
  for (const t of niceTicks(y0, y1, 5)) {
    chart.append(svg("line", { x1: pad.left, x2: W - pad.right, y1: sy(t), y2: sy(t), stroke: "#eceef1" }));
    chart.append(svg("text", { x: pad.left - 6, y: sy(t) + 4, "text-anchor": "end" }, String(t)));
  }
  for (const t of niceTicks(x0, x1, 6)) {
    chart.append(svg("text", { x: sx(t), y: H - pad.bottom + 16, "text-anchor": "middle" }, String(t)));
  }
  chart.append(svg("text", { x: (pad.left + W - pad.right) / 2, y: H - 4, "text-anchor": "middle" }, "step"));
  chart.append(svg("text", { x: 12, y: pad.top + 4, class: "chart-title" }, title));
  let legendY = pad.top + 8;
  curves.forEach((curve, n) => {
    const colour = RUN_COLOURS[state.info.runs.indexOf(runs[n]) % RUN_COLOURS.length];
    const line = (pts) => pts.map((p) => `${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join(" ");
    if (curve.train.length) {
      chart.append(svg("polyline", { points: line(curve.train), fill: "none", stroke: colour,
        "stroke-width": 1.2, opacity: 0.55, class: "train-curve", "data-run": curve.run }));
    }
    if (curve.val.length) {
      chart.append(svg("polyline", { points: line(curve.val), fill: "none", stroke: colour,
        "stroke-width": 2, "stroke-dasharray": "5 3", class: "val-curve", "data-run": curve.run }));
      for (const p of curve.val) {
        const dot = svg("circle", { cx: sx(p[0]), cy: sy(p[1]), r: 3, fill: colour });
        dot.append(svg("title", {}, `${curve.run} step ${p[0]}: val ${p[1].toFixed(4)}`));
        chart.append(dot);
      }
    }
    const legend = svg("text", { x: W - pad.right + 10, y: legendY }, curve.run);
    legend.style.fill = colour;
    chart.append(legend);
    legendY += 16;
  });
  chart.append(svg("text", { x: W - pad.right + 10, y: legendY + 8 }, "thin: train"));
  chart.append(svg("text", { x: W - pad.right + 10, y: legendY + 24 }, "dashed: val"));
}

function flatten(prefix, object, out) {
  for (const [key, value] of Object.entries(object || {})) {
    if (value && typeof value === "object" && !Array.isArray(value)) flatten(`${prefix}${key}.`, value, out);
    else out[`${prefix}${key}`] = Array.isArray(value) ? value.join(", ") : String(value);
  }
  return out;
}

function comparisonTable(table, runs, rowsByRun, numeric) {
  table.replaceChildren();
  table.append(el("tr", {}, [el("th", {}, "setting"), ...runs.map((r) => el("th", {}, r.name))]));
  const keys = [...new Set(rowsByRun.flatMap((rows) => Object.keys(rows)))];
  for (const key of keys) {
    const values = rowsByRun.map((rows) => rows[key] ?? "—");
    const row = el("tr", { dataset: { key } }, [el("td", {}, key),
      ...values.map((v) => el("td", { className: numeric ? "num" : "" },
        numeric && v !== "—" ? Number(v).toLocaleString() : v))]);
    if (runs.length > 1 && new Set(values).size > 1) row.classList.add("differs");
    table.append(row);
  }
}

function drawConfigTable(runs) {
  comparisonTable($("#config-table"), runs, runs.map((run) => flatten("", {
    step: run.step, tokenizer: `${run.tokenizer.kind} (${run.tokenizer.vocab_size})`,
    model: run.model, train: run.train, run: run.run,
  }, {})), false);
}

function drawParamsTable(runs) {
  comparisonTable($("#params-table"), runs, runs.map((run) => run.params), true);
}

// -- the page ----------------------------------------------------------------------------

const VIEWS = {
  tokens: refreshTokens, next: refreshNext, attention: refreshAttention, lens: refreshLens,
  generate: async () => {}, chat: async () => drawChatAvailability(), training: refreshTraining,
};

function showView(view) {
  state.view = view;
  for (const tab of document.querySelectorAll(".tab")) tab.classList.toggle("active", tab.dataset.view === view);
  for (const section of document.querySelectorAll(".view")) section.hidden = section.id !== `view-${view}`;
  $("#prompt-bar").hidden = view === "chat"; // a chat has its own message box
  location.hash = view;
  refresh();
}

const NEEDS_TEXT = new Set(["tokens", "next", "attention", "lens"]);

function refresh() {
  if (NEEDS_TEXT.has(state.view) && !promptText()) {
    state.requests[state.view] = (state.requests[state.view] || 0) + 1; // drop answers in flight
    for (const view of NEEDS_TEXT) clearView(view);
    showError("");
    return;
  }
  return VIEWS[state.view]();
}

let typingTimer = null;
function refreshSoon() {
  clearTimeout(typingTimer);
  typingTimer = setTimeout(refresh, 200);
}

function describeRun() {
  const run = currentRun();
  const m = run.model;
  $("#run-facts").textContent = `${(run.params.total / 1e6).toFixed(2)}M parameters · ` +
    `${m.n_layer} layers · ${m.n_head} heads · ${m.n_embd} wide · context ${m.block_size} · ` +
    `step ${run.step}`;
}

async function start() {
  try {
    state.info = await api("/api/runs");
  } catch (error) {
    showError(error.message);
    return;
  }
  const select = $("#run");
  for (const run of state.info.runs) select.append(el("option", { value: run.name }, run.name));
  select.addEventListener("change", () => {
    state.query = null;
    for (const view of NEEDS_TEXT) clearView(view); // never one run's answer under another's name
    resetChat(); // a conversation belongs to the model it was held with
    describeRun();
    refresh();
  });
  $("#gen-max").max = state.info.limits.max_new_tokens;
  $("#chat-max").max = state.info.limits.max_new_tokens;
  $("#chat-max").value = Math.min(256, state.info.limits.max_new_tokens);
  $("#k").max = state.info.limits.max_top_k;
  $("#prompt").value = currentRun().default_prompt;
  describeRun();
  drawCompareChoices();
  drawTrainingChoices();
  $("#prompt").addEventListener("input", refreshSoon);
  $("#temperature").addEventListener("input", refreshNext);
  $("#k").addEventListener("change", refreshNext);
  $("#layer").addEventListener("change", () => { state.layer = Number($("#layer").value); refreshAttentionChoice(); });
  $("#head").addEventListener("change", () => { state.head = Number($("#head").value); refreshAttentionChoice(); });
  $("#gen-start").addEventListener("click", generate);
  $("#gen-stop").addEventListener("click", stopGeneration);
  $("#chat-send").addEventListener("click", sendChat);
  $("#chat-stop").addEventListener("click", stopChat);
  $("#chat-reset").addEventListener("click", resetChat);
  $("#chat-message").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); sendChat(); }
  });
  for (const tab of document.querySelectorAll(".tab")) tab.addEventListener("click", () => showView(tab.dataset.view));
  const initial = location.hash.slice(1);
  showView(initial in VIEWS ? initial : "tokens");
  document.body.dataset.ready = "true";
}

start();
