/* pyai_adler32.c - pyai.archive._adler32: Adler-32 with AVX2 where the CPU has it.
 *
 * zlib's adler32 sums one byte at a time (about 3.5 GB/s on one core); a large
 * PUT keeps adler32 by default, so that is about 0.3 CPU s/GiB taken from the
 * core the receive and the other digests share.  With AVX2 the same sums take
 * 32 bytes a step (the method of Chromium's and zlib-ng's adler32_simd), several
 * times faster.  Without AVX2 (or for the tail of a buffer) the bytes are summed
 * one at a time as zlib does.  The result is zlib.adler32's, bit for bit, for every value
 * a sum can take (both halves below 65521, as adler32 returns them).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define PYAI_ADLER_X86 1
#endif

#define BASE 65521u /* the largest prime below 2^16 */
#define NMAX 5552   /* the most bytes summed before s2 can pass 2^32 (zlib's bound) */
/* Below this many bytes the GIL is kept: releasing it costs more than the sum. */
#define RELEASE_FROM 8192

static uint32_t adler32_scalar(uint32_t adler, const unsigned char *buf, size_t len)
{
    uint32_t s1 = adler & 0xffff, s2 = adler >> 16;
    while (len) {
        size_t n = len < NMAX ? len : NMAX;
        len -= n;
        while (n--) {
            s1 += *buf++;
            s2 += s1;
        }
        s1 %= BASE;
        s2 %= BASE;
    }
    return s1 | (s2 << 16);
}

#ifdef PYAI_ADLER_X86
/* Each 32-byte block b[0..31] adds sum(b) to s1 and 32*s1 + sum((32-i)*b[i]) to s2,
 * s1 being the sum before the block: kept per lane (v_s1, the weighted sums in v_s2,
 * the running s1 of every block in v_ps) and folded into s1, s2 every NMAX bytes. */
__attribute__((target("avx2"))) static uint32_t adler32_avx2(uint32_t adler, const unsigned char *buf, size_t len)
{
    uint32_t s1 = adler & 0xffff, s2 = adler >> 16;
    const __m256i tap = _mm256_setr_epi8(32, 31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17, 16, 15, 14, 13,
                                         12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1);
    const __m256i zero = _mm256_setzero_si256();
    const __m256i ones = _mm256_set1_epi16(1);
    size_t blocks = len / 32;

    len -= blocks * 32;
    while (blocks) {
        size_t n = blocks < NMAX / 32 ? blocks : NMAX / 32;
        __m256i v_ps = zero, v_s1 = zero, v_s2 = zero;
        uint32_t lanes[8];
        uint64_t sum1 = 0, sum2 = 0;

        blocks -= n;
        s2 += s1 * 32 * (uint32_t)n;
        for (size_t i = 0; i < n; i++) {
            const __m256i bytes = _mm256_loadu_si256((const __m256i *)buf);
            v_ps = _mm256_add_epi32(v_ps, v_s1);
            v_s1 = _mm256_add_epi32(v_s1, _mm256_sad_epu8(bytes, zero));
            v_s2 = _mm256_add_epi32(v_s2, _mm256_madd_epi16(_mm256_maddubs_epi16(bytes, tap), ones));
            buf += 32;
        }
        v_s2 = _mm256_add_epi32(v_s2, _mm256_slli_epi32(v_ps, 5));
        _mm256_storeu_si256((__m256i *)lanes, v_s1);
        for (int i = 0; i < 8; i++)
            sum1 += lanes[i];
        _mm256_storeu_si256((__m256i *)lanes, v_s2);
        for (int i = 0; i < 8; i++)
            sum2 += lanes[i];
        s1 = (uint32_t)((s1 + sum1) % BASE);
        s2 = (uint32_t)((s2 + sum2) % BASE);
    }
    return adler32_scalar(s1 | (s2 << 16), buf, len);
}
#endif

static uint32_t (*adler32_impl)(uint32_t, const unsigned char *, size_t) = adler32_scalar;

PyDoc_STRVAR(adler32_doc, "adler32(data, value=1, /)\n--\n\n"
                          "zlib.adler32(data, value): the Adler-32 of the bytes-like ``data``, continuing ``value``.");

static PyObject *py_adler32(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer view;
    unsigned long value = 1;
    uint32_t result;

    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "adler32(data, value=1) takes one or two arguments");
        return NULL;
    }
    if (nargs == 2) {
        value = PyLong_AsUnsignedLongMask(args[1]);
        if (value == (unsigned long)-1 && PyErr_Occurred())
            return NULL;
    }
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0)
        return NULL;
    if (view.len >= RELEASE_FROM) {
        Py_BEGIN_ALLOW_THREADS result = adler32_impl((uint32_t)value, view.buf, (size_t)view.len);
        Py_END_ALLOW_THREADS
    } else {
        result = adler32_impl((uint32_t)value, view.buf, (size_t)view.len);
    }
    PyBuffer_Release(&view);
    return PyLong_FromUnsignedLong(result);
}

static PyMethodDef methods[] = {
    {"adler32", (PyCFunction)(void (*)(void))py_adler32, METH_FASTCALL, adler32_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "pyai.archive._adler32",
    .m_doc = "Adler-32 with AVX2 where the CPU has it (zlib.adler32's results).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__adler32(void)
{
    PyObject *m = PyModule_Create(&module);
    const char *kind = "scalar";

    if (m == NULL)
        return NULL;
#ifdef PYAI_ADLER_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2")) {
        adler32_impl = adler32_avx2;
        kind = "avx2";
    }
#endif
    if (PyModule_AddStringConstant(m, "IMPL", kind) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
