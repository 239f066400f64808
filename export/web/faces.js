// Faces in the page: the export's face models (faces/*.onnx: MediaPipe's face detectors and face mesh, Apache-2.0)
// in ONNX Runtime Web, and FFHQ's alignment, as export/runtime_faces.py does them in Python: the same detector input
// (the photo letterboxed and resized), anchors, weighted non-maximum suppression, landmark crops (1.5x the face, eyes
// level, one refinement, the mean of nine jittered crops), eye centres and mouth corners, and FFHQ's quad. What
// differs is the resampling: the canvas's bilinear drawing (after a high-quality shrink) where Python uses Pillow, and
// the alignment's padding, where the page fills the outside of the photo with its median colour instead of a blurred
// reflection. The eyes land where Python puts them to within a pixel or two; the toolkit's tests hold them to 2 px.

import * as ort from "./ort/ort.wasm.min.mjs";

const DETECTORS = { full: [192, [[4, 1]]], short: [128, [[8, 2], [16, 6]]] };
const MIN_SCORE = 0.5;
const NMS_IOU = 0.3;
const LANDMARK_SIZE = 192;
const ROI_SCALE = 1.5;
const FACE_FLAG = 0.5;
const JITTER = [0.92, 1.0, 1.08].flatMap((ds) => [[0, 0], [0.03, 0.03], [-0.03, -0.03]].map(([dx, dy]) => [ds, dx, dy]));
const EYE_LEFT = [33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246];
const EYE_RIGHT = [263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466];
const MOUTH_LEFT = 61;
const MOUTH_RIGHT = 291;

export class NoFaceError extends Error {}

const sigmoid = (x) => 1 / (1 + Math.exp(-Math.max(-80, Math.min(80, x))));

function anchors(side, layout) {
  const out = [];
  for (const [stride, perCell] of layout) {
    const n = side / stride;
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) {
        for (let k = 0; k < perCell; k++) out.push([(j + 0.5) / n, (i + 0.5) / n]);
      }
    }
  }
  return out;
}

function iou(a, b) {
  const w = Math.max(0, Math.min(a[2], b[2]) - Math.max(a[0], b[0]));
  const h = Math.max(0, Math.min(a[3], b[3]) - Math.max(a[1], b[1]));
  const area = (r) => (r[2] - r[0]) * (r[3] - r[1]);
  return (w * h) / Math.max(area(a) + area(b) - w * h, 1e-12);
}

// MediaPipe's weighted NMS: each cluster becomes the score-weighted mean of its boxes and keypoints.
function weightedNms(found) {
  found.sort((a, b) => b.score - a.score);
  const alive = found.map(() => true);
  const out = [];
  for (let i = 0; i < found.length; i++) {
    if (!alive[i]) continue;
    let total = 0;
    const box = [0, 0, 0, 0];
    const kps = new Float64Array(12);
    for (let j = i; j < found.length; j++) {
      if (!alive[j] || (j !== i && !(iou(found[i].box, found[j].box) > NMS_IOU))) continue;
      const w = found[j].score;
      total += w;
      for (let k = 0; k < 4; k++) box[k] += found[j].box[k] * w;
      for (let k = 0; k < 12; k++) kps[k] += found[j].kps[k] * w;
      alive[j] = false;
    }
    out.push({ box: box.map((v) => v / total), kps: kps.map((v) => v / total), score: found[i].score });
  }
  return out;
}

function canvas2d(width, height) {
  const canvas = new OffscreenCanvas(width, height);
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.imageSmoothingEnabled = true;
  ctx.imageSmoothingQuality = "high";
  return ctx;
}

// RGBA bytes -> NHWC float32 (x * scale + offset), as the models take them.
function nhwc(rgba, scale, offset) {
  const n = rgba.length / 4;
  const x = new Float32Array(n * 3);
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < 3; c++) x[i * 3 + c] = rgba[i * 4 + c] * scale + offset;
  }
  return x;
}

function eyeAngle(left, right) {
  return Math.atan2(right[1] - left[1], right[0] - left[0]);
}

export class FaceAligner {
  // The three sessions from the manifest's faces entry (files and output widths).
  static async load(manifest, options) {
    const f = manifest.faces;
    const names = ["full", "short", "landmark"];
    const sessions = await Promise.all(names.map((n) => ort.InferenceSession.create(f.files[n], options)));
    return new FaceAligner(Object.fromEntries(names.map((n, k) => [n, sessions[k]])), f.outputs);
  }

  constructor(sessions, widths) {
    this.sessions = sessions;
    this.widths = widths;
    this.shrunk = new Map();  // shrink factor -> the photo shrunk by it (ImageBitmap)
  }

  // One model on an NHWC input -> its outputs (the one ONNX output split along its last axis).
  async run(name, x, side) {
    const s = this.sessions[name];
    const result = await s.run({ [s.inputNames[0]]: new ort.Tensor("float32", x, [1, side, side, 3]) });
    const out = result[s.outputNames[0]];
    const last = out.dims[out.dims.length - 1];
    const rows = out.data.length / last;
    const parts = [];
    let start = 0;
    for (const w of this.widths[name]) {
      const part = new Float32Array(rows * w);
      for (let r = 0; r < rows; r++) part.set(out.data.subarray(r * last + start, r * last + start + w), r * w);
      parts.push(part);
      start += w;
    }
    return parts;
  }

  // The photo (an ImageBitmap) shrunk by an integer factor, made once per factor (high-quality resize).
  async photoShrunk(photo, shrink) {
    if (shrink < 2) return photo;
    if (!this.shrunk.has(shrink)) {
      this.shrunk.set(shrink, await createImageBitmap(photo, {
        resizeWidth: Math.max(1, Math.floor(photo.width / shrink)),
        resizeHeight: Math.max(1, Math.floor(photo.height / shrink)), resizeQuality: "high" }));
    }
    return this.shrunk.get(shrink);
  }

  // Faces in the photo, largest first: [{ box [x0, y0, x1, y1], kps [12], score }] in the photo's pixels.
  async detect(photo, model) {
    const [side, layout] = DETECTORS[model];
    const [w, h] = [photo.width, photo.height];
    const s = Math.max(w, h);
    const [ox, oy] = [Math.floor((s - w) / 2), Math.floor((s - h) / 2)];
    const k = side / s;
    const ctx = canvas2d(side, side);
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, side, side);
    const src = await this.photoShrunk(photo, Math.floor(s / side / 2));
    ctx.drawImage(src, ox * k, oy * k, w * k, h * k);
    const x = nhwc(ctx.getImageData(0, 0, side, side).data, 1 / 127.5, -1);
    const [raw, logits] = await this.run(model, x, side);
    const grid = anchors(side, layout);
    const found = [];
    for (let a = 0; a < grid.length; a++) {
      const score = sigmoid(logits[a]);
      if (!(score > MIN_SCORE)) continue;
      const r = raw.subarray(a * 16, a * 16 + 16);
      const [cx, cy] = [r[0] / side + grid[a][0], r[1] / side + grid[a][1]];
      const [hw, hh] = [r[2] / side / 2, r[3] / side / 2];
      const box = [(cx - hw) * s - ox, (cy - hh) * s - oy, (cx + hw) * s - ox, (cy + hh) * s - oy];
      if (!(box[2] > box[0] && box[3] > box[1])) continue;
      const kps = new Float64Array(12);
      for (let p = 0; p < 6; p++) {
        kps[2 * p] = (r[4 + 2 * p] / side + grid[a][0]) * s - ox;
        kps[2 * p + 1] = (r[5 + 2 * p] / side + grid[a][1]) * s - oy;
      }
      found.push({ box, kps, score });
    }
    const area = (d) => Math.max(0, d.box[2] - d.box[0]) * Math.max(0, d.box[3] - d.box[1]);
    return weightedNms(found).sort((a, b) => area(b) - area(a));
  }

  // 468 landmarks [x, y, z] (photo pixels) from a square crop of `side` pixels at `centre`, turned by `angle`; null
  // when the face flag says there is no face in the crop.
  async landmarksIn(photo, centre, side, angle) {
    const n = LANDMARK_SIZE;
    const [c, s, k] = [Math.cos(angle), Math.sin(angle), side / n];
    // crop -> photo: p = M q + t (as export/runtime_faces.py's crop_square)
    const m = [c * k, -s * k, centre[0] - ((c - s) * side) / 2, s * k, c * k, centre[1] - ((s + c) * side) / 2];
    const shrink = Math.floor(k / 2);
    const src = await this.photoShrunk(photo, shrink);
    const g = shrink >= 2 ? [photo.width / src.width, photo.height / src.height] : [1, 1];
    // the canvas needs shrunk photo -> crop: the inverse of (crop -> photo), with the shrink
    const [a, b, e, d, f, t] = [m[0], m[1], m[2], m[3], m[4], m[5]];
    const det = a * f - b * d;
    const inv = [f / det, -d / det, -b / det, a / det];  // [[a, b], [d, f]]^-1 as (a', c', b', d') column-major
    const ctx = canvas2d(n, n);
    ctx.setTransform(inv[0] * g[0], inv[1] * g[0], inv[2] * g[1], inv[3] * g[1],
                     -(inv[0] * e + inv[2] * t), -(inv[1] * e + inv[3] * t));
    ctx.drawImage(src, 0, 0);
    const x = nhwc(ctx.getImageData(0, 0, n, n).data, 1 / 255, 0);
    const [raw, flag] = await this.run("landmark", x, n);
    if (!(sigmoid(flag[flag.length - 1]) > FACE_FLAG)) return null;
    const out = new Float64Array(468 * 3);
    for (let p = 0; p < 468; p++) {
      const [u, v, z] = [raw[3 * p], raw[3 * p + 1], raw[3 * p + 2]];
      out[3 * p] = m[0] * u + m[1] * v + m[2];
      out[3 * p + 1] = m[3] * u + m[4] * v + m[5];
      out[3 * p + 2] = z * k;
    }
    return out;
  }

  // MediaPipe's crop around landmarks: their box's centre, 1.5x its long side, eye corners 33 and 263 level.
  static roi(lm) {
    let [x0, y0, x1, y1] = [Infinity, Infinity, -Infinity, -Infinity];
    for (let p = 0; p < 468; p++) {
      x0 = Math.min(x0, lm[3 * p]);
      x1 = Math.max(x1, lm[3 * p]);
      y0 = Math.min(y0, lm[3 * p + 1]);
      y1 = Math.max(y1, lm[3 * p + 1]);
    }
    return [[(x0 + x1) / 2, (y0 + y1) / 2], ROI_SCALE * Math.max(x1 - x0, y1 - y0),
            eyeAngle([lm[99], lm[100]], [lm[789], lm[790]])];
  }

  // The largest face: { landmarks Float64Array(468 * 3), box, facesFound }; a NoFaceError when there is none.
  async findFace(photo) {
    let dets = await this.detect(photo, "full");
    if (!dets.length) dets = await this.detect(photo, "short");
    if (!dets.length) throw new NoFaceError("no face found in the photo");
    const d = dets[0];
    const centre = [(d.box[0] + d.box[2]) / 2, (d.box[1] + d.box[3]) / 2];
    const side = ROI_SCALE * Math.max(d.box[2] - d.box[0], d.box[3] - d.box[1]);
    let lm = await this.landmarksIn(photo, centre, side, eyeAngle([d.kps[0], d.kps[1]], [d.kps[2], d.kps[3]]));
    if (!lm) {
      throw new NoFaceError("a face was detected but its landmarks could not be placed (too small, blurred or "
                            + "turned away?)");
    }
    const next = await this.landmarksIn(photo, ...FaceAligner.roi(lm));
    if (next) lm = next;
    const [c, s, angle] = FaceAligner.roi(lm);
    const runs = [];
    for (const [ds, dx, dy] of JITTER) {
      const one = await this.landmarksIn(photo, [c[0] + s * dx, c[1] + s * dy], s * ds, angle);
      if (one) runs.push(one);
    }
    if (runs.length) {
      lm = new Float64Array(468 * 3);
      for (const r of runs) for (let i = 0; i < lm.length; i++) lm[i] += r[i] / runs.length;
    }
    return { landmarks: lm, box: d.box, facesFound: dets.length };
  }

  static ffhqPoints(lm) {
    const mean = (idx) => [0, 1].map((a) => idx.reduce((sum, p) => sum + lm[3 * p + a], 0) / idx.length);
    return { eyeLeft: mean(EYE_LEFT), eyeRight: mean(EYE_RIGHT), mouthLeft: [lm[3 * MOUTH_LEFT], lm[3 * MOUTH_LEFT + 1]],
             mouthRight: [lm[3 * MOUTH_RIGHT], lm[3 * MOUTH_RIGHT + 1]] };
  }

  // FFHQ's quad [top-left, bottom-left, bottom-right, top-right] from the four points.
  static ffhqQuad(p) {
    const eyeAvg = [(p.eyeLeft[0] + p.eyeRight[0]) / 2, (p.eyeLeft[1] + p.eyeRight[1]) / 2];
    const eyeToEye = [p.eyeRight[0] - p.eyeLeft[0], p.eyeRight[1] - p.eyeLeft[1]];
    const mouthAvg = [(p.mouthLeft[0] + p.mouthRight[0]) / 2, (p.mouthLeft[1] + p.mouthRight[1]) / 2];
    const eyeToMouth = [mouthAvg[0] - eyeAvg[0], mouthAvg[1] - eyeAvg[1]];
    let x = [eyeToEye[0] + eyeToMouth[1], eyeToEye[1] - eyeToMouth[0]];  // eye_to_eye - rot90(eye_to_mouth)
    const len = Math.hypot(...x);
    const scale = Math.max(Math.hypot(...eyeToEye) * 2, Math.hypot(...eyeToMouth) * 1.8);
    x = [(x[0] / len) * scale, (x[1] / len) * scale];
    const y = [-x[1], x[0]];
    const c = [eyeAvg[0] + eyeToMouth[0] * 0.1, eyeAvg[1] + eyeToMouth[1] * 0.1];
    return [[c[0] - x[0] - y[0], c[1] - x[1] - y[1]], [c[0] - x[0] + y[0], c[1] - x[1] + y[1]],
            [c[0] + x[0] + y[0], c[1] + x[1] + y[1]], [c[0] + x[0] - y[0], c[1] + x[1] - y[1]]];
  }

  // FFHQ's crop of the photo (size x size RGBA bytes): the quad drawn onto the square, the outside of the photo
  // filled with the photo's median colour.
  async alignedCrop(photo, quad, size) {
    const ex = [quad[3][0] - quad[0][0], quad[3][1] - quad[0][1]];
    const ey = [quad[1][0] - quad[0][0], quad[1][1] - quad[0][1]];
    const qsize = Math.hypot(...ex);
    const shrink = Math.floor((qsize / size) * 0.5);
    const src = await this.photoShrunk(photo, shrink);
    const g = shrink >= 2 ? [photo.width / src.width, photo.height / src.height] : [1, 1];
    const [nx, ny] = [size / (ex[0] ** 2 + ex[1] ** 2), size / (ey[0] ** 2 + ey[1] ** 2)];
    const ctx = canvas2d(size, size);
    ctx.fillStyle = await this.medianColour(photo);
    ctx.fillRect(0, 0, size, size);
    // photo -> aligned: ((p - q0) . ex, (p - q0) . ey) * size / |e|^2; the shrunk photo's pixel is g photo pixels
    ctx.setTransform(ex[0] * nx * g[0], ey[0] * ny * g[0], ex[1] * nx * g[1], ey[1] * ny * g[1],
                     -(quad[0][0] * ex[0] + quad[0][1] * ex[1]) * nx, -(quad[0][0] * ey[0] + quad[0][1] * ey[1]) * ny);
    ctx.drawImage(src, 0, 0);
    return ctx.getImageData(0, 0, size, size).data;
  }

  async medianColour(photo) {
    const small = await createImageBitmap(photo, { resizeWidth: 64, resizeHeight: 64, resizeQuality: "high" });
    const ctx = canvas2d(64, 64);
    ctx.drawImage(small, 0, 0);
    const data = ctx.getImageData(0, 0, 64, 64).data;
    const channel = (c) => {
      const v = [];
      for (let i = c; i < data.length; i += 4) v.push(data[i]);
      v.sort((a, b) => a - b);
      return v[v.length >> 1];
    };
    return `rgb(${channel(0)}, ${channel(1)}, ${channel(2)})`;
  }

  // The photo (an ImageBitmap) -> { rgba: FFHQ's crop at size, points, quad, ms: { find, align } }.
  async align(photo, size) {
    this.shrunk = new Map();
    const t0 = performance.now();
    const face = await this.findFace(photo);
    const t1 = performance.now();
    const points = FaceAligner.ffhqPoints(face.landmarks);
    const quad = FaceAligner.ffhqQuad(points);
    const rgba = await this.alignedCrop(photo, quad, size);
    for (const b of this.shrunk.values()) b.close();
    this.shrunk = new Map();
    return { rgba, points, quad, facesFound: face.facesFound, ms: { find: t1 - t0, align: performance.now() - t1 } };
  }
}
