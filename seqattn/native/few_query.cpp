// Few-query attention on CPU: a handful of queries (a decoding step's hypotheses of one
// sentence) over one sequence's keys and values, in one pass per (row, head).
//
//   query  (M, H, G, D)   float32 or bfloat16 (all operands alike; arithmetic in float32),
//                         any strides, last dimension contiguous
//   keys   (M, H, S, D)   any strides, last dimension contiguous (already score-prepared)
//   values (M, H, S, D)   any strides, last dimension contiguous
//   mask   (M, H, G, S)   bool, True = may attend; any strides (0 for broadcast dimensions)
//   returns context (M, H, G, D), laid out (M, G, H, D) in memory so that merging the heads
//   afterwards is a view
//
// context[j] = softmax(scale * q_j K^T + mask) V, and exactly 0 for a query without any key.
//
// Why it exists: at a decoding step every (sentence, head) pair is a product of G <= 16 queries
// with S keys. Eager PyTorch runs it as two batched matrix multiplies with a softmax between
// them, each a separate pass over memory with per-matrix overhead; on a 2-core EPYC those read
// the keys and values at 7-9 GB/s against 30+ GB/s for a plain read. Here each key row is loaded
// once and scored against all G queries while it is in L1, and each value row is added into G
// accumulators the same way; the scores of one (row, head) pair never leave the cache.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "simd.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <utility>
#include <vector>

namespace {

using namespace seqattn::simd;

// Prefetch one row of V vectors of T (one instruction per 64-byte line).
template <typename T, int V>
inline void prefetch_row(const T* row) {
  constexpr int per_line = 64 / sizeof(T);
  for (int i = 0; i < V * 16; i += per_line) __builtin_prefetch(row + i);
}

// Rows [0, count) of ``base`` (``stride`` elements apart) as float rows: float operands are read
// in place; bf16 ones are widened once into ``staging`` (V * 16 floats a row), so that the
// queries of a block do not each widen them again. Returns the rows and their stride.
template <int V>
inline std::pair<const float*, int64_t> float_rows(const float* base, int64_t stride, int64_t, vec16*) {
  return {base, stride};
}
template <int V>
inline std::pair<const float*, int64_t> float_rows(const uint16_t* base, int64_t stride, int64_t count,
                                                   vec16* staging) {
  for (int64_t r = 0; r < count; ++r) {
    for (int c = 0; c < V; ++c) staging[r * V + c] = load(base + r * stride + 16 * c);
  }
  return {reinterpret_cast<const float*>(staging), V * 16};
}

// The rows a block reads: float operands in place; bf16 ones widened into ``staging`` once when
// several queries read them (Widen), or widened in registers by each load when one query does.
template <int V, bool Widen, typename T>
inline auto block_rows(const T* base, int64_t stride, int64_t count, vec16* staging) {
  if constexpr (Widen) {
    return float_rows<V>(base, stride, count, staging);
  } else {
    return std::pair<const T*, int64_t>{base, stride};
  }
}

inline float sum_lanes(vec16 v) {
  const vec8 a = __builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7) +
                 __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15);
  const vec4 b = __builtin_shufflevector(a, a, 0, 1, 2, 3) + __builtin_shufflevector(a, a, 4, 5, 6, 7);
  return (b[0] + b[2]) + (b[1] + b[3]);
}

// Lane i of the result: the sum of the lanes of part[i]. Four rounds of pairing (8, 4, 2, 1
// lanes per key) take 30 shuffles and 15 additions for 16 sums, against ~7 operations a sum
// for reducing each vector alone.
inline vec16 sum_16(const vec16* part) {
  vec16 a[8], b[4], c[2];
  for (int i = 0; i < 8; ++i) {
    const vec16 x = part[2 * i], y = part[2 * i + 1];
    a[i] = __builtin_shufflevector(x, y, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23) +
           __builtin_shufflevector(x, y, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
  }
  for (int i = 0; i < 4; ++i) {
    const vec16 x = a[2 * i], y = a[2 * i + 1];
    b[i] = __builtin_shufflevector(x, y, 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27) +
           __builtin_shufflevector(x, y, 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31);
  }
  for (int i = 0; i < 2; ++i) {
    const vec16 x = b[2 * i], y = b[2 * i + 1];
    c[i] = __builtin_shufflevector(x, y, 0, 1, 4, 5, 8, 9, 12, 13, 16, 17, 20, 21, 24, 25, 28, 29) +
           __builtin_shufflevector(x, y, 2, 3, 6, 7, 10, 11, 14, 15, 18, 19, 22, 23, 26, 27, 30, 31);
  }
  return __builtin_shufflevector(c[0], c[1], 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30) +
         __builtin_shufflevector(c[0], c[1], 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
}

typedef int8_t bytes16 __attribute__((vector_size(16)));

// e^x for x <= 0 (scores after subtracting their row's maximum), for a float or 16 lanes at
// once: 2^(x log2 e) split into 2^n (exponent bits) times 2^f, f in [-0.5, 0.5], by a degree-7
// Taylor polynomial (relative error below 1e-8 before float rounding); round-to-nearest by
// adding and subtracting 1.5 * 2^23 (exact for |t| < 2^22). Below -87 the result is 0.
template <typename X, typename Bits>
inline X exp_nonpositive(X x) {
  const X lowest = X{} - 87.0f;
  const X clamped = x < lowest ? lowest : x;
  const X t = clamped * 1.4426950408889634f;
  const X n = (t + 12582912.0f) - 12582912.0f;
  const X f = (t - n) * 0.6931471805599453f;  // in [-0.347, 0.347]
  X p = f * (1.0f / 5040.0f) + 1.0f / 720.0f;
  p = p * f + 1.0f / 120.0f;
  p = p * f + 1.0f / 24.0f;
  p = p * f + 1.0f / 6.0f;
  p = p * f + 0.5f;
  p = p * f + 1.0f;
  p = p * f + 1.0f;
  Bits bits;
  if constexpr (std::is_same_v<X, float>) {
    bits = (static_cast<int32_t>(n) + 127) << 23;
  } else {
    bits = (__builtin_convertvector(n, Bits) + 127) << 23;
  }
  X two_n;
  std::memcpy(&two_n, &bits, sizeof(two_n));
  const X value = p * two_n;
  return x < lowest ? X{} : value;
}

void check_operand(const at::Tensor& t, const char* name, at::ScalarType dtype) {
  TORCH_CHECK(t.device().is_cpu(), name, " must be on the CPU");
  TORCH_CHECK(t.scalar_type() == dtype, name, " must be ", dtype, " like the query");
  TORCH_CHECK(t.dim() == 4, name, " must have 4 dimensions, got ", t.dim());
  TORCH_CHECK(t.stride(3) == 1, name, "'s last dimension must be contiguous");
}

template <typename T>
struct Operands {
  const T* q;
  const T* k;
  const T* v;
  const bool* mask;
  T* out;
  int64_t H, G, S, D, pairs;
  int64_t qs0, qs1, qs2, ks0, ks1, ks2, vs0, vs1, vs2, ms0, ms1, ms2, ms3;
  float scale;
};

// One (row, head) pair; V = D / 16 vectors per row (the head size a multiple of 16).
template <typename T, int V, bool Widen>
void attend_pair(const Operands<T>& o, int64_t pair, float* scores, vec16* q_local, vec16* acc,
                 vec16* staging) {
  const int64_t m = pair / o.H, h = pair % o.H;
  const int64_t G = o.G, S = o.S, D = o.D;
  const float lowest = -std::numeric_limits<float>::infinity();
  const T* k = o.k + m * o.ks0 + h * o.ks1;
  const T* v = o.v + m * o.vs0 + h * o.vs1;
  for (int64_t j = 0; j < G; ++j) {
    const T* q = o.q + m * o.qs0 + h * o.qs1 + j * o.qs2;
    for (int c = 0; c < V; ++c) q_local[j * V + c] = load(q + 16 * c) * o.scale;
  }
  // Scores, 16 keys at a time: the block's rows stay in L1 while every query meets them, and
  // the 16 dot products' partial sums are reduced together (sum_16).
  int64_t s0 = 0;
  for (; s0 + 16 <= S; s0 += 16) {
    const T* kb = k + s0 * o.ks2;
    // The same block's value rows, fetched towards the cache for the context below.
    for (int r = 0; r < 16; ++r) prefetch_row<T, V>(v + (s0 + r) * o.vs2);
    const auto [kf, kstride] = block_rows<V, Widen>(kb, o.ks2, 16, staging);
    for (int64_t j = 0; j < G; ++j) {
      const vec16* ql = q_local + j * V;
      vec16 part[16];
      for (int r = 0; r < 16; ++r) {
        const auto* kr = kf + r * kstride;
        vec16 dot = ql[0] * load(kr);
        for (int c = 1; c < V; ++c) dot += ql[c] * load(kr + 16 * c);
        part[r] = dot;
      }
      store(scores + j * S + s0, sum_16(part));
    }
  }
  for (int64_t s = s0; s < S; ++s) {
    const auto* kr = block_rows<V, Widen>(k + s * o.ks2, o.ks2, 1, staging).first;
    for (int64_t j = 0; j < G; ++j) {
      const vec16* ql = q_local + j * V;
      vec16 dot = ql[0] * load(kr);
      for (int c = 1; c < V; ++c) dot += ql[c] * load(kr + 16 * c);
      scores[j * S + s] = sum_lanes(dot);
    }
  }
  if (o.mask != nullptr) {
    const bool* mp = o.mask + m * o.ms0 + h * o.ms1;
    for (int64_t j = 0; j < G; ++j) {
      const bool* mrow = mp + j * o.ms2;
      float* sc = scores + j * S;
      if (o.ms3 == 1) {
        int64_t s = 0;
        for (; s + 16 <= S; s += 16) {
          bytes16 allowed;
          std::memcpy(&allowed, mrow + s, sizeof(allowed));
          const int16v keep = __builtin_convertvector(allowed, int16v);
          const vec16 x = load(sc + s);
          store(sc + s, keep != 0 ? x : vec16{} + lowest);
        }
        for (; s < S; ++s) sc[s] = mrow[s] ? sc[s] : lowest;
      } else {
        for (int64_t s = 0; s < S; ++s) sc[s] = mrow[s * o.ms3] ? sc[s] : lowest;
      }
    }
  }
  // Softmax per query, the normalisation folded into the output; no key: zero weights.
  float inverse[64];
  for (int64_t j = 0; j < G; ++j) {
    float* sc = scores + j * S;
    float top = lowest;
    int64_t s = 0;
    if (S >= 16) {
      vec16 tops = load(sc);
      for (s = 16; s + 16 <= S; s += 16) {
        const vec16 x = load(sc + s);
        tops = x > tops ? x : tops;
      }
      for (int i = 0; i < 16; ++i) top = tops[i] > top ? tops[i] : top;
    }
    for (; s < S; ++s) top = sc[s] > top ? sc[s] : top;
    if (top == lowest) {
      std::fill(sc, sc + S, 0.0f);
      inverse[j] = 0.0f;
      continue;
    }
    vec16 totals = vec16{};
    for (s = 0; s + 16 <= S; s += 16) {
      const vec16 e = exp_nonpositive<vec16, int16v>(load(sc + s) - top);
      store(sc + s, e);
      totals += e;
    }
    float total = sum_lanes(totals);
    for (; s < S; ++s) {
      const float e = exp_nonpositive<float, int32_t>(sc[s] - top);
      sc[s] = e;
      total += e;
    }
    inverse[j] = 1.0f / total;
  }
  // The next pair's key rows are fetched towards the cache during this context (which reads
  // the value rows fetched above), so the memory is busy while the arithmetic runs.
  const T* k_next = nullptr;
  if (pair + 1 < o.pairs) k_next = o.k + ((pair + 1) / o.H) * o.ks0 + ((pair + 1) % o.H) * o.ks1;
  // Context, 64 value rows at a time (16 KB at the usual head size, kept in L1 while every
  // query's accumulators, in registers, take them in).
  for (int64_t i = 0; i < G * V; ++i) acc[i] = vec16{};
  for (int64_t b0 = 0; b0 < S; b0 += 64) {
    const int64_t b1 = std::min<int64_t>(S, b0 + 64);
    if (k_next != nullptr) {
      for (int64_t r = b0; r < b1; ++r) prefetch_row<T, V>(k_next + r * o.ks2);
    }
    const auto [vf, vstride] = block_rows<V, Widen>(v + b0 * o.vs2, o.vs2, b1 - b0, staging);
    for (int64_t j = 0; j < G; ++j) {
      const float* w = scores + j * S + b0;
      vec16 a[V];
      for (int c = 0; c < V; ++c) a[c] = acc[j * V + c];
      for (int64_t s = 0; s < b1 - b0; ++s) {
        const auto* vr = vf + s * vstride;
        const float ws = w[s];
        for (int c = 0; c < V; ++c) a[c] += ws * load(vr + 16 * c);
      }
      for (int c = 0; c < V; ++c) acc[j * V + c] = a[c];
    }
  }
  for (int64_t j = 0; j < G; ++j) {
    T* out = o.out + ((m * G + j) * o.H + h) * D;
    for (int c = 0; c < V; ++c) store(out + 16 * c, acc[j * V + c] * inverse[j]);
  }
}

template <typename T>
using PairFn = void (*)(const Operands<T>&, int64_t, float*, vec16*, vec16*, vec16*);

template <typename T, bool Widen>
PairFn<T> pair_function(int64_t D) {
  switch (D) {
    case 16: return attend_pair<T, 1, Widen>;
    case 32: return attend_pair<T, 2, Widen>;
    case 48: return attend_pair<T, 3, Widen>;
    case 64: return attend_pair<T, 4, Widen>;
    case 80: return attend_pair<T, 5, Widen>;
    case 96: return attend_pair<T, 6, Widen>;
    case 128: return attend_pair<T, 8, Widen>;
    case 192: return attend_pair<T, 12, Widen>;
    case 256: return attend_pair<T, 16, Widen>;
    default: return nullptr;
  }
}

// bf16 rows are widened once into a staging block where two or more queries read them; one
// query widens each in registers as it loads it (no staging pass).
template <typename T>
PairFn<T> pair_function(int64_t D, int64_t G) {
  if constexpr (std::is_same_v<T, float>) {
    return pair_function<T, false>(D);
  } else {
    return G > 1 ? pair_function<T, true>(D) : pair_function<T, false>(D);
  }
}

template <typename T>
void run(const at::Tensor& query, const at::Tensor& keys, const at::Tensor& values,
         const c10::optional<at::Tensor>& mask, at::Tensor& out, double scale) {
  const int64_t M = query.size(0), H = query.size(1), G = query.size(2), D = query.size(3);
  const int64_t S = keys.size(2);
  const PairFn<T> pair = pair_function<T>(D, G);
  TORCH_CHECK(pair != nullptr, "head size ", D, " not supported (16, 32, 48, 64, 80, 96, 128, 192 or 256)");
  const bool masked = mask.has_value();
  const Operands<T> o{
      reinterpret_cast<const T*>(query.data_ptr()), reinterpret_cast<const T*>(keys.data_ptr()),
      reinterpret_cast<const T*>(values.data_ptr()), masked ? mask->data_ptr<bool>() : nullptr,
      reinterpret_cast<T*>(out.data_ptr()), H, G, S, D, M * H,
      query.stride(0), query.stride(1), query.stride(2), keys.stride(0), keys.stride(1),
      keys.stride(2), values.stride(0), values.stride(1), values.stride(2),
      masked ? mask->stride(0) : 0, masked ? mask->stride(1) : 0,
      masked ? mask->stride(2) : 0, masked ? mask->stride(3) : 0, static_cast<float>(scale)};
  // About 4 G S D flops a pair; a grain keeps tiny calls on one thread.
  const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(1, G * S * D));
  at::parallel_for(0, M * H, grain, [&](int64_t begin, int64_t end) {
    std::vector<float> scores(G * S);
    std::vector<vec16> q_local(G * D / 16), acc(G * D / 16);
    std::vector<vec16> staging(std::is_same_v<T, float> ? 0 : 64 * D / 16);  // 64 widened rows
    for (int64_t p = begin; p < end; ++p) {
      pair(o, p, scores.data(), q_local.data(), acc.data(), staging.data());
    }
  });
}

}  // namespace

at::Tensor few_query_attention(
    const at::Tensor& query,
    const at::Tensor& keys,
    const at::Tensor& values,
    const c10::optional<at::Tensor>& mask,
    double scale) {
  const auto dtype = query.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kBFloat16, "query must be float32 or bfloat16");
  check_operand(query, "query", dtype);
  check_operand(keys, "keys", dtype);
  check_operand(values, "values", dtype);
  const int64_t M = query.size(0), H = query.size(1), G = query.size(2), D = query.size(3);
  const int64_t S = keys.size(2);
  TORCH_CHECK(keys.size(0) == M && keys.size(1) == H && keys.size(3) == D, "keys do not match the query");
  TORCH_CHECK(
      values.size(0) == M && values.size(1) == H && values.size(2) == S && values.size(3) == D,
      "values do not match the keys");
  if (mask.has_value()) {
    const auto& m = *mask;
    TORCH_CHECK(m.scalar_type() == at::kBool, "mask must be boolean");
    TORCH_CHECK(m.dim() == 4 && m.size(0) == M && m.size(1) == H && m.size(2) == G && m.size(3) == S,
                "mask must be (M, H, G, S)");
  }
  TORCH_CHECK(G <= 64, "at most 64 queries per row and head, got ", G);

  // (M, G, H, D) in memory, returned as the (M, H, G, D) view.
  at::Tensor out = at::empty({M, G, H, D}, query.options());
  if (M == 0 || H == 0 || G == 0 || S == 0) {
    if (M * H * G > 0) out.zero_();
    return out.permute({0, 2, 1, 3});
  }
  if (dtype == at::kFloat) {
    run<float>(query, keys, values, mask, out, scale);
  } else {
    run<uint16_t>(query, keys, values, mask, out, scale);
  }
  return out.permute({0, 2, 1, 3});
}
