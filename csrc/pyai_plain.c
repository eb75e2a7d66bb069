/* pyai_plain.c - recognise a plain request head (see pyai_plain.h). */
#include "pyai_plain.h"

#include <dlfcn.h>
#include <errno.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

/* picohttpparser's interface, as h2o exports it (stable since 2014). */
struct phr_header {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
};
typedef int (*phr_parse_request_fn)(const char *buf, size_t len, const char **method, size_t *method_len,
                                    const char **path, size_t *path_len, int *minor_version, struct phr_header *headers,
                                    size_t *num_headers, size_t last_len);

/* The h2o libraries that export the parser, most specific first. */
static const char *const LIBRARIES[] = {"libh2o-evloop.so.0.13", "libh2o.so.0.13"};
/* More fields than this is not a plain request (the full path checks limit_request_fields). */
#define MAX_FIELDS 32

static phr_parse_request_fn parse_request;
static const char *loaded_from = "";

int pyai_plain_load(void)
{
    size_t i;
    if (parse_request != NULL)
        return 0;
    for (i = 0; i < sizeof(LIBRARIES) / sizeof(LIBRARIES[0]); i++) {
        void *lib = dlopen(LIBRARIES[i], RTLD_NOW | RTLD_LOCAL);
        void *symbol;
        if (lib == NULL)
            continue;
        symbol = dlsym(lib, "phr_parse_request");
        if (symbol == NULL) {
            dlclose(lib);
            continue;
        }
        loaded_from = LIBRARIES[i];
        parse_request = (phr_parse_request_fn)symbol; /* the library stays loaded for good */
        return 0;
    }
    return -ENOENT;
}

const char *pyai_plain_library(void)
{
    return loaded_from;
}

/* The fields a plain request may have (pyai.serving.PLAIN_FIELDS): what curl, wget, wrk,
 * hey and requests send to GET a file, none of which changes the answer. */
static int plain_field(const char *name, size_t len)
{
    static const struct {
        const char *name;
        size_t len;
    } FIELDS[] = {
        {"host", 4},        {"user-agent", 10},   {"accept", 6}, {"accept-encoding", 15},
        {"connection", 10}, {"content-type", 12},
    };
    size_t i;
    for (i = 0; i < sizeof(FIELDS) / sizeof(FIELDS[0]); i++)
        if (len == FIELDS[i].len && strncasecmp(name, FIELDS[i].name, len) == 0)
            return 1;
    return 0;
}

/* value[0..len) holds token, in any case (as the full path looks for it: a substring). */
static int holds(const char *value, size_t len, const char *token)
{
    size_t n = strlen(token), i;
    for (i = 0; i + n <= len; i++)
        if (strncasecmp(value + i, token, n) == 0)
            return 1;
    return 0;
}

/* One path segment of visible ASCII: no %, ?, # nor a second slash (nothing to decode or split). */
static int plain_target(const char *target, size_t len)
{
    size_t i;
    if (len == 0 || target[0] != '/')
        return 0;
    for (i = 1; i < len; i++) {
        unsigned char c = (unsigned char)target[i];
        if (c <= 0x20 || c >= 0x7f || c == '%' || c == '?' || c == '#' || c == '/')
            return 0;
    }
    return 1;
}

/* Every line of head[0..len) ends in CRLF (a bare LF is for the full path's parser to refuse). */
static int crlf_only(const char *head, size_t len)
{
    const char *at = head, *end = head + len;
    while ((at = memchr(at, '\n', (size_t)(end - at))) != NULL) {
        if (at == head || at[-1] != '\r')
            return 0;
        at++;
    }
    return 1;
}

long pyai_plain_parse(const char *buf, size_t len, const struct pyai_plain_limits *lim, struct pyai_plain_request *req)
{
    struct phr_header fields[MAX_FIELDS];
    size_t method_len, target_len, count = MAX_FIELDS, line_len, i;
    const char *method, *target;
    int minor, head_len, close = 0, keep = 0;

    if (parse_request == NULL)
        return -ENOSYS;
    head_len = parse_request(buf, len, &method, &method_len, &target, &target_len, &minor, fields, &count, 0);
    if (head_len == -2)
        return 0;
    if (head_len < 0)
        return -EINVAL;
    /* the request line exactly: METHOD SP target SP HTTP/1.x CRLF */
    if (method != buf || target != buf + method_len + 1 || (minor != 0 && minor != 1))
        return -EINVAL;
    line_len = method_len + 1 + target_len + 9;
    if (line_len + 2 > (size_t)head_len || memcmp(target + target_len, " HTTP/1.", 8) != 0 || buf[line_len] != '\r' ||
        line_len > lim->line)
        return -EINVAL;
    if (method_len == 3 && memcmp(method, "GET", 3) == 0)
        req->method = PYAI_PLAIN_GET;
    else if (method_len == 4 && memcmp(method, "HEAD", 4) == 0)
        req->method = PYAI_PLAIN_HEAD;
    else
        return -EINVAL;
    if (!plain_target(target, target_len) || count > lim->fields || !crlf_only(buf, (size_t)head_len))
        return -EINVAL;
    for (i = 0; i < count; i++) {
        const struct phr_header *field = &fields[i];
        if (field->name == NULL || !plain_field(field->name, field->name_len) ||
            field->name_len + field->value_len + 2 > lim->field)
            return -EINVAL; /* a continuation line, another field, or one over the limit */
        if (field->name_len == 10 && strncasecmp(field->name, "connection", 10) == 0) {
            if (holds(field->value, field->value_len, "close"))
                close = 1;
            else if (holds(field->value, field->value_len, "keep-alive"))
                keep = 1;
        }
    }
    req->minor_version = minor;
    /* RFC 9112 9.3: HTTP/1.1 persists unless "close"; HTTP/1.0 only with "keep-alive" */
    req->keep_alive = !close && (minor == 1 || keep);
    req->target_offset = (size_t)(target - buf);
    req->target_length = target_len;
    return head_len;
}

ssize_t pyai_plain_recv(int fd, char *buf, size_t len)
{
    ssize_t got;
    do
        got = recv(fd, buf, len, MSG_DONTWAIT);
    while (got < 0 && errno == EINTR);
    return got < 0 ? -errno : got;
}
