// upfirdn2d: up-sample (zero insertion), pad/crop, FIR filter, down-sample, in one pass.
//
// Self-contained (compiled by NVRTC without CUDA headers). Written for this project from the
// definition in teacher/ops/upfirdn2d.py.
//
// The filter is turned into correlation taps while it is staged: flipped in both axes (= its
// row-major order reversed) unless flip_filter, times the gain. For output sample o (per axis) and
// correlation tap k the zero-inserted, padded input position is o * down + k - pad0; it holds a
// real sample only when divisible by `up`, at input index (o * down + k - pad0) / up. So instead of
// visiting every tap, a thread starts at the first input index ix = ceil((o * down - pad0) / up)
// with tap k = ix * up - (o * down - pad0) and steps k by `up` and ix by 1: only the taps that meet
// real samples are visited.
//
// Tiling: a block of threads computes a tile of tile_out_h x tile_out_w outputs of one image plane
// (planes are N * C, looped over blockIdx.z). The input rectangle the tile needs (zeros outside the
// image) and the filter are staged in dynamic shared memory, so the inner loop has no bounds checks.

#ifndef MSG_HOST_EMULATION  // the tests' host emulator provides this buffer itself
extern __shared__ __align__(16) unsigned char msg_smem[];
#endif

struct Upfirdn2dParams {
    long long planes;                // N * C
    double gain;
    int flip_filter;                 // 1: correlate with f as given; 0: true convolution
    int in_h, in_w, out_h, out_w;
    int up_x, up_y, down_x, down_y;
    int pad_x0, pad_y0;              // pad_x1 / pad_y1 only determine out_w / out_h
    int filter_h, filter_w;
    int tiles_x;                     // tiles per row of the output; blockIdx.x = tile_y * tiles_x + tile_x
    int tile_out_w, tile_out_h;      // outputs per block
    int tile_in_w, tile_in_h;        // staged input rectangle, >= what any tile needs
};

// Floor / ceil of a / b for b > 0 and any sign of a.
__device__ __forceinline__ int floor_div(int a, int b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }
__device__ __forceinline__ int ceil_div(int a, int b) { return floor_div(a + b - 1, b); }

template <typename T>
__device__ __forceinline__ void upfirdn2d_tile(const T* __restrict__ x, const T* __restrict__ f,
                                               T* __restrict__ y, const Upfirdn2dParams& p) {
    T* s_x = reinterpret_cast<T*>(msg_smem);   // [tile_in_h, tile_in_w]
    T* s_f = s_x + p.tile_in_h * p.tile_in_w;  // [filter_h, filter_w]
    const int tid = threadIdx.y * blockDim.x + threadIdx.x;
    const int nthreads = blockDim.x * blockDim.y;

    const int taps = p.filter_h * p.filter_w;
    for (int i = tid; i < taps; i += nthreads) s_f[i] = f[p.flip_filter ? i : taps - 1 - i] * T(p.gain);

    const int ox0 = (blockIdx.x % p.tiles_x) * p.tile_out_w;  // first output column / row of the tile
    const int oy0 = (blockIdx.x / p.tiles_x) * p.tile_out_h;
    const int ix0 = ceil_div(ox0 * p.down_x - p.pad_x0, p.up_x);  // first input column / row it needs
    const int iy0 = ceil_div(oy0 * p.down_y - p.pad_y0, p.up_y);
    const long long in_plane = (long long)p.in_h * p.in_w;
    const long long out_plane = (long long)p.out_h * p.out_w;

    for (long long plane = blockIdx.z; plane < p.planes; plane += gridDim.z) {
        const T* xp = x + plane * in_plane;
        T* yp = y + plane * out_plane;

        // Stage the input rectangle, zero outside the image (rows of threads read rows: coalesced).
        for (int r = threadIdx.y; r < p.tile_in_h; r += blockDim.y) {
            const int iy = iy0 + r;
            const bool row_inside = iy >= 0 && iy < p.in_h;
            for (int c = threadIdx.x; c < p.tile_in_w; c += blockDim.x) {
                const int ix = ix0 + c;
                const bool inside = row_inside && ix >= 0 && ix < p.in_w;
                s_x[r * p.tile_in_w + c] = inside ? xp[(long long)iy * p.in_w + ix] : T(0);
            }
        }
        __syncthreads();

        for (int ty = threadIdx.y; ty < p.tile_out_h; ty += blockDim.y) {
            const int oy = oy0 + ty;
            if (oy >= p.out_h) break;
            const int by = oy * p.down_y - p.pad_y0;
            const int iy = p.up_y == 1 ? by : ceil_div(by, p.up_y);
            const int ky0 = iy * p.up_y - by;  // first tap meeting a real row, in [0, up_y)
            const int r0 = iy - iy0;           // its row in the staged rectangle
            for (int tx = threadIdx.x; tx < p.tile_out_w; tx += blockDim.x) {
                const int ox = ox0 + tx;
                if (ox >= p.out_w) break;
                const int bx = ox * p.down_x - p.pad_x0;
                const int ix = p.up_x == 1 ? bx : ceil_div(bx, p.up_x);
                const int kx0 = ix * p.up_x - bx;
                const int c0 = ix - ix0;
                T acc = T(0);
                for (int ky = ky0, r = r0; ky < p.filter_h; ky += p.up_y, ++r) {
                    const T* row = s_x + r * p.tile_in_w + c0;
                    const T* frow = s_f + ky * p.filter_w;
                    for (int kx = kx0, c = 0; kx < p.filter_w; kx += p.up_x, ++c) acc += row[c] * frow[kx];
                }
                yp[(long long)oy * p.out_w + ox] = acc;
            }
        }
        __syncthreads();  // before the next plane overwrites the staged rectangle
    }
}

extern "C" __global__ void upfirdn2d_f32(const float* __restrict__ x, const float* __restrict__ f,
                                         float* __restrict__ y, Upfirdn2dParams p) {
    upfirdn2d_tile<float>(x, f, y, p);
}

extern "C" __global__ void upfirdn2d_f64(const double* __restrict__ x, const double* __restrict__ f,
                                         double* __restrict__ y, Upfirdn2dParams p) {
    upfirdn2d_tile<double>(x, f, y, p);
}
