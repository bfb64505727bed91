// quantlens::dynamic_linear_int8 -- the dynamic int8 Linear in three passes instead of ~16.
//
//   y = s[i] * ws[j] * sum_k (q[i,k] - z[i]) Wq[k,j] + b[j]
//
// 1. per row (or, per-tensor, once): lo = min(min x, 0), hi = max(max x, 0),
//    s = max((hi - lo) / 126, 1e-12), inv = 1 / s, z = rne(-lo * inv) and the int8 codes
//    q - z = rne(fma(x, inv, z)) - z: the float operations of
//    quantlens.nn.act_quant.activation_int8 in the same order, so the codes agree bit for
//    bit (round half to even; compiled with -ffp-contract=off, fma written out where
//    ATen's addcmul fuses);
// 2. at::_int_mm (int8 x int8 -> int32, exact);
// 3. y = fma(acc * ws[j], s[i], b[j]) written in place over the int32 accumulator.
// Passes 1 and 3 run over rows with at::parallel_for (torch.set_num_threads governs them).
//
// Built by `python -m quantlens.nn.build_kernels`; loaded by quantlens.nn.kernels.compiled.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#if defined(__AVX512F__) && defined(__AVX512BW__)
#include <immintrin.h>
#define QL_AVX512 1
#endif

namespace {

constexpr float kSteps = 126.0f;  // ACT_LEVELS - 1
constexpr float kEps = 1e-12f;
constexpr int64_t kGrainElems = 16384;  // elements per parallel chunk, at least

struct RowQ {
  float s;
  float inv;
  float z;
};

// The row's min and max; a NaN anywhere makes both NaN (as amin/amax propagate it).
void row_minmax(const float* x, int64_t k, float& lo, float& hi) {
  int64_t i = 0;
  float mn = INFINITY, mx = -INFINITY;
  bool nan = false;
#ifdef QL_AVX512
  __m512 vmn = _mm512_set1_ps(INFINITY), vmx = _mm512_set1_ps(-INFINITY);
  __mmask16 vnan = 0;
  for (; i + 16 <= k; i += 16) {
    __m512 v = _mm512_loadu_ps(x + i);
    vmn = _mm512_min_ps(vmn, v);
    vmx = _mm512_max_ps(vmx, v);
    vnan |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
  }
  if (i < k) {
    __mmask16 m = static_cast<__mmask16>((1u << (k - i)) - 1u);
    __m512 v = _mm512_maskz_loadu_ps(m, x + i);
    vmn = _mm512_mask_min_ps(vmn, m, vmn, v);
    vmx = _mm512_mask_max_ps(vmx, m, vmx, v);
    vnan |= _mm512_mask_cmp_ps_mask(m, v, v, _CMP_UNORD_Q);
    i = k;
  }
  mn = _mm512_reduce_min_ps(vmn);
  mx = _mm512_reduce_max_ps(vmx);
  nan = vnan != 0;
#endif
  for (; i < k; ++i) {
    mn = std::min(mn, x[i]);
    mx = std::max(mx, x[i]);
    nan = nan || std::isnan(x[i]);
  }
  lo = nan ? NAN : mn;
  hi = nan ? NAN : mx;
}

// The qparams of activation_int8 from a range: the same float32 operations in order.
RowQ qparams(float lo, float hi) {
  lo = std::min(lo, 0.0f);
  hi = std::max(hi, 0.0f);
  float s = (hi - lo) / kSteps;
  s = s < kEps ? kEps : s;
  float inv = 1.0f / s;
  float z = std::nearbyint(-lo * inv);
  return {s, inv, z};
}

// q[i] = rne(fma(x[i], inv, z)) - z as int8.
void row_codes(const float* x, int64_t k, RowQ p, int8_t* q) {
  int64_t i = 0;
#ifdef QL_AVX512
  const __m512 vinv = _mm512_set1_ps(p.inv), vz = _mm512_set1_ps(p.z);
  const __m512i vzi = _mm512_set1_epi32(static_cast<int32_t>(p.z));
  constexpr int kRound = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
  for (; i + 16 <= k; i += 16) {
    __m512 r = _mm512_roundscale_ps(_mm512_fmadd_ps(_mm512_loadu_ps(x + i), vinv, vz), kRound);
    __m512i c = _mm512_sub_epi32(_mm512_cvtps_epi32(r), vzi);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + i), _mm512_cvtepi32_epi8(c));
  }
  if (i < k) {
    __mmask16 m = static_cast<__mmask16>((1u << (k - i)) - 1u);
    __m512 v = _mm512_maskz_loadu_ps(m, x + i);
    __m512 r = _mm512_roundscale_ps(_mm512_fmadd_ps(v, vinv, vz), kRound);
    __m512i c = _mm512_sub_epi32(_mm512_cvtps_epi32(r), vzi);
    _mm512_mask_cvtepi32_storeu_epi8(q + i, m, c);
    i = k;
  }
#endif
  for (; i < k; ++i) {
    q[i] = static_cast<int8_t>(std::nearbyint(std::fma(x[i], p.inv, p.z)) - p.z);
  }
}

// y[j] = fma(acc[j] * ws[j], s, b[j]) (or acc[j] * ws[j] * s), in place: y aliases acc.
void row_epilogue(int32_t* acc, int64_t n, const float* ws, float s, const float* b) {
  float* y = reinterpret_cast<float*>(acc);
  int64_t j = 0;
#ifdef QL_AVX512
  const __m512 vs = _mm512_set1_ps(s);
  for (; j + 16 <= n; j += 16) {
    __m512 t = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_loadu_si512(acc + j)),
                             _mm512_loadu_ps(ws + j));
    t = b ? _mm512_fmadd_ps(t, vs, _mm512_loadu_ps(b + j)) : _mm512_mul_ps(t, vs);
    _mm512_storeu_ps(y + j, t);
  }
#endif
  for (; j < n; ++j) {
    float t = static_cast<float>(acc[j]) * ws[j];
    y[j] = b ? std::fma(t, s, b[j]) : t * s;
  }
}

int64_t grain_rows(int64_t row_elems) {
  return std::max<int64_t>(1, kGrainElems / std::max<int64_t>(1, row_elems));
}

// The int8 codes (M, K) and the per-row scales (M,) of x (rows of stride ldx).
void quantize_rows(const float* x, int64_t m, int64_t k, int64_t ldx, bool per_token,
                   int8_t* q, float* s) {
  if (per_token) {
    at::parallel_for(0, m, grain_rows(k), [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        float lo, hi;
        row_minmax(x + i * ldx, k, lo, hi);
        RowQ p = qparams(lo, hi);
        row_codes(x + i * ldx, k, p, q + i * k);
        s[i] = p.s;
      }
    });
    return;
  }
  std::vector<float> lows(m), highs(m);
  at::parallel_for(0, m, grain_rows(k), [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) row_minmax(x + i * ldx, k, lows[i], highs[i]);
  });
  float lo = INFINITY, hi = -INFINITY;
  bool nan = false;  // a NaN row makes the whole range NaN, as aminmax does
  for (int64_t i = 0; i < m; ++i) {
    nan = nan || std::isnan(lows[i]);
    lo = std::min(lo, lows[i]);
    hi = std::max(hi, highs[i]);
  }
  RowQ p = qparams(nan ? NAN : lo, nan ? NAN : hi);
  at::parallel_for(0, m, grain_rows(k), [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      row_codes(x + i * ldx, k, p, q + i * k);
      s[i] = p.s;
    }
  });
}

at::Tensor dynamic_linear_int8(const at::Tensor& x, const at::Tensor& wt,
                               const at::Tensor& w_scale, const std::optional<at::Tensor>& bias,
                               bool per_token) {
  TORCH_CHECK(x.dim() == 2 && x.scalar_type() == at::kFloat && x.device().is_cpu(),
              "dynamic_linear_int8: x must be a 2-D float32 CPU tensor");
  TORCH_CHECK(wt.dim() == 2 && wt.scalar_type() == at::kChar && wt.size(0) == x.size(1),
              "dynamic_linear_int8: wt must be int8 (K, N) with K = x.size(1)");
  const int64_t m = x.size(0), k = x.size(1), n = wt.size(1);
  TORCH_CHECK(m > 0 && k > 0, "dynamic_linear_int8: empty input");
  at::Tensor ws = w_scale.to(at::kFloat).contiguous();
  TORCH_CHECK(ws.numel() == n, "dynamic_linear_int8: w_scale must have N elements");
  at::Tensor b;
  if (bias.has_value() && bias->defined()) {
    b = bias->to(at::kFloat).contiguous();
    TORCH_CHECK(b.numel() == n, "dynamic_linear_int8: bias must have N elements");
  }
  at::Tensor xc = (x.stride(1) == 1 && x.stride(0) >= k) ? x : x.contiguous();

  at::Tensor q = at::empty({m, k}, x.options().dtype(at::kChar));
  std::vector<float> s(m);
  quantize_rows(xc.data_ptr<float>(), m, k, xc.stride(0), per_token, q.data_ptr<int8_t>(),
                s.data());

  at::Tensor acc = at::_int_mm(q, wt);  // (M, N) int32, exact
  TORCH_CHECK(acc.is_contiguous(), "dynamic_linear_int8: unexpected _int_mm layout");
  int32_t* a = acc.data_ptr<int32_t>();
  const float* wsp = ws.data_ptr<float>();
  const float* bp = b.defined() ? b.data_ptr<float>() : nullptr;
  at::parallel_for(0, m, grain_rows(n), [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) row_epilogue(a + i * n, n, wsp, s[i], bp);
  });
  return acc.view(at::kFloat);  // the same memory, now the float32 output
}

// The codes and scales alone (for tests and the reference comparison).
std::tuple<at::Tensor, at::Tensor> quantize_int8(const at::Tensor& x, bool per_token) {
  TORCH_CHECK(x.dim() == 2 && x.scalar_type() == at::kFloat && x.device().is_cpu(),
              "quantize_int8: x must be a 2-D float32 CPU tensor");
  const int64_t m = x.size(0), k = x.size(1);
  at::Tensor xc = (x.stride(1) == 1 && x.stride(0) >= k) ? x : x.contiguous();
  at::Tensor q = at::empty({m, k}, x.options().dtype(at::kChar));
  at::Tensor s = at::empty({m, 1}, x.options());
  if (m > 0 && k > 0) {
    quantize_rows(xc.data_ptr<float>(), m, k, xc.stride(0), per_token, q.data_ptr<int8_t>(),
                  s.data_ptr<float>());
  }
  return {q, per_token ? s : s.narrow(0, 0, std::min<int64_t>(m, 1))};
}

}  // namespace

TORCH_LIBRARY(quantlens, lib) {
  lib.def(
      "dynamic_linear_int8(Tensor x, Tensor wt, Tensor w_scale, Tensor? bias, "
      "bool per_token=True) -> Tensor");
  lib.def("quantize_int8(Tensor x, bool per_token=True) -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(quantlens, CPU, lib) {
  lib.impl("dynamic_linear_int8", &dynamic_linear_int8);
  lib.impl("quantize_int8", &quantize_int8);
}
