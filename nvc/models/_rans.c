/* nvc's range coder: rANS over CompressAI-style quantised CDF tables, one substream per call.
 *
 * Plain C with no Python API: nvc.models.rans loads it with ctypes, whose foreign calls release
 * the GIL, so substreams code on several threads at once. Every input is bounds-checked: a
 * decoder given damaged bytes returns an error code or wrong symbols, never reads or writes
 * outside its buffers.
 *
 * The coder: a 32-bit state x in [2^16, 2^32), 16-bit words, probabilities in 16 bits (the
 * tables' precision). Encoding runs backwards over the elements and writes words backwards from
 * the end of the output buffer, so the decoder reads forwards. The stream starts with the final
 * state (4 bytes, little-endian), then the words; the decoder checks it ends in the encoder's
 * initial state having used every word.
 *
 * Tables: for element i with index k = indexes[i], cdf row k (cdf_stride ints) holds
 * cdf[0] = 0 < ... < cdf[len_k - 1] = 65536 for the symbols 0 .. len_k - 2; symbol s stands for
 * the value s + offset_k, and the last symbol, len_k - 2, is the escape: the value lies outside
 * the table and follows as 4-bit raw groups (a group count 1..8, then the groups of the folded
 * value, lowest first), each coded as a uniform 4-bit symbol.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#define PREC 16
#define LOWER (1u << 16)

enum { NVC_OK = 0, NVC_ERR_TABLE = -1, NVC_ERR_SPACE = -2, NVC_ERR_DATA = -3, NVC_ERR_RANGE = -4 };
#define MAX_VALUE (1 << 30)  /* |symbol| coded: an escape carries it in 32 bits */
#define MAX_OFFSET (1 << 20) /* |offset| of a table */

typedef struct {
    const int32_t *cdf;
    const int32_t *lengths;
    const int32_t *offsets;
    int32_t rows;
    int32_t stride;
} tables_t;

/* Push one symbol of frequency freq (>= 1) starting at start; words go backwards from *out,
 * little-endian, never below begin. */
static int put(uint32_t *x, uint8_t **out, const uint8_t *begin, uint32_t start, uint32_t freq) {
    uint64_t limit = (uint64_t)(LOWER >> PREC << 16) * freq; /* x stays below it before the update */
    if (*x >= limit) { /* one word always suffices: afterwards x < 2^16 <= limit */
        if (*out - begin < 2) return NVC_ERR_SPACE;
        *out -= 2;
        (*out)[0] = (uint8_t)*x;
        (*out)[1] = (uint8_t)(*x >> 8);
        *x >>= 16;
    }
    *x = ((*x / freq) << PREC) + (*x % freq) + start;
    return NVC_OK;
}

/* Values outside the table, folded to one non-negative number: below it -1, -2, ... -> 1, 3, ...;
 * above it top, top + 1, ... -> 0, 2, ... (|symbol| < 2^30 and |offset| < 2^20: it fits 32 bits). */
static uint32_t fold(int64_t value, int64_t top) {
    return (uint32_t)(value < 0 ? -value * 2 - 1 : (value - top) * 2);
}

static int64_t unfold(uint32_t raw, int64_t top) {
    return (raw & 1u) ? -(((int64_t)raw + 1) >> 1) : ((int64_t)raw >> 1) + top;
}

static int row(const tables_t *t, int32_t k, const int32_t **cdf, int32_t *len) {
    if (k < 0 || k >= t->rows) return NVC_ERR_TABLE;
    *len = t->lengths[k];
    if (*len < 3 || *len > t->stride) return NVC_ERR_TABLE;
    if (t->offsets[k] <= -MAX_OFFSET || t->offsets[k] >= MAX_OFFSET) return NVC_ERR_TABLE;
    *cdf = t->cdf + (int64_t)k * t->stride;
    return NVC_OK;
}

/* Encode n symbols (value - mean, rounded) with their table indexes into out[0..capacity).
 * Returns the number of bytes written at the start of out, or a negative error. */
int64_t nvc_rans_encode(const int32_t *symbols, const int32_t *indexes, int64_t n,
                        const int32_t *cdf, const int32_t *lengths, const int32_t *offsets,
                        int32_t rows, int32_t stride, uint8_t *out, int64_t capacity) {
    tables_t t = {cdf, lengths, offsets, rows, stride};
    if (capacity < 4) return NVC_ERR_SPACE;
    uint8_t *end = out + capacity, *p = end, *begin = out + 4; /* room for the 4-byte state */
    uint32_t x = LOWER;
    for (int64_t i = n - 1; i >= 0; --i) {
        const int32_t *c;
        int32_t len, rc;
        if ((rc = row(&t, indexes[i], &c, &len)) != NVC_OK) return rc;
        int32_t top = len - 2, s;
        if (symbols[i] <= -MAX_VALUE || symbols[i] >= MAX_VALUE) return NVC_ERR_RANGE;
        int64_t value = (int64_t)symbols[i] - offsets[indexes[i]];
        s = (int32_t)value;
        if (value < 0 || value >= top) {
            uint32_t raw = fold(value, top);
            int groups = 1;
            while (groups < 8 && (raw >> (4 * groups))) ++groups;
            for (int g = groups - 1; g >= 0; --g)
                if ((rc = put(&x, &p, begin, ((raw >> (4 * g)) & 15u) << 12, 1u << 12)) != NVC_OK)
                    return rc;
            if ((rc = put(&x, &p, begin, (uint32_t)(groups - 1) << 12, 1u << 12)) != NVC_OK)
                return rc;
            s = top;
        }
        uint32_t start = (uint32_t)c[s], freq = (uint32_t)(c[s + 1] - c[s]);
        if (c[s + 1] <= c[s] || c[s + 1] > (1 << PREC)) return NVC_ERR_TABLE;
        if ((rc = put(&x, &p, begin, start, freq)) != NVC_OK) return rc;
    }
    int64_t body = (int64_t)(end - p);
    memmove(out + 4, p, (size_t)body);
    for (int b = 0; b < 4; ++b) out[b] = (uint8_t)(x >> (8 * b));
    return 4 + body;
}

typedef struct {
    const uint8_t *data;
    int64_t size, pos;
    uint32_t x;
} reader_t;

/* After a symbol: bring the state back above LOWER with the next word (one always suffices). */
static void refill(reader_t *r, int *err) {
    if (r->x >= LOWER) return;
    if (r->pos + 2 > r->size) { *err = NVC_ERR_DATA; return; }
    r->x = (r->x << 16) | (uint32_t)r->data[r->pos] | ((uint32_t)r->data[r->pos + 1] << 8);
    r->pos += 2;
}

/* Pull one symbol from the row's cdf (cdf[0] .. cdf[symbols] over 2^16): returns it. */
static int32_t take(reader_t *r, const int32_t *cdf, int32_t symbols, int *err) {
    uint32_t slot = r->x & ((1u << PREC) - 1);
    int32_t lo = 0, hi = symbols; /* find s with cdf[s] <= slot < cdf[s + 1] */
    while (hi - lo > 1) {
        int32_t mid = (lo + hi) >> 1;
        if ((uint32_t)cdf[mid] <= slot) lo = mid; else hi = mid;
    }
    uint32_t start = (uint32_t)cdf[lo], freq = (uint32_t)(cdf[lo + 1] - cdf[lo]);
    if (cdf[lo + 1] <= cdf[lo]) { *err = NVC_ERR_TABLE; return 0; }
    r->x = freq * (r->x >> PREC) + slot - start;
    refill(r, err);
    return lo;
}

static uint32_t take4(reader_t *r, int *err) {
    uint32_t slot = r->x & ((1u << PREC) - 1), g = slot >> 12;
    r->x = (1u << 12) * (r->x >> PREC) + slot - (g << 12);
    refill(r, err);
    return g;
}

/* Decode n symbols from data[0..size) into symbols_out. Returns NVC_OK, or a negative error
 * (damaged data: the string ran out, or did not end where the encoder's did). */
int32_t nvc_rans_decode(const uint8_t *data, int64_t size, const int32_t *indexes, int64_t n,
                        const int32_t *cdf, const int32_t *lengths, const int32_t *offsets,
                        int32_t rows, int32_t stride, int32_t *symbols_out) {
    tables_t t = {cdf, lengths, offsets, rows, stride};
    if (size < 4 || (size & 1)) return NVC_ERR_DATA;
    reader_t r = {data, size, 4, (uint32_t)data[0] | ((uint32_t)data[1] << 8) |
                  ((uint32_t)data[2] << 16) | ((uint32_t)data[3] << 24)};
    int err = NVC_OK;
    for (int64_t i = 0; i < n; ++i) {
        const int32_t *c;
        int32_t len, rc;
        if ((rc = row(&t, indexes[i], &c, &len)) != NVC_OK) return rc;
        int32_t top = len - 2;
        int64_t value = take(&r, c, len - 1, &err);
        if (err) return err;
        if (value == top) {
            int groups = (int)take4(&r, &err) + 1;
            if (groups > 8) return NVC_ERR_DATA; /* 32 bits at most */
            uint32_t raw = 0;
            for (int g = 0; g < groups && !err; ++g) raw |= take4(&r, &err) << (4 * g);
            if (err) return err;
            value = unfold(raw, top);
        }
        value += offsets[indexes[i]];
        if (value <= -MAX_VALUE || value >= MAX_VALUE) return NVC_ERR_DATA;
        symbols_out[i] = (int32_t)value;
    }
    return (r.x == LOWER && r.pos == r.size) ? NVC_OK : NVC_ERR_DATA;
}

/* The quantised CDF of a probability mass function: n probabilities (the last one the tail's
 * mass, the escape symbol's) to n + 1 cumulative frequencies over 2^precision, every symbol at
 * least 1. The tables CompressAI's entropy models build, bit for bit: each mass is rounded to
 * 2^precision in float32 arithmetic, the rounded masses are rescaled to sum to 2^precision
 * (integer division), and a symbol left at 0 takes one from the lowest frequency above 1 (the
 * first such, its neighbours' cumulative counts shifted), in symbol order (ryg_rans's
 * normalisation). Returns NVC_OK, or NVC_ERR_TABLE for a mass that is negative, not finite or
 * above 2^15, for counts that sum to 0 or beyond 2^31, or when no frequency is left to take from. */
int32_t nvc_quantized_cdf(const float *pmf, int32_t n, int32_t precision, int32_t *cdf) {
    if (n < 1 || precision < 1 || precision > 16) return NVC_ERR_TABLE;
    const uint32_t one = 1u << precision;
    uint64_t total = 0;
    for (int32_t i = 0; i < n; ++i) { /* masses need not sum to 1, but their counts fit 31 bits */
        if (!(pmf[i] >= 0.0f && pmf[i] <= 32768.0f)) return NVC_ERR_TABLE; /* NaN, inf too */
        uint32_t f = (uint32_t)roundf(pmf[i] * (float)one);
        cdf[i + 1] = (int32_t)f;
        total += f;
    }
    if (total == 0 || total > INT32_MAX) return NVC_ERR_TABLE;
    cdf[0] = 0;
    uint32_t sum = 0;
    for (int32_t i = 1; i <= n; ++i) {
        sum += (uint32_t)(((uint64_t)one * (uint32_t)cdf[i]) / total);
        cdf[i] = (int32_t)sum;
    }
    cdf[n] = (int32_t)one;
    for (int32_t i = 0; i < n; ++i) {
        if (cdf[i] != cdf[i + 1]) continue;
        uint32_t best = UINT32_MAX;
        int32_t steal = -1;
        for (int32_t j = 0; j < n; ++j) {
            uint32_t f = (uint32_t)(cdf[j + 1] - cdf[j]);
            if (f > 1 && f < best) { best = f; steal = j; }
        }
        if (steal < 0) return NVC_ERR_TABLE;
        if (steal < i) for (int32_t j = steal + 1; j <= i; ++j) cdf[j]--;
        else for (int32_t j = i + 1; j <= steal; ++j) cdf[j]++;
    }
    return NVC_OK;
}
