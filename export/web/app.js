// The web export's page: seed + truncation -> mapping.onnx -> synthesis.onnx -> canvas, in ONNX Runtime Web (WASM).
// The faces are those of `mobilestylegan-generate` and `python -m export.runtime` for the same seed and psi:
// seededZ (seeded_z.js) reproduces the toolkit's seeded latents, truncation and the uint8 conversion follow
// export/runtime.py in float32. URL parameters: ?seed=N&psi=X (a face as a link), &threads=T (WASM threads).
// Sliders move the face along the export's GANSpace directions (directions.json: strength x sigma x unit vector on
// every W+ entry, as mobilestylegan-edit does); a latent projected by mobilestylegan-project (.npy) can be loaded
// from the disk and edited the same way, in the page: nothing is uploaded.
// An export with an encoder graph adds "your photo": a photo read here (file picker or drag-and-drop), aligned as FFHQ
// was (faces.js, when the export carries the face models) or centre-cropped, at the student's resolution,
// block-averaged to the encoder's input (the manifest's encoder.preprocess), encoded to a W+ latent and rendered; the sliders then edit it, and "Save latent" writes it as a .npy for
// mobilestylegan-edit. Nothing leaves the page.
// window.msg is the page's programmatic interface (the toolkit's browser check and benchmark drive it).

import * as ort from "./ort/ort.wasm.min.mjs";
import { FaceAligner, NoFaceError } from "./faces.js";

const params = new URLSearchParams(location.search);
const $ = (id) => document.getElementById(id);
const f32 = Math.fround;

function threadCount() {
  const asked = parseInt(params.get("threads") ?? "", 10);
  if (asked >= 1) return asked;
  // Threads need SharedArrayBuffer, which needs a cross-origin isolated page (mobilestylegan-serve sends the headers).
  return self.crossOriginIsolated ? Math.max(1, Math.min(4, navigator.hardwareConcurrency || 1)) : 1;
}

// numpy's np.round (half to even) of a non-negative float.
function roundHalfEven(x) {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 === 1 ? r - 1 : r;
}

// [1, 3, R, R] float32 in about [-1, 1] -> RGBA bytes, as export.runtime.to_uint8: clip, (x + 1) * 127.5, round.
function toRGBA(img, size) {
  const hw = size * size;
  const out = new Uint8ClampedArray(hw * 4);
  const half = f32(127.5);
  for (let c = 0; c < 3; c++) {
    for (let i = 0; i < hw; i++) {
      const v = Math.min(1, Math.max(-1, img[c * hw + i]));
      out[i * 4 + c] = roundHalfEven(f32(f32(v + 1) * half));
    }
  }
  for (let i = 0; i < hw; i++) out[i * 4 + 3] = 255;
  return out;
}

function base64(typed) {
  const bytes = new Uint8Array(typed.buffer, typed.byteOffset, typed.byteLength);
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

// One session may run one inference at a time: every run goes through this queue.
let queue = Promise.resolve();
function serial(fn) {
  const run = queue.then(fn);
  queue = run.catch(() => {});
  return run;
}

class Faces {
  static async load() {
    const manifest = await (await fetch("manifest.json")).json();
    ort.env.wasm.wasmPaths = new URL("ort/", location.href).href;
    ort.env.wasm.numThreads = threadCount();
    ort.env.logLevel = "error";
    const options = { executionProviders: ["wasm"], graphOptimizationLevel: "all" };
    const g = manifest.graphs;
    const [mapping, synthesis, directions] = await Promise.all([
      ort.InferenceSession.create(g.mapping.files[0], options),
      ort.InferenceSession.create(g.synthesis.files[0], options),
      fetch("directions.json").then((r) => (r.ok ? r.json() : { directions: [] })),
    ]);
    return new Faces(manifest, mapping, synthesis, directions.directions);
  }

  constructor(manifest, mapping, synthesis, directions) {
    const m = manifest.model;
    this.manifest = manifest;
    this.zDim = m.z_dim;
    this.wDim = m.w_dim;
    this.numWs = m.num_ws;
    this.size = m.img_resolution;
    this.wplus = manifest.w_input === "wplus";
    this.wAvg = Float32Array.from(manifest.truncation.w_avg);
    this.mapping = mapping;
    this.synthesis = synthesis;
    this.io = (name) => [manifest.graphs[name].inputs[0].name, manifest.graphs[name].outputs[0].name];
    this.threads = ort.env.wasm.numThreads;
    this.directions = directions.map((d) => ({ name: d.name, sigma: d.sigma, vector: Float32Array.from(d.vector) }));
    this.encoderInfo = manifest.encoder?.included && manifest.graphs.encoder ? manifest.encoder : null;
    this.encoderSession = null;  // made on the first photo
    this.canAlign = !!(this.encoderInfo && manifest.faces?.included);
    this.alignerPromise = null;  // the face models, loaded on the first photo to align
  }

  aligner() {
    this.alignerPromise ??= FaceAligner.load(this.manifest, { executionProviders: ["wasm"], graphOptimizationLevel: "all" });
    return this.alignerPromise;
  }

  // The encoder: faces [1, 3, S, S] (see encoderInput) -> W+ [1, num_ws, w_dim], float32.
  async encode(x) {
    if (!this.encoderInfo) throw new Error("this export has no encoder (export with --encoder FILE)");
    const s = this.encoderInfo.input_size;
    if (x.length !== 3 * s * s) throw new Error(`the encoder takes [1, 3, ${s}, ${s}], got ${x.length} values`);
    this.encoderSession ??= await ort.InferenceSession.create(this.manifest.graphs.encoder.files[0],
                                                              { executionProviders: ["wasm"], graphOptimizationLevel: "all" });
    const [input, output] = this.io("encoder");
    const result = await this.encoderSession.run({ [input]: new ort.Tensor("float32", x, [1, 3, s, s]) });
    return Float32Array.from(result[output].data);
  }

  // The synthesis input for a latent: w [w_dim] tiled to W+ when the graph takes W+.
  entries(latent) {
    if (!this.wplus || latent.length !== this.wDim) return Float32Array.from(latent);
    const x = new Float32Array(this.numWs * this.wDim);
    for (let k = 0; k < this.numWs; k++) x.set(latent, k * this.wDim);
    return x;
  }

  // latent + sum_k strengths[k] * sigma_k * d_k on every entry, in float32 (as numpy does it, direction by direction).
  edit(latent, strengths) {
    const x = this.entries(latent);
    (strengths || []).forEach((s, k) => {
      if (!s) return;
      const d = this.directions[k];
      if (!d) throw new Error(`this export ships ${this.directions.length} directions; strength ${k} has none`);
      const coef = f32(s * d.sigma);
      for (let base = 0; base < x.length; base += this.wDim) {
        for (let j = 0; j < this.wDim; j++) x[base + j] = f32(x[base + j] + f32(coef * d.vector[j]));
      }
    });
    return x;
  }

  // A .npy file (little-endian float32 or float64; [1, num_ws, w_dim], [num_ws, w_dim], [1, w_dim] or [w_dim]).
  parseNpy(buffer) {
    const bytes = new Uint8Array(buffer);
    if (bytes[0] !== 0x93 || String.fromCharCode(...bytes.subarray(1, 6)) !== "NUMPY") throw new Error("not a .npy file");
    const major = bytes[6];
    const view = new DataView(buffer);
    const headerLen = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
    const start = major === 1 ? 10 : 12;
    const header = new TextDecoder().decode(bytes.subarray(start, start + headerLen));
    const descr = /'descr':\s*'([^']+)'/.exec(header)?.[1];
    const shape = (/'shape':\s*\(([^)]*)\)/.exec(header)?.[1] || "").split(",").map((s) => s.trim()).filter(Boolean).map(Number);
    if (/'fortran_order':\s*True/.test(header)) throw new Error("a Fortran-ordered .npy is not supported");
    const n = shape.reduce((a, b) => a * b, 1);
    const data = buffer.slice(start + headerLen);
    let values;
    if (descr === "<f4") values = new Float32Array(data, 0, n);
    else if (descr === "<f8") values = Float32Array.from(new Float64Array(data, 0, n));
    else throw new Error(`a .npy of dtype ${descr} is not a latent (float32 or float64 expected)`);
    if (n !== this.wDim && !(this.wplus && n === this.numWs * this.wDim)) {
      throw new Error(`this latent has shape [${shape}]; the page takes [1, ${this.numWs}, ${this.wDim}]`
                      + ` (a projected W+ latent of this generator) or [1, ${this.wDim}]`);
    }
    return Float32Array.from(values);
  }

  // w [w_dim] for a seed, truncated towards w_avg by psi (float32, as export.runtime's truncate).
  async w(seed, psi) {
    const [input, output] = this.io("mapping");
    const z = seededZ(seed, this.zDim);
    const result = await this.mapping.run({ [input]: new ort.Tensor("float32", z, [1, this.zDim]) });
    const w = Float32Array.from(result[output].data);
    if (psi !== 1) {
      const p = f32(psi);
      for (let i = 0; i < w.length; i++) w[i] = f32(this.wAvg[i] + f32(p * f32(w[i] - this.wAvg[i])));
    }
    return w;
  }

  // The synthesis input (see entries) -> image [1, 3, R, R] float32.
  async image(x) {
    const [input, output] = this.io("synthesis");
    const shape = this.wplus ? [1, this.numWs, this.wDim] : [1, this.wDim];
    if (x.length !== shape.reduce((a, b) => a * b)) throw new Error(`latent of ${x.length} values, expected [${shape}]`);
    const result = await this.synthesis.run({ [input]: new ort.Tensor("float32", x, shape) });
    return result[output].data;
  }
}

// ---- a photo -> the encoder's input -------------------------------------------------------------------------
const MAX_PHOTO_PIXELS = 40e6;  // larger photos are refused before decoding (a 40 MP RGBA bitmap is 160 MB)

class PhotoError extends Error {}

// A File or Blob -> an <img> holding it (only its header is read here); a clear PhotoError for what cannot be used.
function openPhoto(blob, name) {
  return new Promise((resolve, reject) => {
    const url = URL.createObjectURL(blob);
    const img = new Image();
    img.onload = () => {
      const [w, h] = [img.naturalWidth, img.naturalHeight];
      if (w * h > MAX_PHOTO_PIXELS) {
        URL.revokeObjectURL(url);
        reject(new PhotoError(`${name} is ${w}x${h} pixels (${(w * h / 1e6).toFixed(0)} MP); this page takes photos up to `
                              + `${MAX_PHOTO_PIXELS / 1e6} MP: shrink it first`));
      } else resolve({ img, url, width: w, height: h });
    };
    img.onerror = () => {
      URL.revokeObjectURL(url);
      reject(new PhotoError(`${name} is not an image this browser can read (use a PNG, JPEG or WebP photo)`));
    };
    img.src = url;
  });
}

// The largest centred square of a photo, resized to size x size ("high" quality) -> RGBA bytes.
async function centreSquare(photo, size) {
  const s = Math.min(photo.width, photo.height);
  const [left, top] = [Math.floor((photo.width - s) / 2), Math.floor((photo.height - s) / 2)];
  // Cropped first, then resized: Chromium resamples a crop-and-resize in one call at nearly nearest-neighbour
  // quality, a plain resize at "high" quality (an area average when shrinking).
  const square = await createImageBitmap(photo.img, left, top, s, s);
  const bitmap = await createImageBitmap(square, { resizeWidth: size, resizeHeight: size, resizeQuality: "high" });
  square.close();
  const canvas = new OffscreenCanvas(size, size);
  const ctx = canvas.getContext("2d");
  ctx.drawImage(bitmap, 0, 0);
  bitmap.close();
  return ctx.getImageData(0, 0, size, size).data;
}

// RGBA bytes of a size x size face -> the encoder's input [1, 3, S, S]: x / 127.5 - 1, then the mean of each block.
function encoderInput(rgba, size, s) {
  const k = size / s;
  const x = new Float32Array(3 * s * s);
  const half = f32(127.5);
  for (let c = 0; c < 3; c++) {
    for (let i = 0; i < s; i++) {
      for (let j = 0; j < s; j++) {
        let sum = 0;
        for (let a = 0; a < k; a++) {
          for (let b = 0; b < k; b++) sum += f32(f32(rgba[((i * k + a) * size + j * k + b) * 4 + c] / half) - 1);
        }
        x[(c * s + i) * s + j] = f32(sum / (k * k));
      }
    }
  }
  return x;
}

// A .npy (format 1.0, little-endian float32) of a latent [1, num_ws, w_dim].
function npyBytes(latent, numWs, wDim) {
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': (1, ${numWs}, ${wDim}), }`;
  header += " ".repeat(63 - ((10 + header.length) % 64)) + "\n";
  const out = new Uint8Array(10 + header.length + latent.byteLength);
  out.set([0x93, ...new TextEncoder().encode("NUMPY"), 1, 0]);
  new DataView(out.buffer).setUint16(8, header.length, true);
  out.set(new TextEncoder().encode(header), 10);
  out.set(new Uint8Array(latent.buffer, latent.byteOffset, latent.byteLength), 10 + header.length);
  return out;
}

// A photo (File or Blob) -> its crop (FFHQ-aligned with `align`, else the centre square), the encoder's input and
// its W+ latent, with the milliseconds of each stage.
async function encodePhoto(blob, name, align) {
  if (!faces.encoderInfo) throw new PhotoError("this export has no encoder: export with --encoder FILE");
  if (align && !faces.canAlign) throw new PhotoError("this export has no face models to align with");
  const t0 = performance.now();
  const photo = await openPhoto(blob, name);
  try {
    const t1 = performance.now();
    let rgba, found = null;
    const ms = { read: t1 - t0 };
    if (align) {
      const aligner = await faces.aligner();
      const bitmap = await createImageBitmap(photo.img);
      try {
        found = await serial(() => aligner.align(bitmap, faces.size));
      } catch (err) {
        if (err instanceof NoFaceError) throw new PhotoError(`${name}: ${err.message}`);
        throw err;
      } finally {
        bitmap.close();
      }
      rgba = found.rgba;
      Object.assign(ms, found.ms);
    } else {
      rgba = await centreSquare(photo, faces.size);
      ms.crop = performance.now() - t1;
    }
    const t2 = performance.now();
    const x = encoderInput(rgba, faces.size, faces.encoderInfo.input_size);
    const latent = await serial(() => faces.encode(x));
    ms.encoder = performance.now() - t2;
    return { rgba, x, latent, width: photo.width, height: photo.height, ms,
             points: found?.points ?? null, quad: found?.quad ?? null };
  } finally {
    URL.revokeObjectURL(photo.url);
  }
}

function draw(img, size) {
  const canvas = $("face");
  canvas.width = canvas.height = size;
  const ctx = canvas.getContext("2d");
  ctx.putImageData(new ImageData(toRGBA(img, size), size, size), 0, 0);
  return ctx.getImageData(0, 0, size, size).data;  // what the page shows
}

let faces = null;

// Render one seed at one psi (and edit strengths) onto the canvas; returns the float image, the shown pixels and
// the times.
function render(seed, psi, strengths) {
  return serial(async () => {
    const t0 = performance.now();
    const w = await faces.w(seed, psi);
    const t1 = performance.now();
    const img = await faces.image(faces.edit(w, strengths));
    const t2 = performance.now();
    const pixels = draw(img, faces.size);
    return { img, pixels, mappingMs: t1 - t0, synthesisMs: t2 - t1, ms: t2 - t0 };
  });
}

// Render a loaded latent (edited by strengths).
function renderLatent(latent, strengths) {
  return serial(async () => {
    const t0 = performance.now();
    const img = await faces.image(faces.edit(latent, strengths));
    const t1 = performance.now();
    return { img, pixels: draw(img, faces.size), mappingMs: 0, synthesisMs: t1 - t0, ms: t1 - t0 };
  });
}

function fromBase64(b64) {
  const bin = atob(b64);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return bytes;
}

function renderNpy(b64, strengths) {
  return renderLatent(faces.parseNpy(fromBase64(b64).buffer), strengths);
}

// ---- the controls ------------------------------------------------------------------------------------------
let wanted = null;
let drawing = false;
let loaded = null;  // { name, latent } once a .npy is loaded or a photo encoded; null: the face comes from the seed
let photoShown = null;  // resolves usePhoto's wait for its face (or the render's error)
let lastShown = null;  // the last render: { img, pixels, ... }

function strengths() {
  return faces.directions.map((_, k) => parseFloat($(`dir${k}`)?.value ?? "0"));  // no sliders under ?check
}

function show(seed, psi) {
  wanted = { seed, psi, strengths: strengths(), loaded };
  if (drawing) return;  // the loop below picks up the latest request
  drawing = true;
  (async () => {
    try {
      while (wanted) {
        const { seed: s, psi: p, strengths: e, loaded: l } = wanted;
        wanted = null;
        const r = l ? await renderLatent(l.latent, e) : await render(s, p, e);
        lastShown = r;
        $("timing").textContent = `${r.ms.toFixed(0)} ms per image (mapping ${r.mappingMs.toFixed(1)} ms, synthesis `
          + `${r.synthesisMs.toFixed(0)} ms), ${faces.threads} WASM thread${faces.threads > 1 ? "s" : ""}`;
        const edited = e.some((x) => x !== 0);
        const url = new URL(location.href);
        url.searchParams.set("seed", s);
        url.searchParams.set("psi", p);
        if (edited) url.searchParams.set("edit", e.join(","));
        else url.searchParams.delete("edit");
        history.replaceState(null, "", url);
        const moved = e.map((x, k) => [k, x]).filter(([, x]) => x !== 0);
        const base = l ? `mobilestylegan-edit ${l.name}` : `mobilestylegan-edit --seeds ${s} --trunc ${p}`;
        $("cli").textContent = moved.length === 1
          ? `${base} --generator SOURCE --direction ${faces.directions[moved[0][0]].name} --strength=${moved[0][1]}`
          : moved.length ? `${base} --generator SOURCE ... (${moved.length} directions at once: one per command there)`
          : l ? `${base} --generator SOURCE --direction ganspace:0 --strength=0`
          : `mobilestylegan-generate SOURCE --seeds ${s} --trunc ${p}`;
        $("status").textContent = (l ? `latent ${l.name}` : `seed ${s}, psi ${p}`)
          + (edited ? `, edits ${e.join(",")}` : "");
        $("status").className = "";
        if (l && photoShown) {
          photoShown(r);
          photoShown = null;
        }
      }
    } catch (err) {
      fail(err);
      if (photoShown) {
        photoShown(err);
        photoShown = null;
      }
    } finally {
      drawing = false;
    }
  })();
}

function fail(err) {
  $("status").textContent = `error: ${err.message ?? err}`;
  $("status").className = "error";
}

// "your photo": encode it, show it, and let the sliders edit it. Errors are one line in #photo-status; the page
// keeps its current face.
async function usePhoto(file, name, align = faces.canAlign && ($("photo-align")?.checked ?? true)) {
  const status = $("photo-status");
  status.className = "";
  status.textContent = `reading ${name}\u2026`;
  try {
    const t0 = performance.now();
    const r = await encodePhoto(file, name, align);
    const preview = $("photo-crop");
    preview.width = preview.height = faces.size;
    preview.getContext("2d").putImageData(new ImageData(r.rgba, faces.size, faces.size), 0, 0);
    loaded = { name: name.replace(/\.[^.]*$/, "") + ".npy", latent: r.latent, photo: name };
    $("save-latent").disabled = false;
    const stages = align ? `find the face ${r.ms.find.toFixed(0)} ms, align ${r.ms.align.toFixed(0)} ms`
                         : `crop and resize ${r.ms.crop.toFixed(0)} ms`;
    status.textContent = `${name} (${r.width}x${r.height}, ${align ? "aligned" : "centre-cropped"}): read `
      + `${r.ms.read.toFixed(0)} ms, ${stages}, encoder ${r.ms.encoder.toFixed(0)} ms`;
    const done = new Promise((resolve) => { photoShown = resolve; });
    $("psi-value").textContent = parseFloat($("psi").value).toFixed(2);
    show(parseInt($("seed").value, 10) >>> 0, parseFloat($("psi").value));
    const shown = await done;
    if (shown instanceof Error) throw shown;
    r.ms.synthesis = shown.synthesisMs;
    r.ms.total = performance.now() - t0;
    status.textContent += `, synthesis ${shown.synthesisMs.toFixed(0)} ms; photo to face ${r.ms.total.toFixed(0)} ms`;
    return { ...r, img: shown.img, pixels: shown.pixels, status: status.textContent };
  } catch (err) {
    status.className = "error";
    status.textContent = err instanceof PhotoError ? err.message : `error: ${err.message ?? err}`;
    return { error: status.textContent };
  }
}


// The latent as shown (edits applied) as a .npy download.
function saveLatent() {
  if (!loaded) return null;
  const bytes = npyBytes(faces.edit(loaded.latent, strengths()), faces.numWs, faces.wDim);
  const a = Object.assign(document.createElement("a"), { download: loaded.name,
                                                          href: URL.createObjectURL(new Blob([bytes])) });
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
  return bytes;
}

function controls() {
  const seedBox = $("seed");
  const psiBox = $("psi");
  const seed = parseInt(params.get("seed") ?? "0", 10);
  const psi = parseFloat(params.get("psi") ?? psiBox.value);
  seedBox.value = Number.isInteger(seed) && seed >= 0 ? seed : 0;
  psiBox.value = Number.isFinite(psi) ? psi : 0.7;
  const given = (params.get("edit") || "").split(",").map(parseFloat);
  const box = $("sliders");
  faces.directions.forEach((d, k) => {
    const label = document.createElement("label");
    label.htmlFor = `dir${k}`;
    label.textContent = d.name;
    const slider = Object.assign(document.createElement("input"), { type: "range", id: `dir${k}`, min: -3, max: 3,
                                                                     step: 0.1, value: Number.isFinite(given[k]) ? given[k] : 0 });
    const value = Object.assign(document.createElement("output"), { id: `dir${k}-value` });
    value.textContent = parseFloat(slider.value).toFixed(1);
    slider.addEventListener("input", () => {
      value.textContent = parseFloat(slider.value).toFixed(1);
      update();
    });
    box.append(label, slider, value);
  });
  const current = () => [parseInt(seedBox.value, 10) >>> 0, parseFloat(psiBox.value)];
  const update = () => {
    $("psi-value").textContent = parseFloat(psiBox.value).toFixed(2);
    show(...current());
  };
  seedBox.addEventListener("change", () => { loaded = null; update(); });
  psiBox.addEventListener("input", update);
  $("new").addEventListener("click", () => {
    loaded = null;
    seedBox.value = crypto.getRandomValues(new Uint32Array(1))[0] >>> 1;
    update();
  });
  $("latent-file").addEventListener("change", async (event) => {
    const file = event.target.files[0];
    if (!file) return;
    try {
      loaded = { name: file.name, latent: faces.parseNpy(await file.arrayBuffer()) };
      update();
    } catch (err) {
      fail(err);
    }
  });
  $("use-seed").addEventListener("click", () => { loaded = null; $("save-latent").disabled = true; update(); });
  if (faces.encoderInfo) {
    $("photo").hidden = false;
    $("photo-align-label").hidden = !faces.canAlign;
    $("photo-file").addEventListener("change", (event) => {
      const file = event.target.files[0];
      if (file) usePhoto(file, file.name);
    });
    document.addEventListener("dragover", (event) => event.preventDefault());
    document.addEventListener("drop", (event) => {
      event.preventDefault();
      const file = event.dataTransfer.files[0];
      if (file) usePhoto(file, file.name);
    });
    $("save-latent").addEventListener("click", saveLatent);
  }
  update();
}

// The harness's entry points for a photo: the same path as the page's controls.
function photoFromBase64(b64, name, align) {
  return usePhoto(new Blob([fromBase64(b64)]), name, align ?? faces.canAlign);
}

async function encodeBase64(b64) {
  const x = new Float32Array(fromBase64(b64).buffer);
  const t0 = performance.now();
  const latent = await serial(() => faces.encode(x));
  return { latent, ms: performance.now() - t0 };
}

const ready = Faces.load().then((loaded) => {
  faces = loaded;
  const m = faces.manifest;
  $("model").textContent = `${faces.size}px, ${m.precision}, ${faces.threads} thread${faces.threads > 1 ? "s" : ""}`;
  if (!params.has("check")) controls();  // ?check: a harness drives the page (no initial render)
  return { size: faces.size, zDim: faces.zDim, threads: faces.threads, isolated: self.crossOriginIsolated,
           directions: faces.directions.length, wplus: faces.wplus, encoder: !!faces.encoderInfo,
           align: faces.canAlign };
});
ready.catch(fail);

window.msg = { ready, render, renderLatent, renderNpy, base64, toRGBA, encodeBase64, photoFromBase64, saveLatent,
               npyBytes };
