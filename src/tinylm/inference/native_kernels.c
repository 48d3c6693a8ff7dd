/*
 * tinylm's decode kernels: out = x W^T for a weight W held as int8 rows (with one
 * float32 scale per row) or as bfloat16, and an activation x held in float32.
 *
 * Why C: a one-token decoding step reads every weight once, so its time is the
 * bytes of weight it reads. torch has no CPU product that reads int8 or bfloat16
 * weights at memory speed with float32 activations on every CPU (its own
 * _weight_int8pack_mm was slower than float32 here), so decoding in those formats
 * paid for converting the whole matrix to float32 on every step. These loops
 * convert eight weights at a time in registers, multiply them into the running
 * sums and never write the float32 matrix anywhere.
 *
 * The arithmetic, for output row n and activation row m:
 *
 *     out[m][n] = scale[n] * sum_k x[m][k] * w[n][k]      (int8: w = q, a whole number)
 *     out[m][n] =            sum_k x[m][k] * w[n][k]      (bfloat16: w widened to float32)
 *
 * The sums run in float32 with several partial sums (one per vector lane and per
 * unrolled step), so they differ from a plain loop in the last bits only.
 *
 * Layout: x is (m, k) row-major, w is (n, k) row-major, out is (m, n) row-major.
 * Work is split over output rows (OpenMP threads when the compiler has it); each
 * block of weight rows is read from memory once and reused for every row of x.
 * With AVX2 and FMA the inner loops use 256-bit vectors; elsewhere (an ARM laptop,
 * an old x86) the same loops in plain C, which the compiler vectorises as it can.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define TINYLM_AVX2 1
#else
#define TINYLM_AVX2 0
#endif

/* One weight as float32. */
static inline float int8_value(const int8_t *w, int64_t i) { return (float)w[i]; }

static inline float bf16_value(const uint16_t *w, int64_t i) {
    uint32_t bits = (uint32_t)w[i] << 16; /* bfloat16 is float32's top half */
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

#if TINYLM_AVX2
/* Eight weights as eight float32 lanes. */
static inline __m256 int8_vector(const int8_t *w) {
    __m128i bytes = _mm_loadl_epi64((const __m128i *)w);
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(bytes));
}

static inline __m256 bf16_vector(const uint16_t *w) {
    __m128i halves = _mm_loadu_si128((const __m128i *)w);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(halves), 16));
}

static inline float lane_sum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
#endif

/*
 * The kernels for one weight type, written once and stamped out for int8 and
 * bfloat16 by the macro below (T: the stored type, VALUE / VECTOR: its widening).
 *
 * rows4_x1: four weight rows against one activation row, sixteen columns a step
 *   (eight independent sums keep the multiply-add units busy: the case of batch 1).
 * rows2_x4: two weight rows against four activation rows, eight columns a step
 *   (each converted weight vector is used four times: batches of four or more).
 * row_x1:   one weight row against one activation row (what is left over).
 */
#define TINYLM_KERNELS(NAME, T, VALUE, VECTOR)                                               \
    static void NAME##_row_x1(const float *x, const T *w, int64_t k, float *out) {           \
        float total = 0.0f;                                                                  \
        int64_t i = 0;                                                                       \
        TINYLM_VECTOR_ROW_X1(VECTOR)                                                         \
        for (; i < k; i++) total += x[i] * VALUE(w, i);                                      \
        *out = total;                                                                        \
    }                                                                                        \
                                                                                             \
    static void NAME##_rows4_x1(const float *x, const T *w, int64_t k, float *out) {         \
        const T *w0 = w, *w1 = w + k, *w2 = w + 2 * k, *w3 = w + 3 * k;                      \
        float t0 = 0.0f, t1 = 0.0f, t2 = 0.0f, t3 = 0.0f;                                    \
        int64_t i = 0;                                                                       \
        TINYLM_VECTOR_ROWS4_X1(VECTOR)                                                       \
        for (; i < k; i++) {                                                                 \
            float xi = x[i];                                                                 \
            t0 += xi * VALUE(w0, i);                                                         \
            t1 += xi * VALUE(w1, i);                                                         \
            t2 += xi * VALUE(w2, i);                                                         \
            t3 += xi * VALUE(w3, i);                                                         \
        }                                                                                    \
        out[0] = t0, out[1] = t1, out[2] = t2, out[3] = t3;                                  \
    }                                                                                        \
                                                                                             \
    /* out_row: the stride between the four outputs rows of x land in (n) */                \
    static void NAME##_rows2_x4(const float *x, const T *w, int64_t k, float *out,           \
                                int64_t out_row) {                                           \
        const T *w0 = w, *w1 = w + k;                                                        \
        const float *x0 = x, *x1 = x + k, *x2 = x + 2 * k, *x3 = x + 3 * k;                  \
        float t[8] = {0, 0, 0, 0, 0, 0, 0, 0};                                               \
        int64_t i = 0;                                                                       \
        TINYLM_VECTOR_ROWS2_X4(VECTOR)                                                       \
        for (; i < k; i++) {                                                                 \
            float a = VALUE(w0, i), b = VALUE(w1, i);                                        \
            t[0] += x0[i] * a, t[1] += x0[i] * b;                                            \
            t[2] += x1[i] * a, t[3] += x1[i] * b;                                            \
            t[4] += x2[i] * a, t[5] += x2[i] * b;                                            \
            t[6] += x3[i] * a, t[7] += x3[i] * b;                                            \
        }                                                                                    \
        for (int r = 0; r < 4; r++) out[r * out_row] = t[2 * r], out[r * out_row + 1] = t[2 * r + 1]; \
    }                                                                                        \
                                                                                             \
    /* Rows [first, last) of the output, for every row of x. */                             \
    static void NAME##_rows(const float *x, int64_t m, int64_t k, const T *w,               \
                            const float *scale, int64_t n, float *out, int64_t first,        \
                            int64_t last) {                                                  \
        int64_t r = first;                                                                   \
        if (m >= 4) {                                                                        \
            for (; r + 2 <= last; r += 2) {                                                  \
                int64_t b = 0;                                                               \
                for (; b + 4 <= m; b += 4)                                                   \
                    NAME##_rows2_x4(x + b * k, w + r * k, k, out + b * n + r, n);            \
                for (; b < m; b++) {                                                         \
                    NAME##_row_x1(x + b * k, w + r * k, k, out + b * n + r);                 \
                    NAME##_row_x1(x + b * k, w + (r + 1) * k, k, out + b * n + r + 1);       \
                }                                                                            \
            }                                                                                \
        } else {                                                                             \
            for (; r + 4 <= last; r += 4)                                                    \
                for (int64_t b = 0; b < m; b++)                                              \
                    NAME##_rows4_x1(x + b * k, w + r * k, k, out + b * n + r);               \
        }                                                                                    \
        for (; r < last; r++)                                                                \
            for (int64_t b = 0; b < m; b++) NAME##_row_x1(x + b * k, w + r * k, k, out + b * n + r); \
        if (scale)                                                                           \
            for (int64_t b = 0; b < m; b++)                                                  \
                for (int64_t j = first; j < last; j++) out[b * n + j] *= scale[j];           \
    }

#if TINYLM_AVX2
#define TINYLM_VECTOR_ROW_X1(VECTOR)                                                         \
    {                                                                                        \
        __m256 s = _mm256_setzero_ps();                                                      \
        for (; i + 8 <= k; i += 8) s = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), VECTOR(w + i), s); \
        total = lane_sum(s);                                                                 \
    }
#define TINYLM_VECTOR_ROWS4_X1(VECTOR)                                                       \
    {                                                                                        \
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;                          \
        __m256 b0 = a0, b1 = a0, b2 = a0, b3 = a0;                                           \
        for (; i + 16 <= k; i += 16) {                                                       \
            __m256 xa = _mm256_loadu_ps(x + i), xb = _mm256_loadu_ps(x + i + 8);             \
            a0 = _mm256_fmadd_ps(xa, VECTOR(w0 + i), a0);                                    \
            b0 = _mm256_fmadd_ps(xb, VECTOR(w0 + i + 8), b0);                                \
            a1 = _mm256_fmadd_ps(xa, VECTOR(w1 + i), a1);                                    \
            b1 = _mm256_fmadd_ps(xb, VECTOR(w1 + i + 8), b1);                                \
            a2 = _mm256_fmadd_ps(xa, VECTOR(w2 + i), a2);                                    \
            b2 = _mm256_fmadd_ps(xb, VECTOR(w2 + i + 8), b2);                                \
            a3 = _mm256_fmadd_ps(xa, VECTOR(w3 + i), a3);                                    \
            b3 = _mm256_fmadd_ps(xb, VECTOR(w3 + i + 8), b3);                                \
        }                                                                                    \
        t0 = lane_sum(_mm256_add_ps(a0, b0)), t1 = lane_sum(_mm256_add_ps(a1, b1));          \
        t2 = lane_sum(_mm256_add_ps(a2, b2)), t3 = lane_sum(_mm256_add_ps(a3, b3));          \
    }
#define TINYLM_VECTOR_ROWS2_X4(VECTOR)                                                       \
    {                                                                                        \
        __m256 s[8];                                                                         \
        for (int j = 0; j < 8; j++) s[j] = _mm256_setzero_ps();                              \
        for (; i + 8 <= k; i += 8) {                                                         \
            __m256 a = VECTOR(w0 + i), b = VECTOR(w1 + i), xv;                               \
            xv = _mm256_loadu_ps(x0 + i), s[0] = _mm256_fmadd_ps(xv, a, s[0]), s[1] = _mm256_fmadd_ps(xv, b, s[1]); \
            xv = _mm256_loadu_ps(x1 + i), s[2] = _mm256_fmadd_ps(xv, a, s[2]), s[3] = _mm256_fmadd_ps(xv, b, s[3]); \
            xv = _mm256_loadu_ps(x2 + i), s[4] = _mm256_fmadd_ps(xv, a, s[4]), s[5] = _mm256_fmadd_ps(xv, b, s[5]); \
            xv = _mm256_loadu_ps(x3 + i), s[6] = _mm256_fmadd_ps(xv, a, s[6]), s[7] = _mm256_fmadd_ps(xv, b, s[7]); \
        }                                                                                    \
        for (int j = 0; j < 8; j++) t[j] = lane_sum(s[j]);                                   \
    }
#else
#define TINYLM_VECTOR_ROW_X1(VECTOR)
#define TINYLM_VECTOR_ROWS4_X1(VECTOR)
#define TINYLM_VECTOR_ROWS2_X4(VECTOR)
#endif

TINYLM_KERNELS(int8, int8_t, int8_value, int8_vector)
TINYLM_KERNELS(bf16, uint16_t, bf16_value, bf16_vector)

/* Below this many multiply-adds one thread does the whole product: waking a second
 * thread costs more than it saves (a 128-wide layer's product takes microseconds). */
#define TINYLM_SERIAL_WORK (1 << 17)

/* Split [0, n) into blocks of a multiple of 4 rows, one block per thread. */
#define TINYLM_ENTRY(NAME, T)                                                                \
    void tinylm_##NAME##_matmul(const float *x, int64_t m, int64_t k, const T *w,           \
                                const float *scale, int64_t n, float *out, int threads) {    \
        if (threads < 1 || m * n * k < TINYLM_SERIAL_WORK) threads = 1;                      \
        int64_t per = ((n + threads - 1) / threads + 3) / 4 * 4;                             \
        int parts = (int)((n + per - 1) / per);                                              \
        TINYLM_PARALLEL_FOR                                                                  \
        for (int p = 0; p < parts; p++) {                                                    \
            int64_t first = p * per, last = first + per < n ? first + per : n;               \
            NAME##_rows(x, m, k, w, scale, n, out, first, last);                             \
        }                                                                                    \
    }

#ifdef _OPENMP
#define TINYLM_PRAGMA(x) _Pragma(#x)
#define TINYLM_PARALLEL_FOR TINYLM_PRAGMA(omp parallel for num_threads(threads) schedule(static))
#else
#define TINYLM_PARALLEL_FOR
#endif

TINYLM_ENTRY(int8, int8_t)
TINYLM_ENTRY(bf16, uint16_t)

/* What this build vectorised with, for the benchmark's report. */
int tinylm_kernel_features(void) {
    int openmp = 0;
#ifdef _OPENMP
    openmp = 1;
#endif
    return TINYLM_AVX2 | (openmp << 1);
}
