// lia-live control panel: one WebSocket for status (text) and preview frames (binary), actions by POST.
"use strict";
const TOKEN = new URLSearchParams(location.search).get("token") || "";
const $ = (id) => document.getElementById(id);
const panel = { state: null, seq: -1, frames: 0, chart: [], offsetsBuilt: 0, lastMessage: "" };
window.liaPanel = panel;  // for tests and the benchmark

async function post(path, body, headers) {
  const r = await fetch(path, { method: "POST", body, headers: { "X-Lia-Token": TOKEN, ...headers } });
  let j = {};
  try { j = await r.json(); } catch (e) { j = { error: `HTTP ${r.status}` }; }
  if (!r.ok) { addMessage(j.error || `HTTP ${r.status}`, true); throw new Error(j.error); }
  return j;
}
async function act(action, params = {}) {
  return post("api/action", JSON.stringify({ action, params }), { "Content-Type": "application/json" })
    .catch(() => null);
}
function addMessage(line, error) {
  line = line.replace(/«([a-z_]+)»/g, (m, name) => "--" + name.replace(/_/g, "-"));  // a setting as its flag
  const li = document.createElement("li");
  li.textContent = line;
  if (error || /^error|cannot|failed|warning|refused|no virtual camera/i.test(line)) li.className = "error";
  const ul = $("messages");
  ul.appendChild(li);
  while (ul.children.length > 200) ul.removeChild(ul.firstChild);
  ul.scrollTop = ul.scrollHeight;
  panel.lastMessage = line;
}

// ---- the preview: an MJPEG stream in an <img> (the browser decodes and draws it, no script per frame) ----
const VIEWER = Math.random().toString(36).slice(2, 12);  // this page's id: its stream's numbers in the status
function startPreview() {
  const rate = $("preview-rate").value;
  $("preview").src = `api/preview.mjpg?token=${encodeURIComponent(TOKEN)}&rate=${rate}&viewer=${VIEWER}` +
    (panel.stamp ? "&stamp=1" : "");
}
$("preview-rate").onchange = startPreview;
panel.viewer = VIEWER; panel.startPreview = startPreview;  // for the benchmark
function showPreview(p) {
  const s = (p && p.stream) || {};
  panel.seq = s.seq === undefined ? -1 : s.seq; panel.frames = s.sent || 0; panel.stream = s;
  setText("preview-fps", fmt(s.fps));
  setText("preview-latency", fmt(s.behind_ms, 0));
  const tiles = $("tiles"); const list = s.tiles || []; const key = list.map((t) => t.label).join();
  if (tiles.dataset.key !== key) {
    tiles.dataset.key = key; tiles.innerHTML = "";
    const total = list.reduce((n, t) => n + t.width, 0);
    tiles.style.width = `${total}px`; tiles.style.maxWidth = "100%";
    for (const t of list) {
      const e = document.createElement("span"); e.textContent = t.label; e.style.width = `${100 * t.width / total}%`;
      tiles.appendChild(e);
    }
  }
}

// ---- status ----
// every write below happens only when the value changed: a repaint of this page costs the machine CPU
function setIfIdle(el, value) {
  if (document.activeElement !== el && !el.dataset.dragging && el.value !== String(value)) el.value = value;
}
function setText(id, text) { const el = $(id); if (el.textContent !== String(text)) el.textContent = text; }
function setClass(id, cls) { const el = $(id); if (el.className !== cls) el.className = cls; }
function setChecked(el, on) { if (el.checked !== on) el.checked = on; }
function checkRadio(name, value) { for (const r of document.getElementsByName(name)) setChecked(r, r.value === value); }
function fmt(v, d = 1) { return typeof v === "number" ? v.toFixed(d) : "–"; }
function onStatus(s) {
  panel.state = s;
  const st = s.state || {}, dev = s.devices || {}, stats = s.stats || {};
  const running = !!dev.running;
  setText("run-state", running ? "running" : "stopped");
  setClass("run-state", "pill " + (running ? "running" : "stopped"));
  const info = st.info || {};
  setText("info", info.backend ? `${info.backend} · ${info.device} · ${info.precision} · ${info.model}` : "");
  setText("fps", fmt(stats.fps)); setText("latency", fmt(stats.latency_ms, 0));
  setText("frames", stats.frames || 0); setText("dropped", stats.dropped || 0); setText("noface", stats.no_face || 0);
  const rows = Object.entries(stats.stage_ms || {}).map(([k, v]) => `<tr><td>${k}</td><td>${fmt(v)} ms</td></tr>`).join("");
  if ($("stages").innerHTML !== rows) $("stages").innerHTML = rows;
  panel.chart.push([stats.fps || 0, stats.latency_ms || 0]); if (panel.chart.length > 120) panel.chart.shift();
  drawChart();
  for (const line of s.messages || []) addMessage(line);
  if (st.mode) checkRadio("mode", st.mode);
  if (st.compose) checkRadio("compose", st.compose);
  if (st.power !== undefined) { setIfIdle($("power"), st.power); setText("power-value", fmt(st.power, 2)); }
  if (st.ease !== undefined) { setIfIdle($("ease"), st.ease); setText("ease-value", fmt(st.ease, 1)); }
  setChecked($("reference-auto"), st.reference === "auto");
  setText("reference-state", st.reference_taken ? "reference taken" : "waiting for a face");
  setChecked($("passthrough"), !!st.passthrough);
  showPreview(s.preview);
  buildOffsets(st.offsets || []);
  (st.offsets || []).forEach((v, i) => {
    const el = $(`offset-${i}`); if (el) { setIfIdle(el, v); setText(`offset-${i}-value`, fmt(v, 2)); }
  });
  showSources(st.sources || [], st.source_index || 0);
  setChecked($("vcam"), !!dev.vcam_wanted);
  setText("vcam-state", dev.vcam_device ? `on: ${dev.vcam_device}` : (dev.vcam_error || (dev.vcam_wanted ? "opening…" : "off")));
  toggleButton("record-video", dev.recording);
  setText("video-state", dev.recording ? `recording to ${dev.recording_path}` : (dev.last_recording ? `saved: ${dev.last_recording}` : ""));
  toggleButton("record-motion", dev.motion_recording);
  setText("motion-state", dev.motion_recording ? `recording to ${dev.motion_recording}` : (dev.last_motion ? `saved: ${dev.last_motion}` : ""));
  setText("input-state", dev.input_error ? dev.input_error : `now: ${dev.driving || ""}`);
  setText("settings-file", s.settings_file || "");
  setText("command", s.command || "");
}
const LABELS = { "record-video": ["Record video", "Stop recording"],
                 "record-motion": ["Record motion", "Stop motion recording"] };
// a click shows its new state at once and the status cannot undo it until the pipeline has applied it (at its
// next frame) or 3 s passed: otherwise a second click within a status period would repeat the first one
const pending = {};
function toggleButton(id, on) {
  const p = pending[id];
  if (p) { if (!!on === p[0] || performance.now() > p[1]) delete pending[id]; else on = p[0]; }
  const b = $(id);
  if (b.dataset.on === (on ? "1" : "") && b.textContent) return;
  b.textContent = LABELS[id][on ? 1 : 0]; b.classList.toggle("on", !!on); b.dataset.on = on ? "1" : "";
}
function toggleClick(id, action) {
  const want = !$(id).dataset.on;
  pending[id] = [want, performance.now() + 3000];
  toggleButton(id, want);
  act(action, { on: want });
}
function drawChart() {
  const c = $("chart"), g = c.getContext("2d"), w = c.width, h = c.height;
  g.clearRect(0, 0, w, h);
  const series = [[0, "#5fd38d"], [1, "#4fa3ff"]];
  for (const [k, color] of series) {
    const vals = panel.chart.map((p) => p[k]); const max = Math.max(1, ...vals) * 1.1;
    g.strokeStyle = color; g.beginPath();
    vals.forEach((v, i) => { const x = i * w / 119, y = h - v / max * h; i ? g.lineTo(x, y) : g.moveTo(x, y); });
    g.stroke();
  }
}
function buildOffsets(values) {
  if (panel.offsetsBuilt === values.length) return;
  panel.offsetsBuilt = values.length;
  const box = $("offsets"); box.innerHTML = "";
  values.forEach((v, i) => {
    const l = document.createElement("label");
    l.innerHTML = `<span>${i}</span><input id="offset-${i}" type="range" min="-3" max="3" step="0.05" value="${v}"><output id="offset-${i}-value"></output>`;
    box.appendChild(l);
    slider(l.querySelector("input"), (x) => act("set_offset", { index: i, value: x }));
  });
}
let shownSources = "";
function showSources(names, index) {
  const key = names.join("\n") + "#" + index;
  if (key === shownSources) return;
  shownSources = key;
  const box = $("thumbs"); box.innerHTML = "";
  names.forEach((name, i) => {
    const img = document.createElement("img");
    img.src = `api/thumb/${i}?token=${encodeURIComponent(TOKEN)}`; img.title = name; img.alt = `source ${i + 1}`;
    if (i === index) img.className = "selected";
    img.onclick = () => act("select_source", { index: i });
    box.appendChild(img);
  });
}

// a slider sends while dragged (at most every 100 ms) and once when let go
function slider(el, send) {
  let timer = null;
  el.addEventListener("input", () => {
    el.dataset.dragging = "1";
    if (!timer) timer = setTimeout(() => { timer = null; send(parseFloat(el.value)); }, 100);
  });
  el.addEventListener("change", () => { delete el.dataset.dragging; send(parseFloat(el.value)); });
}

// ---- controls ----
$("start").onclick = () => act("start");
$("stop").onclick = () => act("stop");
for (const r of document.getElementsByName("mode")) r.onchange = () => act("set_mode", { mode: r.value });
for (const r of document.getElementsByName("compose")) r.onchange = () => act("set_compose", { mode: r.value });
$("reference-now").onclick = () => act("reset_reference");
$("reference-auto").onchange = (e) => act("set_reference", { choice: e.target.checked ? "auto" : "first" });
$("passthrough").onchange = (e) => act("set_passthrough", { on: e.target.checked });
slider($("power"), (v) => act("set_power", { value: v }));
slider($("ease"), (v) => act("set_ease", { seconds: v }));
$("reset-offsets").onclick = (e) => { e.preventDefault(); act("reset_offsets"); };
$("vcam").onchange = (e) => act("set_vcam", { on: e.target.checked });
$("record-video").onclick = () => toggleClick("record-video", "record_video");
$("record-motion").onclick = () => toggleClick("record-motion", "record_motion");
$("show-command").onclick = () => { $("command").hidden = !$("command").hidden; };

async function upload(file) {
  if (!file) return;
  await post("api/source", file, { "X-File-Name": encodeURIComponent(file.name) }).catch(() => null);
}
$("upload").onchange = (e) => upload(e.target.files[0]);
const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); upload(e.dataTransfer.files[0]); });

async function loadCameras() {
  const r = await fetch(`api/cameras?token=${encodeURIComponent(TOKEN)}`);
  const cams = (await r.json()).cameras || [];
  const sel = $("camera"); sel.innerHTML = "";
  for (const c of cams) sel.add(new Option(`${c.index}: ${c.name}`, String(c.index)));
  sel.add(new Option("a video file…", "file"));
  const fill = () => {
    const cam = cams.find((c) => String(c.index) === sel.value);
    const res = $("resolution"); res.innerHTML = "";
    for (const s of (cam ? cam.resolutions : ["(the file's own)"])) res.add(new Option(s, s));
    if (cam) res.value = cam.resolutions.includes("1280x720") ? "1280x720" : cam.resolutions[0];
    $("file-row").hidden = sel.value !== "file";
  };
  sel.onchange = fill;
  const driving = (panel.state && panel.state.devices && panel.state.devices.driving) || "";
  sel.value = /^\d+$/.test(driving) && cams.some((c) => String(c.index) === driving) ? driving : "file";
  if (sel.value === "file") $("file-path").value = driving;
  fill();
}
$("apply-input").onclick = () => {
  const sel = $("camera"), fps = parseFloat($("camera-fps").value);
  const params = { driving: sel.value === "file" ? $("file-path").value : sel.value };
  const m = /^(\d+)x(\d+)$/.exec($("resolution").value);
  if (m) { params.width = parseInt(m[1], 10); params.height = parseInt(m[2], 10); }
  if (fps > 0) params.fps = fps;
  act("set_input", params);
};

// ---- the connection ----
function connect() {
  const ws = new WebSocket(`ws://${location.host}/ws?token=${encodeURIComponent(TOKEN)}&viewer=${VIEWER}`);
  let first = true;
  ws.onmessage = (ev) => {
    onStatus(JSON.parse(ev.data));
    if (first) { first = false; loadCameras(); startPreview(); }  // (again after a reconnect)
  };
  ws.onclose = () => {
    $("run-state").textContent = "disconnected"; $("run-state").className = "pill stopped";
    setTimeout(connect, 1000);
  };
}
connect();
