// Dropout masks drawn inside the kernel that applies them, on CPU.
//
//   dropout_apply(x, residual, seed, levels, scale, relu, out_bf16) -> out
//     out = residual + mask * scale * x        (residual optional; relu: x replaced by max(x, 0))
//   relu_dropout_backward(grad, out, scale) -> grad * scale where out > 0, else 0
//
// x is float32 or bfloat16 and contiguous; out (and residual, when given) float32, or bfloat16
// with out_bf16; arithmetic in float32.
//
// The mask: element i of a call is kept when its 15-bit level is at least ``levels`` (the
// number of the 2^15 levels that mean "drop"), where the levels are the SplitMix64 stream from
// state ``seed`` (output k = mix(seed + (k + 1) * 0x9E3779B97F4A7C15)) read as little-endian
// 16-bit halves, top bit cleared: element i takes half i. A counter-based stream: any block of
// elements is computed from its index alone, so the mask does not depend on the number of
// threads, and the backward pass recomputes the mask from the seed instead of keeping it.
//
// Why it exists: eager dropout on CPU draws its random numbers from the serial generator, then
// thresholds them, then multiplies (and the residual sum is one more pass); on the benchmark
// Transformer's training step those passes took about a tenth of the time. Here the 64-bit
// hashes are computed eight lanes at a time and the whole dropout (with the residual sum, or
// the ReLU before it) is one pass over memory.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "simd.h"

#include <algorithm>
#include <cstdint>
#include <cstring>

namespace {

using namespace seqattn::simd;

typedef uint64_t word8x64 __attribute__((vector_size(64)));

constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ull;
constexpr int64_t kBlock = 64;  // elements per 16 hashes

// SplitMix64's output function, on one word or eight lanes.
template <typename Z>
inline Z mix(Z z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// The 64 levels of block b (elements 64 b .. 64 b + 63): stream outputs 16 b .. 16 b + 15.
inline void block_levels(uint64_t seed, int64_t block, uint16_t* levels) {
  const word8x64 lane = {1, 2, 3, 4, 5, 6, 7, 8};
  const uint64_t base = seed + static_cast<uint64_t>(block) * 16 * kGolden;
  const word8x64 low = mix<word8x64>(base + lane * kGolden);
  const word8x64 high = mix<word8x64>(base + (lane + 8) * kGolden);
  std::memcpy(levels, &low, sizeof(low));
  std::memcpy(levels + 32, &high, sizeof(high));
  for (int e = 0; e < kBlock; ++e) levels[e] &= 0x7FFF;
}

// v in the lanes where keep is all ones (a vector comparison's true), 0.0f in the others.
inline vec16 masked(vec16 v, int16v keep) {
  int16v bits;
  std::memcpy(&bits, &v, sizeof(bits));
  bits &= keep;
  std::memcpy(&v, &bits, sizeof(v));
  return v;
}

template <typename T, typename O, bool Relu>
void apply(const T* x, const O* residual, O* out, int64_t n, uint64_t seed, int levels, float scale) {
  const vec16 scales = vec16{} + scale;
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  at::parallel_for(0, blocks, 256, [&](int64_t begin, int64_t end) {
    alignas(64) uint16_t level[kBlock];
    for (int64_t b = begin; b < end; ++b) {
      block_levels(seed, b, level);
      const int64_t start = b * kBlock;
      if (start + kBlock <= n) {
        for (int g = 0; g < kBlock / 16; ++g) {
          const int64_t o = start + 16 * g;
          half16 lv;
          std::memcpy(&lv, level + 16 * g, sizeof(lv));
          const vec16 factor = masked(scales, __builtin_convertvector(lv, int16v) >= levels);
          const vec16 v = load(x + o);
          vec16 y = v * factor;  // x * 0 where dropped: NaN and infinity still propagate
          if constexpr (Relu) y = masked(y, ~(v <= 0.0f));  // 0 where x <= 0 (NaN passes, as in torch.relu)
          if (residual != nullptr) y += load(residual + o);
          store(out + o, y);
        }
      } else {
        for (int64_t i = start; i < n; ++i) {
          const float v = widen(x[i]);
          float y = v * (level[i - start] >= levels ? scale : 0.0f);
          if (Relu && v <= 0.0f) y = 0.0f;
          if (residual != nullptr) y += widen(residual[i]);
          narrow(y, out + i);
        }
      }
    }
  });
}

template <typename T, typename O>
void apply_any(const at::Tensor& x, const c10::optional<at::Tensor>& residual, at::Tensor& out,
               uint64_t seed, int levels, float scale, bool relu) {
  const T* xp = reinterpret_cast<const T*>(x.data_ptr());
  const O* rp = residual ? reinterpret_cast<const O*>(residual->data_ptr()) : nullptr;
  O* op = reinterpret_cast<O*>(out.data_ptr());
  if (relu) {
    apply<T, O, true>(xp, rp, op, x.numel(), seed, levels, scale);
  } else {
    apply<T, O, false>(xp, rp, op, x.numel(), seed, levels, scale);
  }
}

template <typename T>
void relu_backward(const T* grad, const T* out, T* result, int64_t n, float scale) {
  at::parallel_for(0, (n + 15) / 16, 1024, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      const int64_t i = 16 * k;
      if (i + 16 <= n) {
        store(result + i, masked(load(grad + i) * scale, load(out + i) > 0.0f));
      } else {
        for (int64_t j = i; j < n; ++j) narrow(widen(out[j]) > 0.0f ? widen(grad[j]) * scale : 0.0f, result + j);
      }
    }
  });
}

bool float_or_bf16(at::ScalarType t) { return t == at::kFloat || t == at::kBFloat16; }

}  // namespace

at::Tensor dropout_apply(const at::Tensor& x, const c10::optional<at::Tensor>& residual, int64_t seed,
                         int64_t levels, double scale, bool relu, bool out_bf16) {
  const at::ScalarType out_dtype = out_bf16 ? at::kBFloat16 : at::kFloat;
  TORCH_CHECK(x.device().is_cpu() && x.is_contiguous(), "x must be a contiguous CPU tensor");
  TORCH_CHECK(float_or_bf16(x.scalar_type()), "x must be float32 or bfloat16");
  TORCH_CHECK(levels >= 0 && levels <= (1 << 15), "levels must be in [0, 2^15]");
  if (residual) {
    TORCH_CHECK(residual->device().is_cpu() && residual->is_contiguous(), "residual must be a contiguous CPU tensor");
    TORCH_CHECK(residual->sizes() == x.sizes(), "residual must have x's shape");
    TORCH_CHECK(residual->scalar_type() == out_dtype, "residual must have the output's dtype");
  }
  at::Tensor out = at::empty(x.sizes(), x.options().dtype(out_dtype));
  const uint64_t s = static_cast<uint64_t>(seed);
  const int lv = static_cast<int>(levels);
  const float sc = static_cast<float>(scale);
  const bool x_float = x.scalar_type() == at::kFloat, out_float = out_dtype == at::kFloat;
  if (x_float && out_float) {
    apply_any<float, float>(x, residual, out, s, lv, sc, relu);
  } else if (x_float) {
    apply_any<float, uint16_t>(x, residual, out, s, lv, sc, relu);
  } else if (out_float) {
    apply_any<uint16_t, float>(x, residual, out, s, lv, sc, relu);
  } else {
    apply_any<uint16_t, uint16_t>(x, residual, out, s, lv, sc, relu);
  }
  return out;
}

at::Tensor relu_dropout_backward(const at::Tensor& grad, const at::Tensor& out, double scale) {
  TORCH_CHECK(out.device().is_cpu() && out.is_contiguous(), "out must be a contiguous CPU tensor");
  TORCH_CHECK(grad.sizes() == out.sizes() && grad.scalar_type() == out.scalar_type(),
              "grad must match out in shape and dtype");
  TORCH_CHECK(float_or_bf16(out.scalar_type()), "float32 or bfloat16 only");
  const at::Tensor g = grad.contiguous();
  at::Tensor result = at::empty_like(g);
  const float sc = static_cast<float>(scale);
  if (out.scalar_type() == at::kFloat) {
    relu_backward<float>(g.data_ptr<float>(), out.data_ptr<float>(), result.data_ptr<float>(), g.numel(), sc);
  } else {
    relu_backward<uint16_t>(reinterpret_cast<const uint16_t*>(g.data_ptr()),
                            reinterpret_cast<const uint16_t*>(out.data_ptr()),
                            reinterpret_cast<uint16_t*>(result.data_ptr()), g.numel(), sc);
  }
  return result;
}
