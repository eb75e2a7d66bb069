/* pyai_chunked.c - see pyai_chunked.h.  Linux only, as pyai_io.c.
 *
 * The framing is checked as gunicorn's ChunkedReader checks it
 * (gunicorn/http/body.py), so that a body refused here would have been
 * refused there and the other way round: the chunk-size line ends at the
 * first CRLF (a bare LF or CR is not an end, so it is kept in the line and
 * then fails the hex check), its size is hex digits only, with optional
 * blanks before the extensions only, and the extensions follow RFC 9112
 * 7.1.1; the data ends with exactly CRLF; the trailer section ends with
 * CRLF CRLF (or is empty: CRLF).  The one difference: a size that does not
 * fit in int64 is refused at once (gunicorn waits for that much data), as no
 * file could hold it.  The lines are bounded as gunicorn bounds them: when
 * the bytes received so far end inside a line longer than its limit, it is
 * refused; and, so that the memory it holds stays bounded however the bytes
 * come, a line is never kept past its limit plus LINE_SLACK.
 */
#include "pyai_chunked.h"
#include "pyai_wait.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

/* The user-space buffer every byte passes through: one recv() fills it, and
 * the data runs in it are hashed and written from it (as gunicorn's largest
 * read, and a 1 GiB body then takes 1024 recv and 1024 writev calls). */
#ifndef CHUNKED_BUF
#define CHUNKED_BUF (1 << 20)
#endif
/* A line may run this far past its limit within one piece received before
 * it is refused anyway (see the top of this file).  The fuzzer (tests/fuzz)
 * builds with a small one, as with CHUNKED_BUF, MAX_RUNS and MERGE_MAX below. */
#ifndef LINE_SLACK
#define LINE_SLACK (64 << 10)
#endif
/* Below this a reservation costs a syscall and gains nothing (as RESERVE_FROM in receive.py). */
#define RESERVE_MIN (1 << 20)
/* ---- the state ------------------------------------------------------------ */

void pyai_chunked_init(pyai_chunked *st, int64_t max_size)
{
    memset(st, 0, sizeof(*st));
    st->max_size = max_size > 0 ? max_size : 0;
    st->max_line = PYAI_CHUNKED_MAX_LINE;
    st->max_trailer = PYAI_CHUNKED_MAX_TRAILER;
    st->phase = PYAI_CHUNKED_SIZE;
}

void pyai_chunked_free(pyai_chunked *st)
{
    free(st->buf);
    free(st->line);
    free(st->trailer);
    st->buf = st->line = st->trailer = NULL;
    st->cap = st->pos = st->len = st->line_len = st->line_cap = st->trailer_len = st->trailer_cap = 0;
}

/* Room for `more` bytes after buf[len] (keeping buf[pos, len)). */
static int buf_room(pyai_chunked *st, size_t more)
{
    char *grown;
    size_t want;

    if (st->pos == st->len)
        st->pos = st->len = 0;
    if (st->buf != NULL && st->cap - st->len >= more)
        return 0;
    if (st->pos > 0) { /* move what is kept to the front first */
        memmove(st->buf, st->buf + st->pos, st->len - st->pos);
        st->len -= st->pos;
        st->pos = 0;
        if (st->cap - st->len >= more)
            return 0;
    }
    if (more > SIZE_MAX - st->len)
        return -ENOMEM;
    want = st->len + more < CHUNKED_BUF ? CHUNKED_BUF : st->len + more;
    if ((grown = realloc(st->buf, want)) == NULL)
        return -ENOMEM;
    st->buf = grown;
    st->cap = want;
    return 0;
}

int pyai_chunked_feed(pyai_chunked *st, const void *data, size_t len)
{
    int rc;

    if (len == 0)
        return 0;
    if ((rc = buf_room(st, len)) < 0)
        return rc;
    memcpy(st->buf + st->len, data, len);
    st->len += len;
    return 0;
}

static int fail(pyai_chunked *st, int err)
{
    st->phase = PYAI_CHUNKED_FAILED;
    st->error = err;
    return err;
}

/* Append c to a growing line (the chunk-size line or the trailer section),
 * never past `hard` bytes: -EPROTO then. */
static int push(char **line, size_t *len, size_t *cap, size_t hard, char c)
{
    if (*len >= hard)
        return -EPROTO;
    if (*len == *cap) {
        size_t want = *cap ? *cap * 2 : 64;
        char *grown;
        if (want > hard)
            want = hard;
        if ((grown = realloc(*line, want)) == NULL)
            return -ENOMEM;
        *line = grown;
        *cap = want;
    }
    (*line)[(*len)++] = c;
    return 0;
}

/* ---- the chunk-size line ------------------------------------------------ */

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* RFC 9110 5.6.2 tchar */
static int is_tchar(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static size_t skip_blanks(const unsigned char *s, size_t i, size_t n)
{
    while (i < n && (s[i] == ' ' || s[i] == '\t'))
        i++;
    return i;
}

/* The end of the token at s[i], or i when there is none. */
static size_t skip_token(const unsigned char *s, size_t i, size_t n)
{
    while (i < n && is_tchar(s[i]))
        i++;
    return i;
}

/* The end of the quoted-string (RFC 9110 5.6.4) at s[i], or i when there is none. */
static size_t skip_quoted(const unsigned char *s, size_t i, size_t n)
{
    size_t j = i + 1;

    if (i >= n || s[i] != '"')
        return i;
    while (j < n) {
        unsigned char c = s[j];
        if (c == '"')
            return j + 1;
        if (c == '\\') {
            if (j + 1 >= n || !(s[j + 1] == '\t' || (s[j + 1] >= 0x20 && s[j + 1] != 0x7f)))
                return i;
            j += 2;
        } else if (c == '\t' || c == ' ' || c == '!' || (c >= 0x23 && c <= 0x5b) || (c >= 0x5d && c <= 0x7e) ||
                   c >= 0x80) {
            j++;
        } else {
            return i;
        }
    }
    return i;
}

/* Whether s[0, n) (starting with its ';') is *( BWS ";" BWS name [ BWS "=" BWS value ] ),
 * exactly gunicorn's CHUNK_EXT_RE: blanks at the very end are not allowed. */
static int valid_extensions(const unsigned char *s, size_t n)
{
    size_t i = 0;

    while (i < n) {
        size_t j, k;
        i = skip_blanks(s, i, n);
        if (i >= n || s[i] != ';')
            return 0;
        i = skip_blanks(s, i + 1, n);
        j = skip_token(s, i, n);
        if (j == i)
            return 0;
        i = j;
        k = skip_blanks(s, i, n);
        if (k < n && s[k] == '=') {
            k = skip_blanks(s, k + 1, n);
            j = skip_token(s, k, n);
            if (j == k)
                j = skip_quoted(s, k, n);
            if (j == k)
                return 0;
            i = j;
        }
    }
    return 1;
}

/* The size of the chunk-size line s[0, n) (its CRLF taken off), or -EPROTO. */
static int parse_size_line(const char *line, size_t n, int64_t *size)
{
    const unsigned char *s = (const unsigned char *)line;
    const unsigned char *semi = memchr(s, ';', n);
    size_t hex_len = semi ? (size_t)(semi - s) : n, i;
    int64_t value = 0;

    if (semi) {
        if (memchr(semi, '\r', n - hex_len) != NULL)
            return -EPROTO; /* a bare CR in the extensions */
        while (hex_len > 0 && (s[hex_len - 1] == ' ' || s[hex_len - 1] == '\t'))
            hex_len--; /* BWS before the extensions, and only then */
    }
    if (hex_len == 0)
        return -EPROTO;
    for (i = 0; i < hex_len; i++) {
        int d = hex_value((char)s[i]);
        if (d < 0)
            return -EPROTO;
        if (value > (INT64_MAX - d) / 16)
            return -EPROTO; /* no file could hold it (leading zeros are fine) */
        value = value * 16 + d;
    }
    if (semi && !valid_extensions(semi, n - (size_t)(semi - s)))
        return -EPROTO;
    *size = value;
    return 0;
}

/* ---- decoding --------------------------------------------------------------- */

/* The data runs of one piece received are written together: with 16 KiB
 * chunks (curl's) a 1 MiB piece holds 64 of them, and one writev for the
 * file (and one for the tee pipe) instead of 64 writes each is what makes
 * the decoding cost little more than the copy. */
#ifndef MAX_RUNS
#define MAX_RUNS 64
#endif
/* A run this small is moved back in st->buf to the end of the run before it
 * (over the framing between them, decoded already) instead of taking an iovec
 * of its own: a piece of 1-byte chunks is then one run, hashed by one call of
 * on_data (a Python callback taking the GIL) and written by one writev, not
 * one call per byte and a writev per 64 bytes (measured: 114 ms of server CPU
 * per wire MB of 1-byte chunks, against 5 ms of 1 MiB chunks).  Copying runs
 * this small costs less than an iovec and a callback each.  (The fuzzer
 * builds with small MAX_RUNS and MERGE_MAX, to reach both with small inputs.) */
#ifndef MERGE_MAX
#define MERGE_MAX 4096
#endif

/* What one receive writes to and with. */
struct sink {
    int file_fd;
    const pyai_recv_limits *lim;
    pyai_data_fn on_data;
    void *data_ctx;
    int tee_fd;
    int64_t start_pos;           /* the file offset at the call's start, -1: nothing to reserve or write back */
    int64_t writeback_step;      /* 0 once the file turns out not to support it */
    int64_t done;                /* data bytes written by the call */
    struct iovec runs[MAX_RUNS]; /* data runs decoded, not written yet (they point into st->buf) */
    int nruns;
    size_t pending; /* their bytes */
};

/* Write the pending runs: show them to on_data, write them to the tee pipe,
 * then to the file, then write the file back behind.  The runs on_data took
 * are written (the file holds what was hashed), the one it refused and those
 * after it are not: its error is returned, and the decoder is not to be
 * resumed (its state counts them as decoded). */
static int flush(pyai_chunked *st, struct sink *out)
{
    struct iovec copy[MAX_RUNS];
    int64_t pos = out->start_pos + out->done, n;
    int rc, i, refused = 0;

    if (out->nruns == 0)
        return 0;
    for (i = 0; out->on_data && i < out->nruns; i++) {
        if ((refused = out->on_data(out->data_ctx, out->runs[i].iov_base, out->runs[i].iov_len)) < 0) {
            while (out->nruns > i)
                out->pending -= out->runs[--out->nruns].iov_len;
            break;
        }
    }
    n = (int64_t)out->pending;
    if (out->tee_fd >= 0) {
        memcpy(copy, out->runs, sizeof(struct iovec) * (size_t)out->nruns);
        if ((rc = pyai_writev_all(out->tee_fd, copy, out->nruns)) < 0) {
            out->nruns = 0; /* a later flush must not show them to on_data again */
            out->pending = 0;
            return rc;
        }
    }
    rc = pyai_writev_all(out->file_fd, out->runs, out->nruns);
    out->nruns = 0;
    out->pending = 0;
    if (rc < 0)
        return rc;
    out->done += n;
    if (n > 0 && out->start_pos >= 0 && out->writeback_step > 0 &&
        (rc = pyai_write_behind(out->file_fd, pos, pos + n, out->writeback_step)) < 0) {
        if (!pyai_write_behind_unsupported(rc))
            return rc;
        out->writeback_step = 0; /* this file cannot be written back so: just receive it */
    }
    return refused;
}

/* Take one run of data of the current chunk: hashed and written with the others of the piece. */
static int add_run(pyai_chunked *st, struct sink *out, const char *p, size_t n)
{
    int64_t pos = out->start_pos + out->done + (int64_t)out->pending;
    int rc;

    if (st->max_size > 0 && (int64_t)n > st->max_size - st->decoded)
        return fail(st, -EFBIG); /* nothing of it is written: the caller refuses the body */
    if (out->start_pos >= 0 && out->lim->reserve_step > 0 && pos >= st->reserved_to) {
        /* Within the chunk only: its end is known, the body's is not. */
        int64_t len = st->chunk_left < out->lim->reserve_step ? st->chunk_left : out->lim->reserve_step;
        if (len >= RESERVE_MIN) {
            if ((rc = pyai_preallocate(out->file_fd, pos, len)) < 0)
                return rc;
            /* a file system that cannot reserve is not asked again */
            st->reserved_to = rc == 0 ? INT64_MAX : pos + len;
        }
    }
    if (out->nruns > 0 && n <= MERGE_MAX) {
        /* The runs are in order in st->buf, so the last one ends at or before p. */
        struct iovec *last = &out->runs[out->nruns - 1];
        char *end = (char *)last->iov_base + last->iov_len;
        if (end != p)
            memmove(end, p, n);
        last->iov_len += n;
    } else {
        if (out->nruns == MAX_RUNS && (rc = flush(st, out)) < 0)
            return rc;
        out->runs[out->nruns].iov_base = (void *)p;
        out->runs[out->nruns].iov_len = n;
        out->nruns++;
    }
    out->pending += n;
    st->decoded += (int64_t)n;
    return 0;
}

/* Take bytes of p[0, n) into the chunk-size line: 1 once it is complete (its
 * CRLF taken off), 0 when all n bytes were taken; *used says how many. */
static int take_line(pyai_chunked *st, const char *p, size_t n, size_t *used)
{
    size_t hard = st->max_line + LINE_SLACK + 2, i;

    for (i = 0; i < n; i++) {
        int rc = push(&st->line, &st->line_len, &st->line_cap, hard, p[i]);
        if (rc < 0) {
            *used = i;
            return rc;
        }
        if (p[i] == '\n' && st->line_len >= 2 && st->line[st->line_len - 2] == '\r') {
            st->line_len -= 2;
            *used = i + 1;
            return 1;
        }
    }
    *used = n;
    return 0;
}

/* The same for the trailer section: 1 once its CRLF CRLF (or, when empty, its CRLF) came. */
static int take_trailer(pyai_chunked *st, const char *p, size_t n, size_t *used)
{
    size_t hard = st->max_trailer + LINE_SLACK + 4, i;

    for (i = 0; i < n; i++) {
        char *t;
        size_t tl;
        int rc = push(&st->trailer, &st->trailer_len, &st->trailer_cap, hard, p[i]);
        if (rc < 0) {
            *used = i;
            return rc;
        }
        if (p[i] != '\n')
            continue;
        t = st->trailer;
        tl = st->trailer_len;
        if (tl < 2 || t[tl - 2] != '\r')
            st->trailer_bare_lf = 1; /* refused unless the section ends in this piece, as gunicorn does */
        if (tl == 2 && t[0] == '\r') {
            st->trailer_len = 0;
            *used = i + 1;
            return 1;
        }
        if (tl >= 4 && memcmp(t + tl - 4, "\r\n\r\n", 4) == 0) {
            st->trailer_len = tl - 4;
            *used = i + 1;
            return 1;
        }
    }
    *used = n;
    return 0;
}

/* Decode buf[pos, len): to its end, or to the end of the body (DONE, the rest
 * is the leftover).  0, or -errno. */
static int decode_runs(pyai_chunked *st, struct sink *out)
{
    while (st->pos < st->len && st->phase != PYAI_CHUNKED_DONE) {
        const char *p = st->buf + st->pos;
        size_t avail = st->len - st->pos, used;
        int64_t size;
        int rc;

        switch (st->phase) {
        case PYAI_CHUNKED_SIZE:
            rc = take_line(st, p, avail, &used);
            st->pos += used;
            if (rc < 0)
                return fail(st, rc);
            if (rc == 0)
                break;
            if ((rc = parse_size_line(st->line, st->line_len, &size)) < 0)
                return fail(st, rc);
            st->line_len = 0;
            if (size == 0) {
                st->phase = PYAI_CHUNKED_TRAILER;
                st->trailer_len = 0;
                st->trailer_bare_lf = 0;
            } else {
                st->phase = PYAI_CHUNKED_DATA;
                st->chunk_left = size;
            }
            break;
        case PYAI_CHUNKED_DATA:
            used = st->chunk_left < (int64_t)avail ? (size_t)st->chunk_left : avail;
            if ((rc = add_run(st, out, p, used)) < 0)
                return rc;
            st->pos += used;
            st->chunk_left -= (int64_t)used;
            if (st->chunk_left == 0) {
                st->phase = PYAI_CHUNKED_CRLF;
                st->crlf_seen = 0;
            }
            break;
        case PYAI_CHUNKED_CRLF:
            /* Judged on both bytes, as gunicorn does (it reads two, then compares). */
            st->pos++;
            if (!st->crlf_seen) {
                st->crlf_first = p[0];
                st->crlf_seen = 1;
            } else if (st->crlf_first != '\r' || p[0] != '\n') {
                return fail(st, -EPROTO);
            } else {
                st->phase = PYAI_CHUNKED_SIZE;
                st->line_len = 0;
            }
            break;
        case PYAI_CHUNKED_TRAILER:
            rc = take_trailer(st, p, avail, &used);
            st->pos += used;
            if (rc < 0)
                return fail(st, rc);
            if (rc == 1)
                st->phase = PYAI_CHUNKED_DONE;
            break;
        default: return fail(st, -EINVAL);
        }
    }
    if (st->phase == PYAI_CHUNKED_DONE)
        return 0;
    /* All received so far is decoded and the line goes on: gunicorn's bounds. */
    if (st->phase == PYAI_CHUNKED_SIZE && st->line_len > st->max_line)
        return fail(st, -EPROTO);
    if (st->phase == PYAI_CHUNKED_TRAILER && (st->trailer_len > st->max_trailer || st->trailer_bare_lf))
        return fail(st, -EPROTO);
    return 0;
}

/* decode_runs, then write what it decoded (also when it failed: the bytes
 * written are then those before the failure, as lim->moved says). */
static int decode(pyai_chunked *st, struct sink *out)
{
    int rc = decode_runs(st, out), written = flush(st, out);
    return rc < 0 ? rc : written;
}

/* recv() into the buffer, never splice: the framing must be read, so every
 * byte passes through user space anyway.  The receive step is pyai_io.c's
 * (pyai_wait.h): the socket is non-blocking for the call (restored after) and
 * poll() does the waiting, so the deadlines hold; a socket called readable
 * that yields nothing (TCP urgent data) makes the receive nap instead of spin. */
int64_t pyai_recv_chunked(int sock_fd, int file_fd, pyai_chunked *st, pyai_recv_limits *lim,
                          pyai_interrupt_fn interrupted, void *ctx, pyai_data_fn on_data, void *data_ctx, int tee_fd)
{
    struct sink out = {.file_fd = file_fd,
                       .lim = lim,
                       .on_data = on_data,
                       .data_ctx = data_ctx,
                       .tee_fd = tee_fd,
                       .start_pos = -1,
                       .writeback_step = lim->writeback_step};
    struct pyai_rx rx;
    int64_t rc;

    pyai_rx_begin(&rx, sock_fd, lim, interrupted, ctx);
    if (st->phase == PYAI_CHUNKED_FAILED)
        return st->error;
    if (st->phase == PYAI_CHUNKED_DONE)
        return 0;
    if (lim->reserve_step > 0 || lim->writeback_step > 0) {
        out.start_pos = lseek(file_fd, 0, SEEK_CUR); /* -1 for a pipe or socket */
        if (out.start_pos < 0)
            out.start_pos = -1;
    }
    /* What was fed, or left over by a call that stopped, first. */
    if ((rc = decode(st, &out)) < 0)
        goto out;
    while (st->phase != PYAI_CHUNKED_DONE) {
        ssize_t got;

        if ((rc = buf_room(st, CHUNKED_BUF)) < 0)
            goto out;
        /* only now: a body the fed bytes complete leaves the socket as it is */
        if ((rc = pyai_rx_nonblocking(&rx)) < 0)
            goto out;
        got = pyai_rx_recv(&rx, st->buf + st->len, st->cap - st->len);
        if (got < 0) {
            rc = got;
            goto out;
        }
        if (got == 0)
            break; /* the peer closed before the end: st->phase says where */
        st->len += (size_t)got;
        pyai_rx_moved(&rx);
        if ((rc = decode(st, &out)) < 0)
            goto out;
        if (st->phase != PYAI_CHUNKED_DONE && pyai_rx_over_budget(&rx)) {
            rc = -EAGAIN;
            goto out;
        }
    }
    rc = out.done;
out:
    return pyai_rx_end(&rx, out.done, rc);
}
