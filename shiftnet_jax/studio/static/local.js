// Local mode of the studio: inpaint in the browser with the exported ONNX pipeline
// (python -m shiftnet_jax.export --pipeline): uint8 image (1, S, S, 3) + uint8 mask
// (1, S, S, 1), nonzero = hole -> uint8 (1, S, S, 3), pasted back inside the graph.
// As inpaint.py: the photo is resized to the working size S, the result resized back
// and copied only into the original hole, so every known pixel stays the input's.
"use strict";

const VENDOR = "/static/vendor/";
const $ = (id) => document.getElementById(id);
const state = { session: null, size: 0, photo: null, width: 0, height: 0 };

function status(text, name) {
  $("status").textContent = text;
  if (name) document.body.dataset.state = name;
}

async function loadModel(source, size) {
  ort.env.wasm.wasmPaths = VENDOR + "onnxruntime-web/";
  ort.env.wasm.numThreads = 1;   // threads need cross-origin isolation; one is enough here
  state.session = await ort.InferenceSession.create(source, { executionProviders: ["wasm"] });
  const meta = state.session.inputMetadata && state.session.inputMetadata[0];
  state.size = size || (meta && meta.shape && Number(meta.shape[1])) || 0;
  if (!state.size) throw new Error("the model does not say its working size");
  status(`Model ready (working size ${state.size}). Open a photo.`, "ready");
  $("inpaint").disabled = !state.photo;
}

async function decode(file) {
  // Exact pixels: no colour-space conversion, no premultiplied alpha.
  const bitmap = await createImageBitmap(file, { colorSpaceConversion: "none", premultiplyAlpha: "none" });
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const ctx = canvas.getContext("2d", { colorSpace: "srgb" });
  ctx.drawImage(bitmap, 0, 0);
  return ctx.getImageData(0, 0, bitmap.width, bitmap.height);
}

function setPhoto(pixels) {
  state.photo = pixels; state.width = pixels.width; state.height = pixels.height;
  for (const id of ["photo", "mask", "result"]) { $(id).width = pixels.width; $(id).height = pixels.height; }
  $("photo").getContext("2d").putImageData(pixels, 0, 0);
  $("inpaint").disabled = !state.session;
  status("Paint the hole (or load a mask), then Inpaint.", "photo");
}

function setMask(pixels) {
  // The one mask rule of image_io: strength = max channel * alpha / 255; hole if > 0.
  const out = new ImageData(pixels.width, pixels.height), d = pixels.data;
  for (let i = 0; i < d.length; i += 4) {
    const hole = Math.max(d[i], d[i + 1], d[i + 2]) * d[i + 3] / 255 > 0;
    out.data[i] = 255; out.data[i + 3] = hole ? 255 : 0;
  }
  $("mask").getContext("2d").putImageData(out, 0, 0);
}

function holeBits() {
  const d = $("mask").getContext("2d").getImageData(0, 0, state.width, state.height).data;
  const hole = new Uint8Array(state.width * state.height);
  for (let i = 0; i < hole.length; i++) hole[i] = d[4 * i + 3] > 0 ? 1 : 0;
  return hole;
}

function toWorking(hole) {
  const s = state.size, w = state.width, h = state.height;
  const image = new Uint8Array(s * s * 3), mask = new Uint8Array(s * s);
  let rgba = state.photo.data;
  if (w !== s || h !== s) {   // resize (the browser's filter; the server uses OpenCV's)
    const c = new OffscreenCanvas(s, s), ctx = c.getContext("2d");
    ctx.imageSmoothingQuality = "high";
    ctx.drawImage($("photo"), 0, 0, s, s);
    rgba = ctx.getImageData(0, 0, s, s).data;
  }
  for (let i = 0; i < s * s; i++) for (let k = 0; k < 3; k++) image[3 * i + k] = rgba[4 * i + k];
  // A working pixel is a hole if any original pixel under it is (as inpaint.py).
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
    if (hole[y * w + x]) mask[Math.floor(y * s / h) * s + Math.floor(x * s / w)] = 1;
  }
  return { image, mask };
}

async function inpaint() {
  const hole = holeBits();
  const { image, mask } = toWorking(hole);
  const s = state.size, t0 = performance.now();
  status("Inpainting in this browser…", "running");
  const feeds = { image: new ort.Tensor("uint8", image, [1, s, s, 3]),
                  mask: new ort.Tensor("uint8", mask, [1, s, s, 1]) };
  const out = (await state.session.run(feeds))[state.session.outputNames[0]].data;
  const small = new ImageData(s, s);
  for (let i = 0; i < s * s; i++) {
    for (let k = 0; k < 3; k++) small.data[4 * i + k] = out[3 * i + k];
    small.data[4 * i + 3] = 255;
  }
  let filled = small;
  if (state.width !== s || state.height !== s) {
    const c = new OffscreenCanvas(s, s); c.getContext("2d").putImageData(small, 0, 0);
    const big = new OffscreenCanvas(state.width, state.height), ctx = big.getContext("2d");
    ctx.imageSmoothingQuality = "high";
    ctx.drawImage(c, 0, 0, state.width, state.height);
    filled = ctx.getImageData(0, 0, state.width, state.height);
  }
  const result = new ImageData(new Uint8ClampedArray(state.photo.data), state.width, state.height);
  for (let i = 0; i < hole.length; i++) {
    if (!hole[i]) continue;   // known pixels stay exactly the input's
    for (let k = 0; k < 3; k++) result.data[4 * i + k] = filled.data[4 * i + k];
  }
  $("result").getContext("2d").putImageData(result, 0, 0);
  $("download").href = $("result").toDataURL("image/png");
  $("download").hidden = false;
  status(`Done in ${Math.round(performance.now() - t0)} ms, on this machine.`, "done");
}

function brush() {
  const canvas = $("mask"), ctx = canvas.getContext("2d");
  let down = false;
  const paint = (e) => {
    if (!down) return;
    const r = canvas.getBoundingClientRect();
    const x = (e.clientX - r.left) * canvas.width / r.width, y = (e.clientY - r.top) * canvas.height / r.height;
    ctx.fillStyle = "rgb(255,0,0)";
    ctx.beginPath(); ctx.arc(x, y, Number($("brush-size").value) / 2, 0, 2 * Math.PI); ctx.fill();
  };
  canvas.addEventListener("pointerdown", (e) => { down = true; paint(e); });
  canvas.addEventListener("pointermove", paint);
  window.addEventListener("pointerup", () => { down = false; });
}

async function start() {
  brush();
  $("photo-file").addEventListener("change", async (e) => setPhoto(await decode(e.target.files[0])));
  $("mask-file").addEventListener("change", async (e) => setMask(await decode(e.target.files[0])));
  $("model-file").addEventListener("change", async (e) => {
    status("Loading the model…", "loading");
    await loadModel(new Uint8Array(await e.target.files[0].arrayBuffer()));
  });
  $("clear").addEventListener("click", () => $("mask").getContext("2d").clearRect(0, 0, state.width, state.height));
  $("inpaint").addEventListener("click", () => inpaint().catch((e) => status(`Error: ${e.message}`, "error")));
  const name = new URLSearchParams(location.search).get("model") || "demo";
  // The server says whether the built model is still the checkpoint it was exported from.
  const info = await (await fetch(`/api/local/${encodeURIComponent(name)}`)).json();
  if (!info.size) throw new Error(info.problem || `no local model ${name}`);
  if (info.problem) {
    $("warning").textContent = `Warning: ${info.problem}.`;
    $("warning").hidden = false;
    document.body.dataset.stale = "true";
  }
  await loadModel(`${VENDOR}models/${encodeURIComponent(name)}.onnx`, info.size);
}

const BUILD = "python -m shiftnet_jax.studio.build_local";
start().catch((e) => status(`Error: ${e.message}` + (e.message.includes(BUILD) ? "" : ` (run ${BUILD})`), "error"));
