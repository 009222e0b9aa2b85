// Sixteen-lane vectors for seqattn's CPU kernels (GCC/Clang vector extensions: one AVX-512
// register, two AVX2 ones; the compiler picks the instructions for -march=native), with loads
// and stores of float32 and bfloat16 rows.

#pragma once

#include <cstdint>
#include <cstring>

namespace seqattn::simd {

// Sixteen floats as one vector (one AVX-512 register, two AVX2 ones); loads and stores through
// the unaligned type.
typedef float vec16 __attribute__((vector_size(64)));
typedef float vec16u __attribute__((vector_size(64), aligned(4)));
typedef float vec8 __attribute__((vector_size(32)));
typedef float vec4 __attribute__((vector_size(16)));

inline vec16 load(const float* p) { return *reinterpret_cast<const vec16u*>(p); }
inline void store(float* p, vec16 v) { *reinterpret_cast<vec16u*>(p) = v; }

// bf16 operands (stored as their 16 bits): widened to float on load (the bf16 bits are the high
// half of the float's), rounded to nearest even on store. The arithmetic stays in float.
typedef uint16_t half16 __attribute__((vector_size(32), aligned(2)));
typedef uint32_t word16 __attribute__((vector_size(64)));

inline vec16 load(const uint16_t* p) {
  const word16 bits = __builtin_convertvector(*reinterpret_cast<const half16*>(p), word16) << 16;
  vec16 value;
  std::memcpy(&value, &bits, sizeof(value));
  return value;
}
inline void store(uint16_t* p, vec16 v) {
  word16 bits;
  std::memcpy(&bits, &v, sizeof(bits));
  bits += ((bits >> 16) & 1u) + 0x7FFFu;
  *reinterpret_cast<half16*>(p) = __builtin_convertvector(bits >> 16, half16);
}

typedef int32_t int16v __attribute__((vector_size(64)));

// One element at a time (the tails of the vector loops), rounded the same way.
inline float widen(float v) { return v; }
inline float widen(uint16_t v) {
  const uint32_t bits = static_cast<uint32_t>(v) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}
inline void narrow(float v, float* p) { *p = v; }
inline void narrow(float v, uint16_t* p) {
  uint32_t bits;
  std::memcpy(&bits, &v, sizeof(bits));
  bits += ((bits >> 16) & 1u) + 0x7FFFu;
  *p = static_cast<uint16_t>(bits >> 16);
}

}  // namespace seqattn::simd
