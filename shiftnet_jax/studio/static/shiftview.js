// Shift-Net studio, the shift made visible: where every filled position copied its feature from.
// Uses the globals of studio.js (state, $, the overlays); data from POST /api/flow: one grid per
// window (the part of the photo the network saw: the whole photo, or one crop per hole).
"use strict";

// Same colours as inpaint.py --flow: red grows with x, green with y, blue = 1 - (x + y) / 2.
function positionColour(y, x, g) {
  const ny = y / Math.max(g.height - 1, 1), nx = x / Math.max(g.width - 1, 1);
  return [nx, ny, 1 - (nx + ny) / 2].map((c) => Math.round(255 * c));
}

function indexFlow() {
  const key = (w, p) => p.y * w.grid.width + p.x;
  state.flowAt = state.flow.windows.map((w) => new Map(w.positions.map((p) => [key(w, p), p])));
  state.partlyAt = state.flow.windows.map((w) => new Map(w.partly_painted.map((p) => [key(w, p), p])));
  const holes = state.flow.windows.reduce((n, w) => n + w.positions.length, 0);
  const partly = state.flow.windows.reduce((n, w) => n + w.partly_painted.length, 0);
  const n = state.flow.windows.length;
  $("shift-info").textContent = `${holes} hole positions in ${n} window${n === 1 ? "" : "s"} `
    + `(framing: ${state.flow.strategy})` + (partly ? `; ${partly} partly painted positions were counted as `
    + "known at the shift layer (dashed when the sources are shown): their own features are kept "
    + "and arrows may start there" : "");
}

function drawSources() {
  const f = state.flow, c = $("sources");
  const scale = Math.min(1, 1024 / Math.max(f.image.width, f.image.height));
  Object.assign(c, { width: Math.round(f.image.width * scale), height: Math.round(f.image.height * scale) });
  const ctx = c.getContext("2d");
  ctx.clearRect(0, 0, c.width, c.height);
  f.windows.forEach((w, k) => {
    const g = w.grid, cw = w.cell.width * scale, ch = w.cell.height * scale;
    for (let y = 0; y < g.height; y++) {
      for (let x = 0; x < g.width; x++) {
        const p = state.flowAt[k].get(y * g.width + x);
        const colour = p ? (p.source ? positionColour(...p.source, g) : [0, 0, 0]) : positionColour(y, x, g);
        ctx.fillStyle = `rgba(${colour.join(",")},${p ? 1 : 0.5})`;   // known cells half, as in the flow image
        const x0 = (w.origin.x * scale) + x * cw, y0 = (w.origin.y * scale) + y * ch;
        ctx.fillRect(Math.floor(x0), Math.floor(y0), Math.ceil(cw), Math.ceil(ch));
        if (state.partlyAt[k].has(y * g.width + x)) {   // painted in part, yet known to the shift
          ctx.setLineDash([2, 2]); ctx.lineWidth = 1; ctx.strokeStyle = "#ffffff";
          ctx.strokeRect(x0 + 0.5, y0 + 0.5, cw - 1, ch - 1);
          ctx.setLineDash([]);
        }
      }
    }
  });
  c.hidden = !$("show-sources").checked;
}
$("show-sources").addEventListener("change", () => { if (state.flow) drawSources(); });

// Hovering over the result: an arrow from the source cell to the hovered hole cell, on both panes.
function cellBox(overlay, w, y, x) {
  const f = state.flow, sx = overlay.width / f.image.width, sy = overlay.height / f.image.height;
  return { x: (w.origin.x + x * w.cell.width) * sx, y: (w.origin.y + y * w.cell.height) * sy,
           w: w.cell.width * sx, h: w.cell.height * sy };
}

function drawArrow(overlay, w, p) {
  const ctx = overlay.getContext("2d"), d = devicePixelRatio;
  clearOverlay(overlay);
  const to = cellBox(overlay, w, p.y, p.x);
  const box = (b, colour) => {
    ctx.lineWidth = 3 * d; ctx.strokeStyle = "rgba(0,0,0,0.7)"; ctx.strokeRect(b.x, b.y, b.w, b.h);
    ctx.lineWidth = 1.5 * d; ctx.strokeStyle = colour; ctx.strokeRect(b.x, b.y, b.w, b.h);
  };
  box(to, "#ffd54a");
  if (!p.source) return;
  const from = cellBox(overlay, w, ...p.source);
  box(from, "#4ae3ff");
  const [x0, y0, x1, y1] = [from.x + from.w / 2, from.y + from.h / 2, to.x + to.w / 2, to.y + to.h / 2];
  const angle = Math.atan2(y1 - y0, x1 - x0), head = 10 * d;
  for (const [width, colour] of [[4.5 * d, "rgba(0,0,0,0.7)"], [2 * d, "#ffffff"]]) {
    ctx.lineWidth = width; ctx.strokeStyle = ctx.fillStyle = colour;
    ctx.beginPath(); ctx.moveTo(x0, y0); ctx.lineTo(x1, y1); ctx.stroke();
    ctx.beginPath(); ctx.moveTo(x1, y1);
    ctx.lineTo(x1 - head * Math.cos(angle - 0.45), y1 - head * Math.sin(angle - 0.45));
    ctx.lineTo(x1 - head * Math.cos(angle + 0.45), y1 - head * Math.sin(angle + 0.45));
    ctx.closePath(); ctx.fill();
  }
}

const resultOverlay = $("result-overlay");
resultOverlay.addEventListener("pointermove", (ev) => {
  if (!state.flow) return;
  const [px, py] = toPhoto(ev, resultOverlay), f = state.flow;
  const k = f.windows.findIndex((w) => px >= w.origin.x && px < w.origin.x + w.size.width
    && py >= w.origin.y && py < w.origin.y + w.size.height);
  const clear = () => { for (const o of [resultOverlay, inputOverlay]) clearOverlay(o); };
  if (k < 0) {
    clear();
    $("shift-info").textContent = "outside every window: the network did not see this part; kept as it was";
    return;
  }
  const w = f.windows[k];
  const y = Math.floor((py - w.origin.y) / w.cell.height), x = Math.floor((px - w.origin.x) / w.cell.width);
  const p = state.flowAt[k].get(y * w.grid.width + x), partly = state.partlyAt[k].get(y * w.grid.width + x);
  const grid = ` (window ${k + 1} of ${f.windows.length}, shift grid ${w.grid.width} wide, ${w.grid.height} high)`;
  if (!p) {
    clear();
    $("shift-info").textContent = partly
      ? `partly painted position y=${y}, x=${x} (${Math.round(100 * partly.painted)}% painted): counted as `
        + `known at the shift layer, so its own feature is kept and others may copy from it${grid}`
      : `known position y=${y}, x=${x}: kept as it was${grid}`;
    return;
  }
  for (const o of [resultOverlay, inputOverlay]) drawArrow(o, w, p);
  $("shift-info").textContent = p.source
    ? `hole position y=${p.y}, x=${p.x} ← feature copied from y=${p.source[0]}, x=${p.source[1]}${grid}`
    : `hole position y=${p.y}, x=${p.x}: nothing known to copy from${grid}`;
});
resultOverlay.addEventListener("pointerleave", () => {
  for (const o of [resultOverlay, inputOverlay]) clearOverlay(o);
});
