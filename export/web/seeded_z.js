// Seeded latents in the browser: seededZ(seed, zDim) equals, to float32 rounding of log/cos/sin,
// torch.randn(zDim, generator=torch.Generator().manual_seed(seed)) (and export/runtime.py's seeded_z):
// MT19937 seeded with init_genrand, 24-bit uniforms, Box-Muller on blocks of 16 (cos for the first 8, sin
// for the last 8), the tail block redrawn. Needs zDim >= 16.

function mt19937(seed) {
  const mt = new Uint32Array(624);
  mt[0] = seed >>> 0;
  for (let i = 1; i < 624; i++) {
    const prev = mt[i - 1] ^ (mt[i - 1] >>> 30);
    mt[i] = (Math.imul(1812433253, prev) + i) >>> 0;
  }
  let index = 624;
  function twist() {
    for (let i = 0; i < 624; i++) {
      const y = (mt[i] & 0x80000000) | (mt[(i + 1) % 624] & 0x7fffffff);
      let v = mt[(i + 397) % 624] ^ (y >>> 1);
      if (y & 1) v ^= 0x9908b0df;
      mt[i] = v >>> 0;
    }
    index = 0;
  }
  return function next() {
    if (index >= 624) twist();
    let y = mt[index++];
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  };
}

function uniform24(next, n) {
  const u = new Float32Array(n);
  for (let i = 0; i < n; i++) u[i] = (next() & 0xffffff) * 2 ** -24;  // exact in float32
  return u;
}

function boxMuller16(u, out, offset) {
  const f = Math.fround;
  const twoPi = f(2 * Math.PI);
  for (let j = 0; j < 8; j++) {
    const radius = f(Math.sqrt(f(-2 * f(Math.log(f(1 - u[j]))))));
    const theta = f(twoPi * u[8 + j]);
    out[offset + j] = f(radius * f(Math.cos(theta)));
    out[offset + 8 + j] = f(radius * f(Math.sin(theta)));
  }
}

function seededZ(seed, zDim) {
  if (zDim < 16) throw new Error(`seeded latents are reproduced for zDim >= 16 only (got ${zDim})`);
  if (!Number.isInteger(seed) || seed < 0 || seed >= 2 ** 32) throw new Error(`seed must be in 0..2**32-1, got ${seed}`);
  const next = mt19937(seed);
  const out = new Float32Array(zDim);
  const u = uniform24(next, zDim);
  for (let i = 0; i + 16 <= zDim; i += 16) boxMuller16(u.subarray(i, i + 16), out, i);
  if (zDim % 16) boxMuller16(uniform24(next, 16), out, zDim - 16);
  return out;
}

if (typeof module !== "undefined") module.exports = { seededZ };
