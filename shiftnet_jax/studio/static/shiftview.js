// Shift-Net studio, the shift made visible: where every filled position copied its feature from.
// Uses the globals of studio.js (state, $, the overlays); data from POST /api/flow.
"use strict";

// Same colours as inpaint.py --flow: red grows with x, green with y, blue = 1 - (x + y) / 2.
function positionColour(y, x, g) {
  const ny = y / Math.max(g.height - 1, 1), nx = x / Math.max(g.width - 1, 1);
  return [nx, ny, 1 - (nx + ny) / 2].map((c) => Math.round(255 * c));
}

function indexFlow() {
  state.flowAt = new Map(state.flow.positions.map((p) => [p.y * state.flow.grid.width + p.x, p]));
}

function drawSources() {
  const g = state.flow.grid, c = $("sources");
  Object.assign(c, { width: g.width, height: g.height });
  const img = new ImageData(g.width, g.height);
  for (let y = 0; y < g.height; y++) {
    for (let x = 0; x < g.width; x++) {
      const p = state.flowAt.get(y * g.width + x), i = 4 * (y * g.width + x);
      const colour = p ? (p.source ? positionColour(...p.source, g) : [0, 0, 0]) : positionColour(y, x, g);
      img.data.set([...colour, p ? 255 : 128], i);   // known cells half, as in the flow image
    }
  }
  c.getContext("2d").putImageData(img, 0, 0);
  c.hidden = !$("show-sources").checked;
}
$("show-sources").addEventListener("change", () => { if (state.flow) drawSources(); });

// Hovering over the result: an arrow from the source cell to the hovered hole cell, on both panes.
function cellBox(overlay, y, x) {
  const f = state.flow, sx = overlay.width / f.image.width, sy = overlay.height / f.image.height;
  return { x: x * f.cell.width * sx, y: y * f.cell.height * sy, w: f.cell.width * sx, h: f.cell.height * sy };
}

function drawArrow(overlay, p) {
  const ctx = overlay.getContext("2d"), d = devicePixelRatio;
  clearOverlay(overlay);
  const to = cellBox(overlay, p.y, p.x);
  const box = (b, colour) => {
    ctx.lineWidth = 3 * d; ctx.strokeStyle = "rgba(0,0,0,0.7)"; ctx.strokeRect(b.x, b.y, b.w, b.h);
    ctx.lineWidth = 1.5 * d; ctx.strokeStyle = colour; ctx.strokeRect(b.x, b.y, b.w, b.h);
  };
  box(to, "#ffd54a");
  if (!p.source) return;
  const from = cellBox(overlay, ...p.source);
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
  const y = Math.floor(py / f.cell.height), x = Math.floor(px / f.cell.width);
  const p = state.flowAt.get(y * f.grid.width + x);
  const grid = ` (shift grid ${f.grid.width} wide, ${f.grid.height} high)`;
  if (!p) {
    for (const o of [resultOverlay, inputOverlay]) clearOverlay(o);
    $("shift-info").textContent = `known position y=${y}, x=${x}: kept as it was${grid}`;
    return;
  }
  for (const o of [resultOverlay, inputOverlay]) drawArrow(o, p);
  $("shift-info").textContent = p.source
    ? `hole position y=${p.y}, x=${p.x} ← feature copied from y=${p.source[0]}, x=${p.source[1]}${grid}`
    : `hole position y=${p.y}, x=${p.x}: nothing known to copy from${grid}`;
});
resultOverlay.addEventListener("pointerleave", () => {
  for (const o of [resultOverlay, inputOverlay]) clearOverlay(o);
});
