/* pyai_chunked.h - receiving a `Transfer-Encoding: chunked` request body into a file, in plain C.
 *
 * A resumable decoder: its whole state lives in a pyai_chunked the caller
 * owns, so a receive that returns -EAGAIN (its patience or budget ran out)
 * is resumed by the next call exactly where it stopped, inside a chunk-size
 * line, the data, the CRLF after the data or the trailer section.  Bytes
 * somebody else already read from the socket (the server's read-ahead) are
 * given with pyai_chunked_feed and decoded before the socket is read.  The
 * decoder reads the socket in large pieces, so it may read past the end of
 * the body (a pipelined next request): those bytes are never lost, they stay
 * in the state as the leftover for the caller to give back.
 *
 * As in pyai_io.h, everything returns -errno on failure and decides no
 * policy: -EPROTO says the framing is wrong, -EFBIG that the body is larger
 * than the caller allows, and where a body that ended early ended is told by
 * `phase`, for the caller to name.
 */
#ifndef PYAI_CHUNKED_H
#define PYAI_CHUNKED_H

#include <stddef.h>
#include <stdint.h>

#include "pyai_io.h"

/* Where the decoder is (pyai_chunked.phase). */
enum {
    PYAI_CHUNKED_SIZE = 0, /* in a chunk-size line (with its extensions) */
    PYAI_CHUNKED_DATA,     /* in a chunk's data */
    PYAI_CHUNKED_CRLF,     /* in the CRLF after a chunk's data */
    PYAI_CHUNKED_TRAILER,  /* in the trailer section, after the last chunk (0) */
    PYAI_CHUNKED_DONE,     /* the body is complete: `buf` holds the leftover */
    PYAI_CHUNKED_FAILED    /* a framing error or -EFBIG: every later call returns `error` */
};

/* Gunicorn's bounds (gunicorn/http/body.py): a chunk-size line, and a trailer
 * section, longer than these with no end in sight is refused. */
#define PYAI_CHUNKED_MAX_LINE 8190
#define PYAI_CHUNKED_MAX_TRAILER (8190 * 32)

typedef struct pyai_chunked {
    /* in, set by pyai_chunked_init (and may be changed between calls) */
    int64_t max_size;   /* > 0: -EFBIG once the data decoded would exceed this */
    size_t max_line;    /* the longest chunk-size line without its CRLF */
    size_t max_trailer; /* the longest trailer section without its final CRLF CRLF */
    /* out */
    int phase;       /* PYAI_CHUNKED_* */
    int error;       /* the -errno a FAILED decoder returns */
    int64_t decoded; /* the data bytes decoded (and written) so far, all calls together */
    char *trailer;   /* the trailer section once DONE (its fields, CRLF between them, no final CRLF CRLF) */
    size_t trailer_len;
    /* the bytes received (or fed) and not decoded yet: buf[pos, len); once
     * DONE, what followed the body (the leftover to give back) */
    char *buf;
    size_t cap, pos, len;
    /* private */
    int64_t chunk_left;  /* data bytes left in the current chunk */
    int64_t reserved_to; /* file offset up to which space is reserved */
    char *line;          /* the chunk-size line so far */
    size_t line_len, line_cap, trailer_cap;
    int crlf_seen;       /* bytes of the CRLF after the data seen (0 or 1)... */
    char crlf_first;     /* ...and the first of them */
    int trailer_bare_lf; /* the trailer section so far holds a LF without its CR */
} pyai_chunked;

/* A decoder at the start of a body, with gunicorn's limits and max_size
 * (<= 0: none).  Holds no memory until used. */
void pyai_chunked_init(pyai_chunked *st, int64_t max_size);

/* Free what the decoder holds (it can be initialised again after). */
void pyai_chunked_free(pyai_chunked *st);

/* Bytes already read from the socket by someone else: they are decoded,
 * before anything is read from the socket, by the next pyai_recv_chunked.
 * Fed to a DONE decoder they are simply added to the leftover.
 * 0, or -ENOMEM. */
int pyai_chunked_feed(pyai_chunked *st, const void *data, size_t len);

/* Decode the chunked body arriving on the stream socket sock_fd (first the
 * bytes fed, then what it reads) and write its data to file_fd (at its
 * offset), resuming where the last call on st stopped.  Returns the data
 * bytes written by this call once the body is complete (phase DONE) or the
 * peer closed the connection before its end (phase not DONE); or -errno,
 * with lim->moved the data bytes written by the call before: -EPROTO for a
 * framing error (a chunk size that is not hex or does not fit in int64, an
 * invalid extension, no CRLF after the data, a chunk-size line or trailer
 * section over its limit), -EFBIG past st->max_size, and the errors, limits
 * and deadlines of pyai_recv_to_file (lim: timeout, patience, budget,
 * waited, reserve_step, writeback_step; -EAGAIN leaves st ready to resume).
 * Progress, for the deadlines, is any byte received, framing included.
 *
 * The bytes pass through st->buf in user space: with on_data (not NULL)
 * the data runs of each piece received are shown to on_data(data_ctx, ...)
 * before they are written (small runs merged: a piece of tiny chunks is one
 * call, not one per chunk; the framing between them in st->buf is
 * overwritten; should on_data refuse a run, the runs it took are written, the
 * call returns its error, and st is not to be resumed); with tee_fd >= 0,
 * every data run is also written to the pipe tee_fd (for a thread that
 * hashes beside the receive; a full pipe is waited for: tee_fd must be
 * blocking).  (The Python binding hashes in line: measured faster.)
 * With lim->reserve_step > 0, space is reserved ahead of the write position
 * within the current chunk only (the body's end is unknown, and space
 * reserved past the end of the file would stay allocated).  With
 * lim->writeback_step > 0, pyai_write_behind follows every write.  The
 * caller must be the socket's only reader while this runs.
 *
 * Trailers are not interpreted: once DONE, st->trailer holds them for the
 * caller to check (or ignore). */
int64_t pyai_recv_chunked(int sock_fd, int file_fd, pyai_chunked *st, pyai_recv_limits *lim,
                          pyai_interrupt_fn interrupted, void *ctx, pyai_data_fn on_data, void *data_ctx, int tee_fd);

#endif /* PYAI_CHUNKED_H */
