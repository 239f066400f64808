// The web export's page: seed + truncation -> mapping.onnx -> synthesis.onnx -> canvas, in ONNX Runtime Web (WASM).
// The faces are those of `mobilestylegan-generate` and `python -m export.runtime` for the same seed and psi:
// seededZ (seeded_z.js) reproduces the toolkit's seeded latents, truncation and the uint8 conversion follow
// export/runtime.py in float32. URL parameters: ?seed=N&psi=X (a face as a link), &threads=T (WASM threads).
// window.msg is the page's programmatic interface (the toolkit's browser check and benchmark drive it).

import * as ort from "./ort/ort.wasm.min.mjs";

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
    const [mapping, synthesis] = await Promise.all([
      ort.InferenceSession.create(g.mapping.files[0], options),
      ort.InferenceSession.create(g.synthesis.files[0], options),
    ]);
    return new Faces(manifest, mapping, synthesis);
  }

  constructor(manifest, mapping, synthesis) {
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

  // w [w_dim] or ws [num_ws * w_dim] -> image [1, 3, R, R] float32.
  async image(latent) {
    const [input, output] = this.io("synthesis");
    let x = latent;
    if (this.wplus && latent.length === this.wDim) {
      x = new Float32Array(this.numWs * this.wDim);
      for (let k = 0; k < this.numWs; k++) x.set(latent, k * this.wDim);
    }
    const shape = this.wplus ? [1, this.numWs, this.wDim] : [1, this.wDim];
    if (x.length !== shape.reduce((a, b) => a * b)) throw new Error(`latent of ${x.length} values, expected [${shape}]`);
    const result = await this.synthesis.run({ [input]: new ort.Tensor("float32", x, shape) });
    return result[output].data;
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

// Render one seed at one psi onto the canvas; returns the float image, the shown pixels and the times.
function render(seed, psi) {
  return serial(async () => {
    const t0 = performance.now();
    const w = await faces.w(seed, psi);
    const t1 = performance.now();
    const img = await faces.image(w);
    const t2 = performance.now();
    const pixels = draw(img, faces.size);
    return { img, pixels, mappingMs: t1 - t0, synthesisMs: t2 - t1, ms: t2 - t0 };
  });
}

// ---- the controls ------------------------------------------------------------------------------------------
let wanted = null;
let drawing = false;

function show(seed, psi) {
  wanted = { seed, psi };
  if (drawing) return;  // the loop below picks up the latest request
  drawing = true;
  (async () => {
    try {
      while (wanted) {
        const { seed: s, psi: p } = wanted;
        wanted = null;
        const r = await render(s, p);
        $("timing").textContent = `${r.ms.toFixed(0)} ms per image (mapping ${r.mappingMs.toFixed(1)} ms, synthesis `
          + `${r.synthesisMs.toFixed(0)} ms), ${faces.threads} WASM thread${faces.threads > 1 ? "s" : ""}`;
        $("cli").textContent = `mobilestylegan-generate SOURCE --seeds ${s} --trunc ${p}`;
        const url = new URL(location.href);
        url.searchParams.set("seed", s);
        url.searchParams.set("psi", p);
        history.replaceState(null, "", url);
        $("status").textContent = `seed ${s}, psi ${p}`;
      }
    } catch (err) {
      fail(err);
    } finally {
      drawing = false;
    }
  })();
}

function fail(err) {
  $("status").textContent = `error: ${err.message ?? err}`;
  $("status").className = "error";
}

function controls() {
  const seedBox = $("seed");
  const psiBox = $("psi");
  const seed = parseInt(params.get("seed") ?? "0", 10);
  const psi = parseFloat(params.get("psi") ?? psiBox.value);
  seedBox.value = Number.isInteger(seed) && seed >= 0 ? seed : 0;
  psiBox.value = Number.isFinite(psi) ? psi : 0.7;
  const current = () => [parseInt(seedBox.value, 10) >>> 0, parseFloat(psiBox.value)];
  const update = () => {
    $("psi-value").textContent = parseFloat(psiBox.value).toFixed(2);
    show(...current());
  };
  seedBox.addEventListener("change", update);
  psiBox.addEventListener("input", update);
  $("new").addEventListener("click", () => {
    seedBox.value = crypto.getRandomValues(new Uint32Array(1))[0] >>> 1;
    update();
  });
  update();
}

const ready = Faces.load().then((loaded) => {
  faces = loaded;
  const m = faces.manifest;
  $("model").textContent = `${faces.size}px, ${m.precision}, ${faces.threads} thread${faces.threads > 1 ? "s" : ""}`;
  if (!params.has("check")) controls();  // ?check: a harness drives the page (no initial render)
  return { size: faces.size, zDim: faces.zDim, threads: faces.threads, isolated: self.crossOriginIsolated };
});
ready.catch(fail);

window.msg = { ready, render, base64, toRGBA };
