#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <thread>
#include <vector>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
static inline __m512i sum16(const __m512i* a) {
  // Lane i of the result is the sum of the 16 lanes of a[i]: a transpose-and-add tree (45
  // instructions for 16 sums, where 16 horizontal reductions take about 150).
  __m512i b[8], d[4];
  for (int i = 0; i < 8; ++i)
    b[i] = _mm512_add_epi32(_mm512_unpacklo_epi32(a[2 * i], a[2 * i + 1]),
                            _mm512_unpackhi_epi32(a[2 * i], a[2 * i + 1]));
  for (int i = 0; i < 4; ++i)
    d[i] = _mm512_add_epi32(_mm512_unpacklo_epi64(b[2 * i], b[2 * i + 1]),
                            _mm512_unpackhi_epi64(b[2 * i], b[2 * i + 1]));
  const __m512i f01 = _mm512_add_epi32(_mm512_shuffle_i32x4(d[0], d[1], 0x88), _mm512_shuffle_i32x4(d[0], d[1], 0xDD));
  const __m512i f23 = _mm512_add_epi32(_mm512_shuffle_i32x4(d[2], d[3], 0x88), _mm512_shuffle_i32x4(d[2], d[3], 0xDD));
  return _mm512_add_epi32(_mm512_shuffle_i32x4(f01, f23, 0x88), _mm512_shuffle_i32x4(f01, f23, 0xDD));
}
#endif

// ---------------------------------------------------------------------------------------------
// Parallel parts run on torch's own OpenMP workers: torch loads its libgomp.so.1 first, and this
// library, built with -fopenmp, binds to that same runtime by its soname. A pool of our own would
// spin against torch's workers for the same two cores (measured: a decode step's median went from
// 0.8 to 1.5 ms), and a thread started per call costs about what splitting a decode step saves.
// Without OpenMP (the build falls back to plain C++), threads are started per call.

template <class F>
static void parallel(int64_t n, const F& part) {  // a template: a std::function would allocate per call
#if defined(_OPENMP)
  if (n > 1) {
#pragma omp parallel for num_threads(n) schedule(static, 1)
    for (int64_t i = 0; i < n; ++i) part(i);
    return;
  }
#else
  if (n > 1) {
    std::vector<std::thread> pool;
    for (int64_t i = 1; i < n; ++i) pool.emplace_back(part, i);
    part(0);
    for (auto& t : pool) t.join();
    return;
  }
#endif
  if (n == 1) part(0);
}

static std::atomic<int64_t> scratch_grows{0};

template <class T, int Slot>
static T* scratch(size_t n) {
  // Scratch of the calling thread, kept for the thread's life (torch's OpenMP workers live as long as
  // the process) and only grown: after the first step of a shape a step allocates nothing. Slot keeps
  // apart buffers that are live at once on one thread. dsa_scratch_grows counts the growths.
  static thread_local std::vector<T> buf;
  if (buf.size() < n) {
    buf.resize(n);
    scratch_grows.fetch_add(1, std::memory_order_relaxed);
  }
  return buf.data();
}

extern "C" int64_t dsa_scratch_grows() { return scratch_grows.load(); }

static inline uint64_t order_key(float s, int64_t t) {
  uint32_t u;
  std::memcpy(&u, &s, 4);
  u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);  // float order as unsigned order
  return ((uint64_t)u << 32) | (uint64_t)t;       // equal scores: the later position ranks higher
}

static inline void quantize_query(const float* qr, const float* wr, int64_t H, int64_t d, int8_t* qi, float* qw,
                                  int32_t* qsum) {
  // The same int8 rounding as quantize_int8, per head; qw folds the head weight and the scale, and
  // qsum is the dot of q with the +128 that makes the keys unsigned for VNNI.
  for (int64_t h = 0; h < H; ++h) {
    float amax = 0.f;
    for (int64_t j = 0; j < d; ++j) amax = std::max(amax, std::fabs(qr[h * d + j]));
    const float scale = std::max(amax, 1e-12f) / 127.0f;
    int32_t sum = 0;
    for (int64_t j = 0; j < d; ++j) {
      qi[h * d + j] = (int8_t)std::nearbyint(qr[h * d + j] / scale);
      sum += qi[h * d + j];
    }
    qw[h] = wr[h] * scale;
    qsum[h] = 128 * sum;
  }
}

static void score_keys(const int8_t* qi, const float* qw, const int32_t* qsum, int64_t H, int64_t d,
                       const int8_t* kb, const float* sb, const uint8_t* vb, int64_t t0, int64_t t1, float* out,
                       uint64_t* ord) {
  // Index scores of one row's keys t0..t1 (t0 a multiple of 16 keeps the VNNI blocks aligned to the
  // rows) into out and their order keys into ord, both indexed by token.
  const float neg_inf = -std::numeric_limits<float>::infinity();
  int64_t t = t0;
#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
  if (d == 64) {  // 16 tokens at a time: one key row per register, the 16 dot products summed together
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    for (; t + 16 <= t1; t += 16) {
      __m512i ku[16], acc[16];
      for (int u = 0; u < 16; ++u) ku[u] = _mm512_xor_si512(_mm512_loadu_si512(kb + (t + u) * 64), flip);
      __m512 sc = _mm512_setzero_ps();
      for (int64_t h = 0; h < H; ++h) {
        const __m512i qh = _mm512_loadu_si512(qi + h * 64);
        for (int u = 0; u < 16; ++u) acc[u] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ku[u], qh);
        const __m512i dots = _mm512_sub_epi32(sum16(acc), _mm512_set1_epi32(qsum[h]));
        const __m512 relu = _mm512_cvtepi32_ps(_mm512_max_epi32(dots, _mm512_setzero_si512()));
        sc = _mm512_fmadd_ps(_mm512_set1_ps(qw[h]), relu, sc);
      }
      sc = _mm512_add_ps(_mm512_mul_ps(sc, _mm512_loadu_ps(sb + t)), _mm512_setzero_ps());
      _mm512_storeu_ps(out + t, sc);
      for (int u = 0; u < 16; ++u) {
        float s = out[t + u];
        if (vb && !vb[t + u]) s = out[t + u] = neg_inf;
        ord[t + u] = order_key(s, t + u);
      }
    }
  }
#endif
  for (; t < t1; ++t) {
    const int8_t* kt = kb + t * d;
    float s = 0.f;
#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
    if (d % 64 == 0) {
      const __m512i flip = _mm512_set1_epi8((char)0x80);
      for (int64_t h = 0; h < H; ++h) {
        __m512i acc = _mm512_setzero_si512();
        for (int64_t j = 0; j < d; j += 64) {
          const __m512i ku = _mm512_xor_si512(_mm512_loadu_si512(kt + j), flip);
          acc = _mm512_dpbusd_epi32(acc, ku, _mm512_loadu_si512(qi + h * d + j));
        }
        const int32_t dot = _mm512_reduce_add_epi32(acc) - qsum[h];
        if (dot > 0) s += qw[h] * (float)dot;
      }
    } else
#endif
    {
      for (int64_t h = 0; h < H; ++h) {
        const int8_t* qh = qi + h * d;
        int32_t dot = 0;
        for (int64_t j = 0; j < d; ++j) dot += (int32_t)qh[j] * (int32_t)kt[j];
        if (dot > 0) s += qw[h] * (float)dot;
      }
    }
    s = s * sb[t] + 0.0f;  // + 0 turns -0 into +0: both zeros tie, as in select_topk
    if (vb && !vb[t]) s = neg_inf;
    out[t] = s;
    ord[t] = order_key(s, t);
  }
}

static int64_t keep_top(uint64_t* ord, int64_t n, int64_t k) {
  // The k largest order keys of ord[0..n) to its front (in no order); returns how many were kept.
  if (k < n) std::nth_element(ord, ord + (k - 1), ord + n, std::greater<uint64_t>());
  return std::min(k, n);
}

extern "C" int dsa_decode_select(const float* q, const float* w, const int8_t* keys, const float* kscale,
                                 const uint8_t* valid, int64_t B, int64_t H, int64_t d, int64_t cap,
                                 int64_t n, int64_t k, float* scores, uint64_t* order, int64_t* idx,
                                 uint8_t* sel, int64_t threads) {
  // q (B, H, d) rotated fp32 queries, w (B, H), keys (B, cap, d) int8, kscale (B, cap), valid (B, cap)
  // or null; the first n keys are scored into scores (B, cap) and the top k go to idx, sel (B, k).
  // threads > 1 splits each row's keys into that many ranges: every thread scores its range and keeps
  // its top k, and the top k of those candidates is the row's (order keys are unique, so the same set
  // as one pass). One thread alone decodes at a fraction of the machine's bandwidth.
  if (H * d > 8192 || H > 256 || k > n || k < 1) return 1;
  int8_t qi[8192];
  float qw[256];
  int32_t qsum[256];
  const float neg_inf = -std::numeric_limits<float>::infinity();
  threads = std::max<int64_t>(1, std::min<int64_t>(threads, 64));  // the caller decides when a split pays
  int64_t bounds[65], kept[64];  // on the stack: a decode step allocates nothing
  for (int64_t b = 0; b < B; ++b) {
    quantize_query(q + b * H * d, w + b * H, H, d, qi, qw, qsum);
    const int8_t* kb = keys + b * cap * d;
    const float* sb = kscale + b * cap;
    const uint8_t* vb = valid ? valid + b * cap : nullptr;
    float* out = scores + b * cap;
    uint64_t* ord = order + b * cap;
    for (int64_t w0 = 0; w0 <= threads; ++w0) bounds[w0] = std::min(n, (n * w0 / threads + 15) / 16 * 16);
    auto part = [&](int64_t w0) {
      score_keys(qi, qw, qsum, H, d, kb, sb, vb, bounds[w0], bounds[w0 + 1], out, ord);
      kept[w0] = keep_top(ord + bounds[w0], bounds[w0 + 1] - bounds[w0], k);
    };
    parallel(threads, part);
    int64_t m = kept[0];
    for (int64_t w0 = 1; w0 < threads; ++w0) {  // candidates side by side; each range starts at or after m
      std::memmove(ord + m, ord + bounds[w0], kept[w0] * sizeof(uint64_t));
      m += kept[w0];
    }
    keep_top(ord, m, k);
    for (int64_t i = 0; i < k; ++i) {
      const int64_t t = (int64_t)(ord[i] & 0xffffffffu);
      idx[b * k + i] = t;
      sel[b * k + i] = out[t] != neg_inf;
    }
  }
  return 0;
}

static inline float exp_approx(float x) {
  // e^x for x <= 0 to ~2e-7 relative: 2^(x log2 e), the fraction by a degree-6 polynomial. Plain
  // arithmetic, so the loops that call it vectorize (std::exp would not without -ffast-math).
  x = std::max(x, -87.0f);
  const float t = x * 1.4426950409f;
  const float fi = std::floor(t);
  const float f = t - fi;
  const float p = 1.0f + f * (0.6931471806f + f * (0.2402265070f + f * (0.0555041087f +
                  f * (0.0096181291f + f * (0.0013333558f + f * 0.0001540353f)))));
  int32_t bits = ((int32_t)fi + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, 4);
  return p * scale;
}

static inline void prefetch_row(const float* row, int64_t D) {
  for (int64_t j = 0; j < D; j += 16) __builtin_prefetch(row + j);
}

static void attend_keys(const float* __restrict qt, const float* kb, const float* vb, const int64_t* ir,
                        const uint8_t* sr, int64_t H, int64_t D, int64_t i0, int64_t i1, float* att,
                        float* __restrict mx, float* __restrict sum, float* __restrict o) {
  // One query over its selected keys i0..i1: per head the largest logit mx, the sum of e^(logit - mx)
  // and o (H, D) the unnormalized weighted values. qt (D, H) is the pre-scaled query, heads innermost so
  // one key row serves all heads (MQA) and the loops vectorize over heads; att ((i1 - i0), H) scratch.
  // A range whose keys are all masked gives mx -inf, sum 0 and o 0.
  float* __restrict s = scratch<float, 0>(2 * H);
  float* __restrict ref = s + H;
  const float neg_inf = -std::numeric_limits<float>::infinity();
  for (int64_t h = 0; h < H; ++h) mx[h] = neg_inf, sum[h] = 0.f;
  for (int64_t i = i0; i < i1; ++i) {  // row i - i0 of att holds key i's logits for all heads
    const float* __restrict kr = kb + ir[i] * D;
    float* __restrict ai = att + (i - i0) * H;
    if (i + 16 < i1) {  // rows are scattered: ask early, for the value row too (read in the last pass)
      prefetch_row(kb + ir[i + 16] * D, D);
      prefetch_row(vb + ir[i + 16] * D, D);
    }
    int64_t h0 = 0;
#if defined(__AVX512F__)
    for (; h0 + 16 <= H; h0 += 16) {  // 16 heads in one register across the whole dot product
      __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
      int64_t j = 0;
      for (; j + 4 <= D; j += 4)  // four chains: one would wait on each FMA's latency
        for (int u = 0; u < 4; ++u)
          acc[u] = _mm512_fmadd_ps(_mm512_loadu_ps(qt + (j + u) * H + h0), _mm512_set1_ps(kr[j + u]), acc[u]);
      for (; j < D; ++j)
        acc[0] = _mm512_fmadd_ps(_mm512_loadu_ps(qt + j * H + h0), _mm512_set1_ps(kr[j]), acc[0]);
      _mm512_storeu_ps(s + h0, _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3])));
    }
#endif
    for (int64_t h = h0; h < H; ++h) {
      float acc = 0.f;
      for (int64_t j = 0; j < D; ++j) acc += qt[j * H + h] * kr[j];
      s[h] = acc;
    }
    const float mask = sr[i] != 0 ? 0.f : neg_inf;
#pragma GCC ivdep
    for (int64_t h = 0; h < H; ++h) {
      ai[h] = s[h] + mask;
      mx[h] = std::max(mx[h], ai[h]);
    }
  }
  for (int64_t h = 0; h < H; ++h) ref[h] = mx[h] == neg_inf ? 0.f : mx[h];  // all masked: -inf - -inf is nan
  for (int64_t i = i0; i < i1; ++i) {
    float* __restrict ai = att + (i - i0) * H;
    const float keep = sr[i] != 0 ? 1.f : 0.f;  // masked: -inf clamps to e^-87 in exp_approx, zeroed
#pragma GCC ivdep
    for (int64_t h = 0; h < H; ++h) {
      ai[h] = exp_approx(ai[h] - ref[h]) * keep;
      sum[h] += ai[h];
    }
  }
  for (int64_t x = 0; x < H * D; ++x) o[x] = 0.f;
  for (int64_t i = i0; i < i1; ++i) {
    const float* __restrict vr = vb + ir[i] * D;
    const float* __restrict ai = att + (i - i0) * H;
    if (i + 8 < i1) prefetch_row(vb + ir[i + 8] * D, D);
#if defined(__AVX512F__)
    if (D % 16 == 0) {
      for (int64_t j0 = 0; j0 < D; j0 += 16) {  // a 16-wide slice of the value row, reused by all heads
        const __m512 vj = _mm512_loadu_ps(vr + j0);
        for (int64_t h = 0; h < H; ++h) {
          float* oh = o + h * D + j0;
          _mm512_storeu_ps(oh, _mm512_fmadd_ps(_mm512_set1_ps(ai[h]), vj, _mm512_loadu_ps(oh)));
        }
      }
    } else
#endif
    {
      for (int64_t h = 0; h < H; ++h) {
        const float p = ai[h];
        float* __restrict oh = o + h * D;
        for (int64_t j = 0; j < D; ++j) oh[j] += p * vr[j];
      }
    }
  }
}

static void transpose_query(const float* qr, int64_t H, int64_t D, float scale, float* qt) {
  for (int64_t h = 0; h < H; ++h)
    for (int64_t j = 0; j < D; ++j) qt[j * H + h] = qr[h * D + j] * scale;
}

static void attend_rows(const float* q, const float* keys, const float* values, const int64_t* idx,
                        const uint8_t* sel, int64_t Lq, int64_t H, int64_t D, int64_t cap, int64_t k,
                        int64_t r0, int64_t r1, float scale, float* att, float* out) {
  // Rows r0..r1 of the (B * Lq) queries, each over all its k keys; att (k, H) scratch of this thread.
  float* qt = scratch<float, 1>(H * D + 2 * H);
  float* mx = qt + H * D;
  float* sum = mx + H;
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t b = r / Lq;
    transpose_query(q + r * H * D, H, D, scale, qt);
    float* o = out + r * H * D;
    attend_keys(qt, keys + b * cap * D, values + b * cap * D, idx + r * k, sel + r * k, H, D, 0, k, att, mx, sum,
                o);
    for (int64_t h = 0; h < H; ++h)
      for (int64_t j = 0; j < D; ++j) o[h * D + j] /= sum[h];
  }
}

static void attend_split(const float* q, const float* keys, const float* values, const int64_t* idx,
                         const uint8_t* sel, int64_t H, int64_t D, int64_t k, int64_t threads, float scale,
                         float* att, float* out) {
  // One query, its k keys split into `threads` ranges attended side by side, then merged as in flash
  // attention: each range's sum and values rescaled by e^(its max - the overall max). Decode has a
  // single query, and one thread alone reads the selected rows at a fraction of the bandwidth.
  float* qt = scratch<float, 1>(H * D + threads * H * (2 + D));
  float* mx = qt + H * D;
  float* sum = mx + threads * H;
  float* part = sum + threads * H;
  transpose_query(q, H, D, scale, qt);
  auto range = [&](int64_t w0) {
    const int64_t i0 = k * w0 / threads, i1 = k * (w0 + 1) / threads;
    attend_keys(qt, keys, values, idx, sel, H, D, i0, i1, att + i0 * H, mx + w0 * H, sum + w0 * H,
                part + w0 * H * D);
  };
  parallel(threads, range);
  const float neg_inf = -std::numeric_limits<float>::infinity();
  for (int64_t h = 0; h < H; ++h) {
    float top = neg_inf;
    for (int64_t w0 = 0; w0 < threads; ++w0) top = std::max(top, mx[w0 * H + h]);
    float total = 0.f;
    float* o = out + h * D;
    for (int64_t j = 0; j < D; ++j) o[j] = 0.f;
    for (int64_t w0 = 0; w0 < threads; ++w0) {
      const float m = mx[w0 * H + h];
      if (m == neg_inf) continue;  // no visible key in this range
      const float f = exp_approx(m - top);
      total += f * sum[w0 * H + h];
      const float* p = part + (w0 * H + h) * D;
      for (int64_t j = 0; j < D; ++j) o[j] += f * p[j];
    }
    for (int64_t j = 0; j < D; ++j) o[j] /= total;
  }
}

extern "C" int dsa_sparse_attend(const float* q, const float* keys, const float* values, const int64_t* idx,
                                 const uint8_t* sel, int64_t B, int64_t Lq, int64_t H, int64_t D, int64_t cap,
                                 int64_t k, float* att, float* out, int64_t threads, float scale) {
  // q (B, Lq, H, D), scaled here by `scale`, each over its own k keys idx (B, Lq, k) (sel marks the
  // real ones) of keys and values (B, cap, D): out (B, Lq, H, D). att holds max(threads, 1) * H * k
  // floats of scratch. Rows split over the threads; a single row (a decode step) splits its keys instead.
  const int64_t rows = B * Lq;
  if (rows == 1 && threads > 1) {
    attend_split(q, keys, values, idx, sel, H, D, k, std::min(threads, k), scale, att, out);
    return 0;
  }
  threads = std::max<int64_t>(1, std::min(threads, rows));
  if (threads == 1) {
    attend_rows(q, keys, values, idx, sel, Lq, H, D, cap, k, 0, rows, scale, att, out);
    return 0;
  }
  parallel(threads, [&](int64_t w) {
    attend_rows(q, keys, values, idx, sel, Lq, H, D, cap, k, rows * w / threads, rows * (w + 1) / threads, scale,
                att + w * H * k, out);
  });
  return 0;
}

// ---------------------------------------------------------------------------------------------
// Prefill select: every query of a chunk scores its visible keys (causal, and valid) from the int8
// cache and keeps its top k. Keys are first packed so that 16 tokens' dot products accumulate in
// the 16 lanes of one register (4 dims per lane per VNNI step), with no horizontal sums: 16
// instructions score 16 tokens for one head at d = 64, where the decode layout takes about 60.

extern "C" void dsa_pack_keys(const int8_t* keys, int64_t B, int64_t cap, int64_t d, int64_t n, uint8_t* packed) {
  // keys (B, cap, d) int8, first n used -> packed (B, ceil(n/16), d/4, 16, 4) uint8, +128 (VNNI
  // multiplies unsigned by signed); tokens past n are zeros, which score as key -128 and are cut.
  const int64_t blocks = (n + 15) / 16, groups = d / 4;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t blk = 0; blk < blocks; ++blk) {
      uint8_t* out = packed + ((b * blocks + blk) * groups) * 64;
      for (int64_t g = 0; g < groups; ++g)
        for (int64_t u = 0; u < 16; ++u) {
          const int64_t t = blk * 16 + u;
          for (int64_t i = 0; i < 4; ++i)
            out[g * 64 + u * 4 + i] = t < n ? (uint8_t)(keys[(b * cap + t) * d + g * 4 + i] ^ 0x80) : 0;
        }
    }
}

static void prefill_rows(const float* q, const float* w, const int8_t* keys, const uint8_t* packed,
                         const float* kscale, const uint8_t* valid, int64_t Lq, int64_t H, int64_t d,
                         int64_t cap, int64_t n_packed, int64_t q_offset, int64_t k, int64_t n_rows, int64_t first,
                         int64_t stride, int64_t* idx, uint8_t* sel) {
  // Rows in blocks of 8, from block `first` every `stride` blocks: later queries see more keys, so
  // interleaving balances the threads where contiguous halves would not.
  const float neg_inf = -std::numeric_limits<float>::infinity();
  const int64_t blocks = (n_packed + 15) / 16, groups = d / 4;
  const int64_t most = q_offset + Lq + 16;  // the keys the last query sees, and a block's overhang
  int8_t* qi = scratch<int8_t, 0>(H * d);
  float* qw = scratch<float, 2>(H + most);
  float* scores = qw + H;
  int32_t* qsum = scratch<int32_t, 0>(H);
  uint64_t* ord = scratch<uint64_t, 0>(most);
  for (int64_t r = first * 8; r < n_rows; r = (r % 8 == 7) ? r + 1 + (stride - 1) * 8 : r + 1) {
    const int64_t b = r / Lq, n = q_offset + r % Lq + 1;  // causal: the query sees keys 0..its own
    quantize_query(q + r * H * d, w + r * H, H, d, qi, qw, qsum);
    const float* sb = kscale + b * cap;
    const uint8_t* vb = valid ? valid + b * cap : nullptr;
    float* out = scores;
    int64_t t = 0;
#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
    if (d % 4 == 0 && n <= n_packed) {
      const uint8_t* pb = packed + b * blocks * groups * 64;
      for (; t < n; t += 16) {
        const uint8_t* blk = pb + (t / 16) * groups * 64;
        __m512 sc = _mm512_setzero_ps();
        for (int64_t h = 0; h < H; ++h) {
          const int32_t* q4 = reinterpret_cast<const int32_t*>(qi + h * d);
          __m512i acc0 = _mm512_setzero_si512(), acc1 = _mm512_setzero_si512();
          int64_t g = 0;
          for (; g + 2 <= groups; g += 2) {  // two chains: one would wait on each VNNI's latency
            acc0 = _mm512_dpbusd_epi32(acc0, _mm512_loadu_si512(blk + g * 64), _mm512_set1_epi32(q4[g]));
            acc1 = _mm512_dpbusd_epi32(acc1, _mm512_loadu_si512(blk + (g + 1) * 64), _mm512_set1_epi32(q4[g + 1]));
          }
          if (g < groups)
            acc0 = _mm512_dpbusd_epi32(acc0, _mm512_loadu_si512(blk + g * 64), _mm512_set1_epi32(q4[g]));
          const __m512i dots = _mm512_sub_epi32(_mm512_add_epi32(acc0, acc1), _mm512_set1_epi32(qsum[h]));
          const __m512 relu = _mm512_cvtepi32_ps(_mm512_max_epi32(dots, _mm512_setzero_si512()));
          sc = _mm512_fmadd_ps(_mm512_set1_ps(qw[h]), relu, sc);
        }
        // the scale row may end before the block does: load only the tokens that exist
        const __mmask16 live = (__mmask16)(t + 16 <= n ? 0xFFFF : ((1u << (n - t)) - 1));
        sc = _mm512_add_ps(_mm512_mul_ps(sc, _mm512_maskz_loadu_ps(live, sb + t)), _mm512_setzero_ps());
        _mm512_storeu_ps(out + t, sc);
      }
      t = n;
    }
#endif
    if (t < n)  // no packed copy here, or no VNNI: the decode select's scoring, key by key
      score_keys(qi, qw, qsum, H, d, keys + b * cap * d, sb, vb, t, n, out, ord);
    uint64_t* o = ord;
    for (t = 0; t < n; ++t) {
      if (vb && !vb[t]) out[t] = neg_inf;
      o[t] = order_key(out[t], t);
    }
    int64_t* ir = idx + r * k;
    uint8_t* sr = sel + r * k;
    const int64_t m = std::min(k, n);
    if (m < n) std::nth_element(o, o + (m - 1), o + n, std::greater<uint64_t>());
    for (int64_t i = 0; i < m; ++i) {
      const int64_t s = (int64_t)(o[i] & 0xffffffffu);
      ir[i] = s;
      sr[i] = out[s] != neg_inf;
    }
    for (int64_t i = m; i < k; ++i) ir[i] = 0, sr[i] = 0;  // fewer keys than k: masked slots
  }
}

extern "C" int dsa_prefill_select(const float* q, const float* w, const int8_t* keys, const uint8_t* packed,
                                  const float* kscale, const uint8_t* valid, int64_t B, int64_t Lq, int64_t H,
                                  int64_t d, int64_t cap, int64_t n_packed, int64_t q_offset, int64_t k,
                                  int64_t* idx, uint8_t* sel, int64_t threads) {
  // q (B, Lq, H, d) rotated fp32 queries at positions q_offset.., w (B, Lq, H); keys (B, cap, d) int8
  // with their packed copy of the first n_packed tokens (dsa_pack_keys), kscale and valid (B, cap)
  // (valid may be null): the top k visible keys of each query into idx, sel (B, Lq, k).
  if (k < 1 || q_offset + Lq > cap) return 1;
  const int64_t rows = B * Lq;
  threads = std::max<int64_t>(1, std::min(threads, rows));
  if (threads == 1) {
    prefill_rows(q, w, keys, packed, kscale, valid, Lq, H, d, cap, n_packed, q_offset, k, rows, 0, 1, idx, sel);
    return 0;
  }
  parallel(threads, [&](int64_t w0) {
    prefill_rows(q, w, keys, packed, kscale, valid, Lq, H, d, cap, n_packed, q_offset, k, rows, w0, threads, idx, sel);
  });
  return 0;
}
