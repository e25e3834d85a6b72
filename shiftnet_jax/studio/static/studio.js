// Shift-Net studio: paint a hole, inpaint it on the server, show where each patch came from.
// Plain script, no build step. The mask lives in a canvas at the photo's own size; edits are
// kept as a list of operations, so undo/redo replays them instead of storing bitmaps.
"use strict";

const $ = (id) => document.getElementById(id);
const num = (x) => String(Number(x.toPrecision(3)));   // 0.196, 12.3, 50
const HOLE = [255, 64, 96];                       // mask colour (any nonzero RGB is a hole)
const state = {
  file: null, name: "photo", url: null, W: 0, H: 0,
  ops: [], undone: [], tool: "brush", live: null,  // live: the stroke or rectangle being drawn
  result: null, resultURL: null, flow: null, flowAt: null, busy: false,
};
const photo = $("photo"), mask = $("mask"), maskCtx = mask.getContext("2d");

// ------------------------------------------------------------------ messages and progress
function showError(text) {
  $("message-text").textContent = text;
  $("message").hidden = false;
}
function hideError() { $("message").hidden = true; }

async function errorOf(response) {
  try { return (await response.json()).error || `${response.status} ${response.statusText}`; }
  catch { return `the server answered ${response.status} ${response.statusText}`; }
}

let progressTimer = null;
function progress(text) {
  clearInterval(progressTimer);
  $("progress").hidden = !text;
  $("result-hint").style.visibility = text ? "hidden" : "";
  if (!text) return;
  const start = performance.now();
  const tick = () => { $("progress-text").textContent = `${text} ${((performance.now() - start) / 1000).toFixed(1)} s`; };
  tick();
  progressTimer = setInterval(tick, 100);
}

// ------------------------------------------------------------------ loading a photo
async function loadPhoto(file) {
  let bitmap;
  try { bitmap = await createImageBitmap(file); }
  catch { return showError(`${file.name || "That file"} is not an image this browser can open.`); }
  hideError();
  Object.assign(state, { file, W: bitmap.width, H: bitmap.height, ops: [], undone: [] });
  state.name = (file.name || "photo").replace(/\.[^.]*$/, "") || "photo";
  if (state.url) URL.revokeObjectURL(state.url);
  state.url = URL.createObjectURL(file);
  for (const c of [photo, mask]) { c.width = state.W; c.height = state.H; }
  photo.getContext("2d").drawImage(bitmap, 0, 0);
  bitmap.close();
  clearResult();
  replay();
  $("input-stage").hidden = false;
  $("drop-hint").hidden = true;
  $("input-info").textContent = `${state.name} · ${state.W}×${state.H}`;
  layout();
}

async function loadMaskFile(file) {
  if (!state.file) return showError("Open a photo first, then its mask.");
  let bitmap;
  try { bitmap = await createImageBitmap(file, { premultiplyAlpha: "none", colorSpaceConversion: "none" }); }
  catch { return showError(`${file.name} is not an image this browser can open.`); }
  if (bitmap.width !== state.W || bitmap.height !== state.H) {
    return showError(`The mask is ${bitmap.width}×${bitmap.height} but the photo is ${state.W}×${state.H}.`);
  }
  const c = Object.assign(document.createElement("canvas"), { width: state.W, height: state.H });
  const ctx = c.getContext("2d");
  ctx.drawImage(bitmap, 0, 0);
  const img = ctx.getImageData(0, 0, state.W, state.H), d = img.data;
  for (let i = 0; i < d.length; i += 4) {       // the server's rule: nonzero and not transparent
    const hole = (d[i] || d[i + 1] || d[i + 2]) && d[i + 3];
    d.set(hole ? [...HOLE, 255] : [0, 0, 0, 0], i);
  }
  ctx.putImageData(img, 0, 0);
  commit({ kind: "image", canvas: c });
  hideError();
}

// ------------------------------------------------------------------ layout
function fit(stage, frame) {
  const scale = Math.min(frame.clientWidth / state.W, frame.clientHeight / state.H);
  const w = Math.max(1, Math.floor(state.W * scale)), h = Math.max(1, Math.floor(state.H * scale));
  Object.assign(stage.style, { width: `${w}px`, height: `${h}px` });
  for (const c of stage.querySelectorAll("canvas[id$=overlay]")) {
    c.width = Math.round(w * devicePixelRatio); c.height = Math.round(h * devicePixelRatio);
  }
}
function layout() {
  if (!state.file) return;
  fit($("input-stage"), $("input-frame"));
  fit($("result-stage"), $("result-frame"));
}
window.addEventListener("resize", layout);

// Pointer position -> photo pixel coordinates (floating point).
function toPhoto(ev, element) {
  const r = element.getBoundingClientRect();
  return [(ev.clientX - r.left) * state.W / r.width, (ev.clientY - r.top) * state.H / r.height];
}

// ------------------------------------------------------------------ the mask and its history
function drawOp(ctx, op) {
  ctx.save();
  ctx.globalCompositeOperation = op.erase ? "destination-out" : "source-over";
  ctx.fillStyle = ctx.strokeStyle = `rgb(${HOLE})`;
  if (op.kind === "clear") ctx.clearRect(0, 0, state.W, state.H);
  if (op.kind === "image") { ctx.clearRect(0, 0, state.W, state.H); ctx.drawImage(op.canvas, 0, 0); }
  if (op.kind === "rect") {
    ctx.fillRect(Math.min(op.x0, op.x1), Math.min(op.y0, op.y1), Math.abs(op.x1 - op.x0), Math.abs(op.y1 - op.y0));
  }
  if (op.kind === "stroke") {
    Object.assign(ctx, { lineWidth: op.size, lineCap: "round", lineJoin: "round" });
    ctx.beginPath();
    const [x0, y0] = op.points[0];
    ctx.moveTo(x0, y0);
    for (const [x, y] of op.points.length > 1 ? op.points.slice(1) : [[x0 + 0.01, y0]]) ctx.lineTo(x, y);
    ctx.stroke();
  }
  ctx.restore();
}
function replay() {
  maskCtx.clearRect(0, 0, state.W, state.H);
  for (const op of state.ops) drawOp(maskCtx, op);
  updateButtons();
}
function commit(op) { state.ops.push(op); state.undone = []; replay(); }
function undo() { if (state.ops.length) { state.undone.push(state.ops.pop()); replay(); } }
function redo() { if (state.undone.length) { state.ops.push(state.undone.pop()); replay(); } }
function clearMask() { if (state.ops.length) commit({ kind: "clear" }); }

function maskIsEmpty() {
  const d = maskCtx.getImageData(0, 0, state.W, state.H).data;
  for (let i = 3; i < d.length; i += 4) if (d[i]) return false;
  return true;
}

function updateButtons() {
  $("undo").disabled = !state.ops.length;
  $("redo").disabled = !state.undone.length;
  $("clear").disabled = !state.ops.length;
  $("inpaint").disabled = !state.file || state.busy;
  $("keep").disabled = !state.result || state.busy;
  $("show-sources").disabled = !state.flow;
  $("download").setAttribute("aria-disabled", String(!state.result));
}

// Painting: strokes are drawn straight into the mask canvas and replayed on undo.
const inputOverlay = $("input-overlay");
function brushPx() {   // the size slider is in screen pixels; strokes are stored in photo pixels
  return Number($("brush-size").value) * state.W / inputOverlay.getBoundingClientRect().width;
}
inputOverlay.addEventListener("pointerdown", (ev) => {
  if (ev.button !== 0 || !state.file) return;
  inputOverlay.setPointerCapture(ev.pointerId);
  const [x, y] = toPhoto(ev, inputOverlay);
  state.live = state.tool === "rect" ? { kind: "rect", x0: x, y0: y, x1: x, y1: y }
    : { kind: "stroke", erase: state.tool === "eraser", size: brushPx(), points: [[x, y]] };
  if (state.live.kind === "stroke") drawOp(maskCtx, state.live);
});
inputOverlay.addEventListener("pointermove", (ev) => {
  const [x, y] = toPhoto(ev, inputOverlay);
  const op = state.live;
  if (op && op.kind === "stroke") {
    const [px, py] = op.points[op.points.length - 1];
    op.points.push([x, y]);
    drawOp(maskCtx, { ...op, points: [[px, py], [x, y]] });
  } else if (op) { op.x1 = x; op.y1 = y; }
  drawCursor(ev);
});
function endLive() {
  if (!state.live) return;
  const op = state.live;
  state.live = null;
  if (op.kind === "stroke" || Math.abs(op.x1 - op.x0) >= 1 && Math.abs(op.y1 - op.y0) >= 1) commit(op);
  else replay();
}
inputOverlay.addEventListener("pointerup", endLive);
inputOverlay.addEventListener("pointercancel", endLive);
inputOverlay.addEventListener("pointerleave", () => clearOverlay(inputOverlay));

function clearOverlay(c) { c.getContext("2d").clearRect(0, 0, c.width, c.height); }
function drawCursor(ev) {   // the brush outline, or the rectangle being dragged
  const ctx = inputOverlay.getContext("2d"), r = inputOverlay.getBoundingClientRect();
  const k = inputOverlay.width / r.width, x = (ev.clientX - r.left) * k, y = (ev.clientY - r.top) * k;
  clearOverlay(inputOverlay);
  ctx.lineWidth = devicePixelRatio;
  ctx.strokeStyle = "rgba(255,255,255,0.9)";
  ctx.setLineDash([4 * devicePixelRatio, 3 * devicePixelRatio]);
  if (state.live && state.live.kind === "rect") {
    const s = inputOverlay.width / state.W, o = state.live;
    ctx.fillStyle = `rgba(${HOLE},${$("mask-opacity").value / 100})`;
    ctx.fillRect(o.x0 * s, o.y0 * s, (o.x1 - o.x0) * s, (o.y1 - o.y0) * s);
    ctx.strokeRect(o.x0 * s, o.y0 * s, (o.x1 - o.x0) * s, (o.y1 - o.y0) * s);
  } else if (state.tool !== "rect") {
    ctx.beginPath();
    ctx.arc(x, y, Number($("brush-size").value) * k / 2, 0, 2 * Math.PI);
    ctx.stroke();
  }
}

// ------------------------------------------------------------------ inpainting
function form(maskBlob) {
  const f = new FormData();
  f.append("image", state.file, state.file.name || "photo.png");
  f.append("mask", maskBlob, "mask.png");
  if ($("model").value) f.append("model", $("model").value);
  f.append("dilate", String(Math.max(0, Math.floor(Number($("dilate").value) || 0))));
  f.append("strategy", $("strategy").value);
  return f;
}

async function post(path, body) {
  let response;
  try { response = await fetch(path, { method: "POST", body }); }
  catch { throw new Error("Cannot reach the studio server. Is serve.py still running?"); }
  if (!response.ok) throw new Error(await errorOf(response));
  return response;
}

async function runInpaint() {
  if (state.busy) return;
  if (!state.file) return showError("Open a photo first.");
  if (maskIsEmpty()) return showError("Paint over the part of the photo that should go first (or open a mask file).");
  const limits = state.limits || {};   // refuse here what the server would refuse after the upload
  if (state.file.size > limits.max_upload_bytes * 0.95) {
    return showError(`This photo is ${num(state.file.size / 2 ** 20)} MB; the studio takes uploads up to `
      + `${num(limits.max_upload_bytes / 2 ** 20)} MB (serve.py --max-upload-mb).`);
  }
  if (state.W * state.H > limits.max_pixels) {
    return showError(`This photo has ${num(state.W * state.H / 1e6)} megapixels; the studio takes up to `
      + `${num(limits.max_pixels / 1e6)} (serve.py --max-megapixels).`);
  }
  hideError();
  state.busy = true;
  updateButtons();
  const maskBlob = await new Promise((resolve) => mask.toBlob(resolve, "image/png"));
  try {
    progress("Inpainting…");
    const blob = await (await post("/api/inpaint", form(maskBlob))).blob();
    clearResult();
    state.result = blob;
    state.resultURL = URL.createObjectURL(blob);
    showResult();
    progress("Tracing the shift…");
    state.flow = await (await post("/api/flow", form(maskBlob))).json();
    indexFlow();
    drawSources();
  } catch (e) {
    showError(e.message);
  } finally {
    progress(null);
    state.busy = false;
    updateButtons();
  }
}

function clearResult() {
  if (state.resultURL) URL.revokeObjectURL(state.resultURL);
  Object.assign(state, { result: null, resultURL: null, flow: null, flowAt: null });
  $("result-stage").hidden = true;
  $("result-hint").hidden = false;
  $("show-sources").checked = false;
  $("download").removeAttribute("href");
  $("shift-info").innerHTML = "&nbsp;";
  updateButtons();
}

function showResult() {
  $("before").src = state.url;
  $("after").src = state.resultURL;
  $("download").href = state.resultURL;
  $("download").download = `${state.name}_inpainted.png`;
  $("result-stage").hidden = false;
  $("result-hint").hidden = true;
  $("compare").value = 0;
  compare();
  layout();
}

function compare() {   // left of the divider: the input; right of it: the result
  const v = $("compare").value;
  $("after").style.clipPath = `inset(0 0 0 ${v}%)`;
  $("sources").style.clipPath = `inset(0 0 0 ${v}%)`;
  $("divider").style.left = `${v}%`;
}
$("compare").addEventListener("input", compare);

function keepResult() {
  if (!state.result) return;
  loadPhoto(new File([state.result], `${state.name}_inpainted.png`, { type: "image/png" }));
}

// ------------------------------------------------------------------ controls and shortcuts
function setTool(tool) {
  state.tool = tool;
  for (const b of document.querySelectorAll(".tool")) b.classList.toggle("active", b.dataset.tool === tool);
}
for (const b of document.querySelectorAll(".tool")) b.addEventListener("click", () => setTool(b.dataset.tool));

function setBrush(size) {
  const s = $("brush-size");
  s.value = Math.min(Number(s.max), Math.max(Number(s.min), size));
  $("brush-size-out").textContent = s.value;
}
$("brush-size").addEventListener("input", () => setBrush(Number($("brush-size").value)));
function setOpacity() {
  mask.style.opacity = $("mask-opacity").value / 100;
  $("mask-opacity-out").textContent = `${$("mask-opacity").value}%`;
}
$("mask-opacity").addEventListener("input", setOpacity);

$("undo").addEventListener("click", undo);
$("redo").addEventListener("click", redo);
$("clear").addEventListener("click", clearMask);
$("inpaint").addEventListener("click", runInpaint);
$("keep").addEventListener("click", keepResult);
$("message-close").addEventListener("click", hideError);
$("download").addEventListener("click", (ev) => { if (!state.result) ev.preventDefault(); });
$("photo-file").addEventListener("change", (ev) => { if (ev.target.files[0]) loadPhoto(ev.target.files[0]); ev.target.value = ""; });
$("mask-file").addEventListener("change", (ev) => { if (ev.target.files[0]) loadMaskFile(ev.target.files[0]); ev.target.value = ""; });

document.addEventListener("keydown", (ev) => {
  if (ev.target.matches("input[type=number], input[type=text], select")) return;
  if (ev.key === "Enter" && ev.target.matches("button, a, label")) return;  // Enter presses the focused control
  const key = ev.key.toLowerCase(), ctrl = ev.ctrlKey || ev.metaKey;
  const actions = ctrl ? {
    z: () => (ev.shiftKey ? redo() : undo()), y: redo, s: () => state.result && $("download").click(),
  } : {
    b: () => setTool("brush"), e: () => setTool("eraser"), r: () => setTool("rect"),
    "[": () => setBrush(Number($("brush-size").value) - 4), "]": () => setBrush(Number($("brush-size").value) + 4),
    delete: clearMask, enter: runInpaint, o: () => $("photo-file").click(),
    m: () => $("mask-file").click(),
    s: () => { if (state.flow) { $("show-sources").checked = !$("show-sources").checked; drawSources(); } },
  };
  if (actions[key]) { ev.preventDefault(); actions[key](); }
});

// Drop a photo anywhere on the page.
document.addEventListener("dragover", (ev) => { ev.preventDefault(); document.body.classList.add("dragging"); });
document.addEventListener("dragleave", (ev) => { if (!ev.relatedTarget) document.body.classList.remove("dragging"); });
document.addEventListener("drop", (ev) => {
  ev.preventDefault();
  document.body.classList.remove("dragging");
  const file = ev.dataTransfer.files[0];
  if (file) loadPhoto(file);
});

async function start() {
  setOpacity();
  updateButtons();
  try {
    const health = await (await fetch("/api/health")).json();
    state.limits = health.limits;
    if (health.default_strategy) $("strategy").value = health.default_strategy;
    for (const m of health.models) $("model").add(new Option(`${m.name} (${m.working_size} px)`, m.name));
    $("model-group").hidden = health.models.length < 2;
    $("server-info").textContent = `${health.models.length} model${health.models.length > 1 ? "s" : ""} · `
      + `uploads up to ${Math.round(health.limits.max_upload_bytes / 2 ** 20)} MB`;
  } catch {
    showError("Cannot reach the studio server. Is serve.py still running?");
  }
}
start();
