/* pyai_plain.h - recognise a plain request head: a GET or HEAD of one path
 * segment, with only the fields every simple client sends.
 *
 * The head is parsed by picohttpparser, as the system's h2o library exports it
 * (libh2o-evloop or libh2o, loaded at run time: pyai runs without it, every
 * request then taking the full path).  What is checked here on top of the
 * parser is framing only: the exact request line, no bare LF, the field names
 * from a short list, gunicorn's head limits, and Connection's tokens.  Whether
 * a plain request is answered on the plain path is the caller's policy.
 */
#ifndef PYAI_PLAIN_H
#define PYAI_PLAIN_H

#include <stddef.h>
#include <sys/types.h>

enum { PYAI_PLAIN_GET = 1, PYAI_PLAIN_HEAD = 2 };

/* gunicorn's limit_request_line, _fields and _field_size. */
struct pyai_plain_limits {
    size_t line, fields, field;
};

struct pyai_plain_request {
    int method;           /* PYAI_PLAIN_GET or PYAI_PLAIN_HEAD */
    int minor_version;    /* HTTP/1.<minor_version>: 0 or 1 */
    int keep_alive;       /* the connection persists after the answer (RFC 9112 9.3) */
    size_t target_offset; /* the request target, within the head */
    size_t target_length;
};

/* Load the parser once: 0, or -ENOENT when no h2o library provides it. */
int pyai_plain_load(void);

/* The name of the library the parser was loaded from ("" before a load succeeded). */
const char *pyai_plain_library(void);

/* The complete head at the start of buf[0..len): its length (blank line
 * included) when it is a plain request, filling *req; 0 while it is not
 * complete; -EINVAL when it is not a plain request (malformed included: the
 * full path's parser decides what to answer); -ENOSYS when no parser is loaded. */
long pyai_plain_parse(const char *buf, size_t len, const struct pyai_plain_limits *lim, struct pyai_plain_request *req);

/* recv() what the socket holds into buf[0..len) without waiting (EINTR retried): the
 * bytes received, 0 when the peer closed, or -errno (-EAGAIN: nothing there yet). */
ssize_t pyai_plain_recv(int fd, char *buf, size_t len);

#endif
