#include <string.h>
#include "kernel.h"

static float half_to_float(uint16_t h) {
	uint32_t sign = (uint32_t)(h & 0x8000) << 16;
	uint32_t exp = (h >> 10) & 0x1f;
	uint32_t mant = h & 0x3ff;
	uint32_t bits;
	if (exp == 0x1f) {
		bits = sign | 0x7f800000u | (mant << 13);
	} else if (exp != 0) {
		bits = sign | ((exp + 112) << 23) | (mant << 13);
	} else if (mant == 0) {
		bits = sign;
	} else {
		uint32_t e = 113;
		while ((mant & 0x400) == 0) {
			mant <<= 1;
			e--;
		}
		bits = sign | (e << 23) | ((mant & 0x3ff) << 13);
	}
	float f;
	memcpy(&f, &bits, sizeof f);
	return f;
}

// The portable loop converts through a table of all 65536 halves (256
// KiB, built once by hist_kernel_init): a load instead of the branches of
// half_to_float. It accumulates in float like the vector loops, so all
// round alike to within summation order.
static float half_table[65536];

static void build_table(void) {
	for (uint32_t h = 0; h < 65536; h++) half_table[h] = half_to_float((uint16_t)h);
}

void hist_dots_portable(const uint8_t *base, size_t stride, size_t voff, const int32_t *idx, int n,
	int dim, const float *q, int nq, float *out) {
	float acc[64];
	for (int i = 0; i < n; i++) {
		const uint8_t *v = base + (size_t)idx[i] * stride + voff;
		float *o = out + (size_t)i * (nq + 1);
		float ss = 0;
		if (nq == 1) {
			float a0 = 0, a1 = 0, s0 = 0, s1 = 0;
			int d = 0;
			for (; d + 2 <= dim; d += 2) {
				uint16_t h0, h1;
				memcpy(&h0, v + 2 * d, 2);
				memcpy(&h1, v + 2 * d + 2, 2);
				float x0 = half_table[h0], x1 = half_table[h1];
				a0 += x0 * q[d];
				a1 += x1 * q[d + 1];
				s0 += x0 * x0;
				s1 += x1 * x1;
			}
			for (; d < dim; d++) {
				uint16_t h;
				memcpy(&h, v + 2 * d, 2);
				float x = half_table[h];
				a0 += x * q[d];
				s0 += x * x;
			}
			o[0] = a0 + a1;
			o[1] = s0 + s1;
			continue;
		}
		for (int j0 = 0; j0 < nq; j0 += 64) {
			int nj = nq - j0 < 64 ? nq - j0 : 64;
			for (int j = 0; j < nj; j++) acc[j] = 0;
			ss = 0;
			for (int d = 0; d < dim; d++) {
				uint16_t h;
				memcpy(&h, v + 2 * d, 2);
				float x = half_table[h];
				ss += x * x;
				for (int j = 0; j < nj; j++) acc[j] += x * q[(size_t)(j0 + j) * dim + d];
			}
			for (int j = 0; j < nj; j++) o[j0 + j] = acc[j];
		}
		o[nq] = ss;
	}
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#define AVX2 __attribute__((target("avx2,fma,f16c")))

AVX2 static inline float hsum(__m256 v) {
	__m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
	s = _mm_add_ps(s, _mm_movehl_ps(s, s));
	s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
	return _mm_cvtss_f32(s);
}

AVX2 static inline __m256 load8(const uint8_t *p) {
	return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

// One query, the case of every text or image search: two independent
// accumulator pairs hide the FMA latency, and the loop is bound by memory.
AVX2 static void dots1_avx2(const uint8_t *base, size_t stride, size_t voff, const int32_t *idx, int n,
	int dim, const float *q, float *out) {
	int d8 = dim & ~15;
	for (int i = 0; i < n; i++) {
		const uint8_t *v = base + (size_t)idx[i] * stride + voff;
		if (i + 2 < n) {
			const uint8_t *next = base + (size_t)idx[i + 2] * stride + voff;
			_mm_prefetch((const char *)next, _MM_HINT_T0);
		}
		__m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
		__m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
		int d = 0;
		for (; d < d8; d += 16) {
			__m256 x0 = load8(v + 2 * d), x1 = load8(v + 2 * d + 16);
			a0 = _mm256_fmadd_ps(x0, _mm256_loadu_ps(q + d), a0);
			a1 = _mm256_fmadd_ps(x1, _mm256_loadu_ps(q + d + 8), a1);
			s0 = _mm256_fmadd_ps(x0, x0, s0);
			s1 = _mm256_fmadd_ps(x1, x1, s1);
		}
		float dot = hsum(_mm256_add_ps(a0, a1)), ss = hsum(_mm256_add_ps(s0, s1));
		for (; d < dim; d++) {
			uint16_t h;
			memcpy(&h, v + 2 * d, 2);
			float x = _cvtsh_ss(h);
			dot += x * q[d];
			ss += x * x;
		}
		out[2 * i] = dot;
		out[2 * i + 1] = ss;
	}
}

// Several queries (a label search scores every label): each vector is
// converted once per block of 8 values and multiplied into every query.
AVX2 static void dotsn_avx2(const uint8_t *base, size_t stride, size_t voff, const int32_t *idx, int n,
	int dim, const float *q, int nq, float *out) {
	__m256 acc[32];
	int d8 = dim & ~7;
	for (int i = 0; i < n; i++) {
		const uint8_t *v = base + (size_t)idx[i] * stride + voff;
		float *o = out + (size_t)i * (nq + 1);
		float ss = 0;
		for (int j0 = 0; j0 < nq; j0 += 32) {
			int nj = nq - j0 < 32 ? nq - j0 : 32;
			const float *qb = q + (size_t)j0 * dim;
			for (int j = 0; j < nj; j++) acc[j] = _mm256_setzero_ps();
			__m256 s = _mm256_setzero_ps();
			int d = 0;
			for (; d < d8; d += 8) {
				__m256 x = load8(v + 2 * d);
				s = _mm256_fmadd_ps(x, x, s);
				for (int j = 0; j < nj; j++)
					acc[j] = _mm256_fmadd_ps(x, _mm256_loadu_ps(qb + (size_t)j * dim + d), acc[j]);
			}
			float tail[32] = {0};
			float ts = 0;
			for (; d < dim; d++) {
				uint16_t h;
				memcpy(&h, v + 2 * d, 2);
				float x = _cvtsh_ss(h);
				ts += x * x;
				for (int j = 0; j < nj; j++) tail[j] += x * qb[(size_t)j * dim + d];
			}
			for (int j = 0; j < nj; j++) o[j0 + j] = hsum(acc[j]) + tail[j];
			ss = hsum(s) + ts;
		}
		o[nq] = ss;
	}
}

static int have_avx2 = -1;

static int use_avx2(void) {
	if (have_avx2 < 0) {
		__builtin_cpu_init();
		have_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
			__builtin_cpu_supports("f16c");
	}
	return have_avx2;
}

void hist_dots(const uint8_t *base, size_t stride, size_t voff, const int32_t *idx, int n,
	int dim, const float *q, int nq, float *out) {
	if (nq >= 1 && use_avx2()) {
		if (nq == 1)
			dots1_avx2(base, stride, voff, idx, n, dim, q, out);
		else
			dotsn_avx2(base, stride, voff, idx, n, dim, q, nq, out);
		return;
	}
	hist_dots_portable(base, stride, voff, idx, n, dim, q, nq, out);
}

const char *hist_kernel(void) {
	build_table();
	return use_avx2() ? "avx2+f16c" : "portable";
}

#else

void hist_dots(const uint8_t *base, size_t stride, size_t voff, const int32_t *idx, int n,
	int dim, const float *q, int nq, float *out) {
	hist_dots_portable(base, stride, voff, idx, n, dim, q, nq, out);
}

const char *hist_kernel(void) {
	build_table();
	return "portable";
}

#endif
