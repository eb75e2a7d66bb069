/* fuzz_chunked.c - the libFuzzer harness of the chunked decoder (csrc/pyai_chunked.c).
 *
 * `make fuzz` builds it with -fsanitize=fuzzer,address,undefined, a tiny
 * receive buffer (CHUNKED_BUF) and a tiny LINE_SLACK, and runs it on the
 * corpus in tests/fuzz/corpus/chunked.  An input is three control bytes, then
 * the bytes of a chunked body as they come on the wire (and what follows it).
 * The control bytes seed the cuts: the wire is cut into pieces at random
 * points, and each piece is either fed (pyai_chunked_feed: the server's
 * read-ahead) or sent on a socketpair for pyai_recv_chunked to recv() a few
 * bytes at a time, so the decoder's state machine is stopped and resumed
 * everywhere; they also choose its limits, max_size, a tee pipe, space
 * reserved and written back, an on_data that fails (a hasher's error), and
 * whether what follows a complete body is fed to it (kept as the leftover).
 *
 * After every call the decoder's state must be consistent with what the call
 * returned.  At the end, what it decoded (shown to on_data, written to the
 * file, teed to the pipe: all three the same) must be what ref_decode, an
 * independent decoder of the whole input at once, decodes: the data, where a
 * short body ended, the trailers, the leftover, the error.  Where the outcome
 * depends on the cuts (gunicorn's line bounds are checked where a piece ends,
 * a bare LF in the trailers is refused unless the section ends in the same
 * piece), a refusal (EPROTO) is accepted too, with the data before it a
 * prefix of the reference's.  A broken invariant aborts: libFuzzer saves the input.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memfd_create */
#endif
#include "pyai_chunked.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef LINE_SLACK
#define LINE_SLACK (64 << 10)
#endif
/* Inputs larger than this are skipped: a piece must fit in the socket and the tee pipe. */
#define MAX_INPUT (128 << 10)

#define CHECK(cond)                                                                                                    \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            fprintf(stderr, "fuzz_chunked: %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);                     \
            abort();                                                                                                   \
        }                                                                                                              \
    } while (0)

/* ---- the reference: the whole input at once, the grammar written out again --------------- */

enum { REF_DONE, REF_SHORT, REF_EPROTO, REF_EFBIG };

struct ref {
    int outcome;
    int phase; /* REF_SHORT: where the body stopped (PYAI_CHUNKED_*) */
    unsigned char *data;
    size_t data_len;
    const unsigned char *trailer; /* REF_DONE */
    size_t trailer_len;
    size_t end;          /* REF_DONE: where the leftover begins */
    int split_dependent; /* a line over its soft bound, a bare LF in the trailers: EPROTO may come instead */
};

static int tchar(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static int blank(unsigned char c)
{
    return c == ' ' || c == '\t';
}

static int xdigit(unsigned char c)
{
    return (c >= '0' && c <= '9')   ? c - '0'
           : (c >= 'a' && c <= 'f') ? c - 'a' + 10
           : (c >= 'A' && c <= 'F') ? c - 'A' + 10
                                    : -1;
}

/* A quoted-string at s[*i] ('"'): 1 and *i past it, or 0. */
static int quoted(const unsigned char *s, size_t n, size_t *i)
{
    size_t j = *i + 1;
    for (; j < n; j++) {
        unsigned char c = s[j];
        if (c == '"') {
            *i = j + 1;
            return 1;
        }
        if (c == '\\') {
            if (j + 1 >= n)
                return 0;
            c = s[++j];
            if (!(c == '\t' || (c >= 0x20 && c <= 0x7e) || c >= 0x80))
                return 0;
        } else if (!(c == '\t' || c == ' ' || c == '!' || (c >= 0x23 && c <= 0x5b) || (c >= 0x5d && c <= 0x7e) ||
                     c >= 0x80)) {
            return 0;
        }
    }
    return 0;
}

/* The chunk-size line s[0, n) (no CRLF): hex, then (optionally blanks and) RFC 9112 extensions. */
static int ref_size(const unsigned char *s, size_t n, int64_t *size)
{
    unsigned __int128 v = 0;
    size_t i = 0;

    for (; i < n && xdigit(s[i]) >= 0; i++) {
        v = v * 16 + (unsigned)xdigit(s[i]);
        if (v > INT64_MAX)
            return 0;
    }
    if (i == 0)
        return 0;
    *size = (int64_t)v;
    if (i == n)
        return 1;
    while (i < n && blank(s[i]))
        i++;
    for (;;) { /* at an extension's ';' */
        if (i == n || s[i] != ';')
            return 0;
        for (i++; i < n && blank(s[i]); i++)
            ;
        if (i == n || !tchar(s[i]))
            return 0;
        while (i < n && tchar(s[i]))
            i++;
        size_t j = i;
        while (j < n && blank(s[j]))
            j++;
        if (j < n && s[j] == '=') {
            for (i = j + 1; i < n && blank(s[i]); i++)
                ;
            if (i < n && tchar(s[i])) {
                while (i < n && tchar(s[i]))
                    i++;
            } else if (!(i < n && s[i] == '"' && quoted(s, n, &i))) {
                return 0;
            }
        }
        if (i == n)
            return 1;
        while (i < n && blank(s[i]))
            i++;
    }
}

static void ref_decode(const unsigned char *w, size_t n, size_t max_line, size_t max_trailer, int64_t max_size,
                       struct ref *r)
{
    size_t i = 0;

    memset(r, 0, sizeof(*r));
    r->data = malloc(n + 1);
    for (;;) {
        size_t start = i, hard = max_line + LINE_SLACK + 2, k;
        int64_t size;
        for (k = start; k + 1 < n && !(w[k] == '\r' && w[k + 1] == '\n'); k++)
            ;
        if (k + 1 >= n) { /* the input ends inside the line */
            r->outcome = n - start > max_line ? REF_EPROTO : REF_SHORT;
            r->phase = PYAI_CHUNKED_SIZE;
            return;
        }
        if (k + 2 - start > hard || !ref_size(w + start, k - start, &size)) {
            r->outcome = REF_EPROTO;
            return;
        }
        if (k + 1 - start > max_line)
            r->split_dependent = 1; /* a piece may end just before its LF */
        i = k + 2;
        if (size == 0)
            break;
        size_t take = (uint64_t)size < n - i ? (size_t)size : n - i;
        memcpy(r->data + r->data_len, w + i, take);
        r->data_len += take;
        i += take;
        if (max_size > 0 && (int64_t)r->data_len > max_size) {
            r->outcome = REF_EFBIG;
            return;
        }
        if (take < (uint64_t)size || i + 2 > n) {
            r->outcome = REF_SHORT;
            r->phase = take < (uint64_t)size ? PYAI_CHUNKED_DATA : PYAI_CHUNKED_CRLF;
            return;
        }
        if (w[i] != '\r' || w[i + 1] != '\n') {
            r->outcome = REF_EPROTO;
            return;
        }
        i += 2;
    }
    /* the trailer section: to CRLF CRLF, or just CRLF when empty */
    size_t start = i, hard = max_trailer + LINE_SLACK + 4, j;
    int bare_lf = 0;
    for (j = start; j < n; j++) {
        size_t tl = j - start + 1;
        if (tl > hard) {
            r->outcome = REF_EPROTO;
            return;
        }
        if (w[j] != '\n')
            continue;
        if (tl < 2 || w[j - 1] != '\r')
            bare_lf = 1;
        if ((tl == 2 && w[start] == '\r') || (tl >= 4 && memcmp(w + j - 3, "\r\n\r\n", 4) == 0)) {
            r->outcome = REF_DONE;
            r->trailer = w + start;
            r->trailer_len = tl == 2 ? 0 : tl - 4;
            r->end = j + 1;
            if (bare_lf || tl - 1 > max_trailer)
                r->split_dependent = 1;
            return;
        }
    }
    r->outcome = (n - start > max_trailer || bare_lf) ? REF_EPROTO : REF_SHORT;
    r->phase = PYAI_CHUNKED_TRAILER;
}

/* ---- the decoder under test -------------------------------------------------------------- */

struct seen {
    unsigned char *buf;
    size_t len, cap;
    size_t fail_past; /* > 0: refuse (as a hasher that raises) the run that would pass this many bytes */
    int refused;
};

static int on_data(void *ctx, const char *buf, size_t len)
{
    struct seen *s = ctx;
    CHECK(len > 0 && s->len + len <= s->cap);
    if (s->fail_past > 0 && s->len + len > s->fail_past) {
        s->refused = 1;
        return -ECANCELED;
    }
    memcpy(s->buf + s->len, buf, len);
    s->len += len;
    return 0;
}

static uint64_t next(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

/* All of fd's bytes up to `cap` (fd non-blocking, or a file read from its start). */
static size_t drain(int fd, unsigned char *to, size_t cap)
{
    size_t got = 0;
    ssize_t r;
    while (got < cap && (r = read(fd, to + got, cap - got)) > 0)
        got += (size_t)r;
    return got;
}

/* The state after a call that returned rc. */
static void check_state(const pyai_chunked *st, int64_t rc, size_t hard_line, size_t hard_trailer)
{
    CHECK(st->phase >= PYAI_CHUNKED_SIZE && st->phase <= PYAI_CHUNKED_FAILED);
    CHECK(st->pos <= st->len && st->len <= st->cap);
    if (st->phase == PYAI_CHUNKED_FAILED)
        CHECK(rc == st->error && (rc == -EPROTO || rc == -EFBIG));
    else
        CHECK(rc >= 0 || rc == -EAGAIN);
    if (rc == -EAGAIN)
        CHECK(st->phase != PYAI_CHUNKED_DONE && st->pos == st->len); /* all received was decoded */
    if (st->phase == PYAI_CHUNKED_DATA)
        CHECK(st->chunk_left > 0);
    if (st->phase == PYAI_CHUNKED_CRLF)
        CHECK(st->crlf_seen == 0 || st->crlf_seen == 1);
    if (st->phase == PYAI_CHUNKED_SIZE)
        CHECK(st->line_len <= hard_line && st->line_len <= st->line_cap);
    if (st->phase == PYAI_CHUNKED_TRAILER || st->phase == PYAI_CHUNKED_DONE)
        CHECK(st->trailer_len <= hard_trailer && st->trailer_len <= st->trailer_cap);
    CHECK(st->decoded >= 0 && (st->max_size == 0 || st->decoded <= st->max_size));
}

static int prefix(const unsigned char *a, size_t alen, const unsigned char *b, size_t blen)
{
    return alen <= blen && memcmp(a, b, alen) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *input, size_t size)
{
    static const size_t pieces[8] = {1, 2, 3, 7, 16, 64, 512, MAX_INPUT};
    const unsigned char *w = input + 3;
    size_t n = size - 3, sent = 0, max_piece;
    uint64_t x;
    int feed_mode, tee, feed_after, sv[2], tp[2] = {-1, -1}, file;
    int64_t rc = 0, returned = 0, max_size = 0;
    pyai_chunked st;
    pyai_recv_limits lim;
    struct seen seen;
    struct ref ref;
    unsigned char *out, *teed;
    size_t out_len, teed_len = 0;

    if (size < 3 || size > MAX_INPUT)
        return 0;
    x = 0x9e3779b97f4a7c15ULL ^ ((uint64_t)input[0] << 32 | (uint64_t)input[1] << 8 | size);
    max_piece = pieces[input[1] & 7];
    feed_mode = (input[1] >> 3) & 3; /* 0: all sent, 1: all fed, 2, 3: either, at random */
    tee = (input[1] >> 6) & 1;
    feed_after = (input[0] >> 6) & 1;
    pyai_chunked_init(&st, 0);
    if (input[1] & 0x20) { /* small limits, to reach the bounds */
        st.max_line = 1 + (input[2] & 15);
        st.max_trailer = 1 + (input[2] >> 4) * 3;
    }
    if (input[1] & 0x80)
        max_size = st.max_size = 1 + input[2] * 4;
    ref_decode(w, n, st.max_line, st.max_trailer, max_size, &ref);

    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    CHECK(fcntl(sv[0], F_SETFL, O_NONBLOCK) == 0);
    CHECK((file = memfd_create("fuzz-chunked", 0)) >= 0);
    if (tee) {
        CHECK(pipe(tp) == 0);
        fcntl(tp[1], F_SETPIPE_SZ, MAX_INPUT * 2); /* every piece's data fits: the tee never waits */
        CHECK(fcntl(tp[0], F_SETFL, O_NONBLOCK) == 0);
    }
    seen.buf = malloc(n + 1);
    seen.len = 0;
    seen.refused = 0;
    seen.cap = n;
    seen.fail_past = (input[0] & 0x80) ? 1 + input[2] / 2 : 0;
    out = malloc(n + 1);
    teed = malloc(n + 1);

    memset(&lim, 0, sizeof(lim));
    lim.timeout_ms = 10000;
    lim.patience_ms = 0; /* return -EAGAIN as soon as the socket is empty */
    lim.budget_ms = -1;
    if (input[0] & 0x20) { /* space reserved (1 MiB chunks and more) and written back: a memfd takes both or says no */
        lim.reserve_step = 1 << 20;
        lim.writeback_step = 4096;
    }
    while (sent < n && st.phase != PYAI_CHUNKED_DONE && st.phase != PYAI_CHUNKED_FAILED) {
        size_t piece = 1 + (size_t)(next(&x) % max_piece);
        int fed = feed_mode == 1 || (feed_mode >= 2 && (next(&x) & 1));
        if (piece > n - sent)
            piece = n - sent;
        if (fed)
            CHECK(pyai_chunked_feed(&st, w + sent, piece) == 0);
        else
            CHECK(write(sv[1], w + sent, piece) == (ssize_t)piece);
        sent += piece;
        rc = pyai_recv_chunked(sv[0], file, &st, &lim, NULL, NULL, on_data, &seen, tp[1]);
        if (seen.refused) { /* the call stops with on_data's error, or a framing error after it in the piece */
            CHECK(rc == -ECANCELED || (st.phase == PYAI_CHUNKED_FAILED && rc == st.error));
            CHECK(lim.moved >= 0);
            returned += lim.moved;
            break;
        }
        check_state(&st, rc, st.max_line + LINE_SLACK + 2, st.max_trailer + LINE_SLACK + 4);
        CHECK(rc >= 0 ? st.phase == PYAI_CHUNKED_DONE : lim.moved >= 0);
        returned += rc >= 0 ? rc : lim.moved;
        if (tee)
            teed_len += drain(tp[0], teed + teed_len, n - teed_len);
    }
    if (tee)
        teed_len += drain(tp[0], teed + teed_len, n - teed_len);
    if (seen.refused) {
        /* what on_data took, and only that, was written: the start of the reference's data */
        CHECK(lseek(file, 0, SEEK_SET) == 0);
        out_len = drain(file, out, n);
        CHECK(out_len == seen.len && memcmp(out, seen.buf, out_len) == 0 && (int64_t)out_len == returned);
        CHECK(prefix(out, out_len, ref.data, ref.data_len));
        if (tee)
            CHECK(teed_len == out_len && memcmp(teed, out, out_len) == 0);
        goto done;
    }
    if (st.phase == PYAI_CHUNKED_DONE && feed_after && sent < n) {
        /* what follows the body, fed once it is complete (none of it was left in the socket):
         * the decoder keeps it as the leftover and reads nothing */
        unsigned char probe;
        if (recv(sv[0], &probe, 1, MSG_PEEK | MSG_DONTWAIT) < 0) {
            while (sent < n) {
                size_t piece = 1 + (size_t)(next(&x) % max_piece);
                if (piece > n - sent)
                    piece = n - sent;
                CHECK(pyai_chunked_feed(&st, w + sent, piece) == 0);
                sent += piece;
                rc = pyai_recv_chunked(sv[0], file, &st, &lim, NULL, NULL, on_data, &seen, tp[1]);
                CHECK(rc == 0 && lim.moved == 0 && st.phase == PYAI_CHUNKED_DONE);
            }
        }
    }
    if (st.phase != PYAI_CHUNKED_DONE && st.phase != PYAI_CHUNKED_FAILED) {
        /* the peer closes: the call returns what it has, the decoder says where it stopped */
        int phase = st.phase;
        CHECK(shutdown(sv[1], SHUT_WR) == 0);
        rc = pyai_recv_chunked(sv[0], file, &st, &lim, NULL, NULL, on_data, &seen, tp[1]);
        CHECK(rc == 0 && st.phase == phase);
    } else if (st.phase == PYAI_CHUNKED_DONE || st.phase == PYAI_CHUNKED_FAILED) {
        /* a done or failed decoder reads nothing more, and says the same again */
        int64_t again = pyai_recv_chunked(sv[0], file, &st, &lim, NULL, NULL, on_data, &seen, tp[1]);
        CHECK(again == (st.phase == PYAI_CHUNKED_DONE ? 0 : st.error) && lim.moved == 0);
    }

    /* what it decoded: the same on the three ways out */
    CHECK(lseek(file, 0, SEEK_SET) == 0);
    out_len = drain(file, out, n);
    CHECK(out_len == seen.len && memcmp(out, seen.buf, out_len) == 0);
    CHECK((int64_t)out_len == st.decoded && returned == st.decoded);
    if (tee)
        CHECK(teed_len == out_len && memcmp(teed, out, out_len) == 0);

    /* against the reference */
    if (st.phase == PYAI_CHUNKED_FAILED && st.error == -EPROTO && ref.split_dependent) {
        CHECK(prefix(out, out_len, ref.data, ref.data_len));
    } else if (ref.outcome == REF_DONE) {
        size_t left = st.len - st.pos, rest;
        unsigned char *leftover = malloc(n + 1);
        CHECK(st.phase == PYAI_CHUNKED_DONE);
        CHECK(out_len == ref.data_len && memcmp(out, ref.data, out_len) == 0);
        CHECK(st.trailer_len == ref.trailer_len && memcmp(st.trailer, ref.trailer, ref.trailer_len) == 0);
        /* the leftover: what the decoder holds, then what it left in the socket, then what was not sent */
        memcpy(leftover, st.buf + st.pos, left);
        left += drain(sv[0], leftover + left, n - left);
        rest = n - sent;
        memcpy(leftover + left, w + sent, rest);
        CHECK(left + rest == n - ref.end && memcmp(leftover, w + ref.end, n - ref.end) == 0);
        free(leftover);
    } else if (ref.outcome == REF_SHORT) {
        CHECK(st.phase == ref.phase);
        CHECK(out_len == ref.data_len && memcmp(out, ref.data, out_len) == 0);
    } else if (ref.outcome == REF_EPROTO) {
        CHECK(st.phase == PYAI_CHUNKED_FAILED && st.error == -EPROTO);
        CHECK(out_len == ref.data_len && memcmp(out, ref.data, out_len) == 0);
    } else {
        CHECK(st.phase == PYAI_CHUNKED_FAILED && st.error == -EFBIG);
        CHECK(prefix(out, out_len, ref.data, ref.data_len) && (int64_t)out_len <= max_size);
    }
done:

    pyai_chunked_free(&st);
    free(ref.data);
    free(seen.buf);
    free(out);
    free(teed);
    close(sv[0]);
    close(sv[1]);
    close(file);
    if (tee) {
        close(tp[0]);
        close(tp[1]);
    }
    return 0;
}
