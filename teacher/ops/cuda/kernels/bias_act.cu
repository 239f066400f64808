// bias_act: y = clamp(act(x + b) * gain, -clamp, clamp) and its derivatives, elementwise.
//
// Self-contained (compiled by NVRTC without CUDA headers). Written for this project from the
// definition in teacher/ops/bias_act.py.
//
// Forward:  y = clamp(act(z) * gain), z = x + b[c], c = (i / inner) % channels.
// Gradient: out = g * D, where D = dy/dz = gain * act'(z) * [not clamped], or, in mode 2,
//           out = g * D' with D' = gain * act''(z) * [not clamped] (for the second-order term).
// Mode 0 reads D from the saved output y (linear / relu / lrelu with gain > 0 and alpha >= 0, where
// the sign of y tells the branch and |y| < clamp tells the clamp); modes 1 and 2 recompute z from
// the saved input x (and b).
//
// Templated on the value type T (float / double) and the index type I (int when the element count
// allows it: 64-bit division is several times slower on the GPU).

struct BiasActParams {
    long long n;         // number of elements
    long long channels;  // size of the bias dimension (1 without bias)
    long long inner;     // product of the sizes after the bias dimension
    double alpha;        // lrelu negative slope
    double gain;
    double clamp;        // < 0: no clamp
    int act;             // see ACT_*
    int mode;            // gradient kernel only: 0 = D from y, 1 = D from z, 2 = D' from z
};

enum { ACT_LINEAR = 0, ACT_RELU, ACT_LRELU, ACT_TANH, ACT_SIGMOID, ACT_ELU, ACT_SELU, ACT_SOFTPLUS, ACT_SWISH };
enum { MODE_FROM_Y = 0, MODE_FROM_Z = 1, MODE_SECOND_FROM_Z = 2 };

// Overloads so the templates below pick the float or double math function.
__device__ __forceinline__ float exp_(float v) { return expf(v); }
__device__ __forceinline__ double exp_(double v) { return exp(v); }
__device__ __forceinline__ float log1p_(float v) { return log1pf(v); }
__device__ __forceinline__ double log1p_(double v) { return log1p(v); }
__device__ __forceinline__ float tanh_(float v) { return tanhf(v); }
__device__ __forceinline__ double tanh_(double v) { return tanh(v); }
__device__ __forceinline__ float abs_(float v) { return fabsf(v); }
__device__ __forceinline__ double abs_(double v) { return fabs(v); }

template <typename T>
__device__ __forceinline__ T sigmoid_(T z) { return T(1) / (T(1) + exp_(-z)); }

// SELU constants (as in torch.nn.functional.selu).
#define SELU_ALPHA 1.6732632423543772848170429916717
#define SELU_SCALE 1.0507009873554804934193349852946
// softplus is linear above this (as torch.nn.functional.softplus with threshold=20).
#define SOFTPLUS_THRESHOLD 20

template <typename T>
__device__ __forceinline__ T act_value(int act, T z, T alpha) {
    switch (act) {
        case ACT_RELU: return z > T(0) ? z : T(0);
        case ACT_LRELU: return z > T(0) ? z : z * alpha;
        case ACT_TANH: return tanh_(z);
        case ACT_SIGMOID: return sigmoid_(z);
        case ACT_ELU: return z > T(0) ? z : exp_(z) - T(1);
        case ACT_SELU: return T(SELU_SCALE) * (z > T(0) ? z : T(SELU_ALPHA) * (exp_(z) - T(1)));
        case ACT_SOFTPLUS: return z > T(SOFTPLUS_THRESHOLD) ? z : log1p_(exp_(z));
        case ACT_SWISH: return z * sigmoid_(z);
        default: return z;  // ACT_LINEAR
    }
}

// act'(z) for order 1, act''(z) for order 2.
template <typename T>
__device__ __forceinline__ T act_derivative(int act, T z, T alpha, int order) {
    switch (act) {
        case ACT_RELU: return order == 1 ? (z > T(0) ? T(1) : T(0)) : T(0);
        case ACT_LRELU: return order == 1 ? (z > T(0) ? T(1) : alpha) : T(0);
        case ACT_TANH: {
            const T a = tanh_(z), d = T(1) - a * a;
            return order == 1 ? d : T(-2) * a * d;
        }
        case ACT_SIGMOID: {
            const T s = sigmoid_(z), d = s * (T(1) - s);
            return order == 1 ? d : d * (T(1) - T(2) * s);
        }
        case ACT_ELU:
            if (z > T(0)) return order == 1 ? T(1) : T(0);
            return exp_(z);
        case ACT_SELU:
            if (z > T(0)) return order == 1 ? T(SELU_SCALE) : T(0);
            return T(SELU_SCALE) * T(SELU_ALPHA) * exp_(z);
        case ACT_SOFTPLUS: {
            if (z > T(SOFTPLUS_THRESHOLD)) return order == 1 ? T(1) : T(0);
            const T s = sigmoid_(z);
            return order == 1 ? s : s * (T(1) - s);
        }
        case ACT_SWISH: {
            const T s = sigmoid_(z);
            return order == 1 ? s * (T(1) + z * (T(1) - s)) : s * (T(1) - s) * (T(2) + z * (T(1) - T(2) * s));
        }
        default: return order == 1 ? T(1) : T(0);  // ACT_LINEAR
    }
}

template <typename T, typename I>
__device__ __forceinline__ void bias_act_forward(const T* __restrict__ x, const T* __restrict__ b,
                                                 T* __restrict__ y, const BiasActParams& p) {
    const I n = (I)p.n, channels = (I)p.channels, inner = (I)p.inner;
    const T alpha = (T)p.alpha, gain = (T)p.gain, clamp = (T)p.clamp;
    const bool clamped = p.clamp >= 0;
    const I stride = (I)blockDim.x * gridDim.x;
    for (I i = (I)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        T z = x[i];
        if (b) z += b[(i / inner) % channels];
        T v = act_value(p.act, z, alpha) * gain;
        if (clamped) v = v > clamp ? clamp : (v < -clamp ? -clamp : v);  // NaN stays NaN
        y[i] = v;
    }
}

template <typename T, typename I>
__device__ __forceinline__ void bias_act_gradient(const T* __restrict__ g, const T* __restrict__ s,
                                                  const T* __restrict__ b, T* __restrict__ out,
                                                  const BiasActParams& p) {
    const I n = (I)p.n, channels = (I)p.channels, inner = (I)p.inner;
    const T alpha = (T)p.alpha, gain = (T)p.gain, clamp = (T)p.clamp;
    const bool clamped = p.clamp >= 0;
    const I stride = (I)blockDim.x * gridDim.x;
    for (I i = (I)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        T d;
        if (p.mode == MODE_FROM_Y) {
            const T yv = s[i];
            d = (p.act == ACT_LINEAR || yv > T(0)) ? gain : (p.act == ACT_LRELU ? gain * alpha : T(0));
            if (clamped && !(abs_(yv) < clamp)) d = T(0);  // saturated (or NaN)
        } else {
            T z = s[i];
            if (b) z += b[(i / inner) % channels];
            d = gain * act_derivative(p.act, z, alpha, p.mode == MODE_FROM_Z ? 1 : 2);
            if (clamped && !(abs_(act_value(p.act, z, alpha) * gain) <= clamp)) d = T(0);
        }
        out[i] = g[i] * d;
    }
}

#define BIAS_ACT_KERNELS(T, I, SUFFIX)                                                                   \
    extern "C" __global__ void bias_act_fwd_##SUFFIX(const T* __restrict__ x, const T* __restrict__ b,  \
                                                     T* __restrict__ y, BiasActParams p) {              \
        bias_act_forward<T, I>(x, b, y, p);                                                             \
    }                                                                                                   \
    extern "C" __global__ void bias_act_grad_##SUFFIX(const T* __restrict__ g, const T* __restrict__ s, \
                                                      const T* __restrict__ b, T* __restrict__ out,     \
                                                      BiasActParams p) {                                \
        bias_act_gradient<T, I>(g, s, b, out, p);                                                       \
    }

BIAS_ACT_KERNELS(float, int, f32_i32)
BIAS_ACT_KERNELS(float, long long, f32_i64)
BIAS_ACT_KERNELS(double, int, f64_i32)
BIAS_ACT_KERNELS(double, long long, f64_i64)
