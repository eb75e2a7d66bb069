# Declarations of csrc/pyai_io.h for Cython (see that header for the contracts).
from libc.stdint cimport int64_t, uint64_t

cdef extern from "pyai_io.h" nogil:
    enum:
        PYAI_FADV_NORMAL
        PYAI_FADV_SEQUENTIAL
        PYAI_FADV_RANDOM
        PYAI_FADV_WILLNEED
        PYAI_FADV_DONTNEED
        PYAI_FADV_NOREUSE

    ctypedef int (*pyai_interrupt_fn)(void *ctx) noexcept nogil
    ctypedef int (*pyai_data_fn)(void *ctx, const char *buf, size_t len) noexcept nogil

    ctypedef struct pyai_recv_limits:
        int timeout_ms
        int waited_ms
        int patience_ms
        int budget_ms
        int64_t reserve_step
        int64_t writeback_step
        int64_t moved
        int idle_ms

    int64_t pyai_recv_to_file(int sock_fd, int file_fd, int64_t nbytes, pyai_recv_limits *lim,
                              pyai_interrupt_fn interrupted, void *ctx)
    int64_t pyai_recv_to_file_seen(int sock_fd, int file_fd, int64_t nbytes, pyai_recv_limits *lim,
                                   pyai_interrupt_fn interrupted, void *ctx,
                                   pyai_data_fn on_data, void *data_ctx)
    int64_t pyai_recv_to_file_tee(int sock_fd, int file_fd, int64_t nbytes, pyai_recv_limits *lim,
                                  pyai_interrupt_fn interrupted, void *ctx, int tee_fd)
    int pyai_write_all(int fd, const void *buf, size_t len)
    int64_t pyai_copy_fd(int src_fd, int dst_fd, int64_t nbytes)
    int pyai_rename_noreplace(int src_dir_fd, const char *src, int dst_dir_fd, const char *dst)
    int pyai_openat2(int dir_fd, const char *path, int flags, uint64_t resolve)
    int pyai_fsync(int fd)
    int pyai_write_behind(int fd, int64_t start, int64_t end, int64_t step)
    int pyai_write_behind_unsupported(int err)
    int pyai_fsync_dir(const char *path)
    int pyai_fadvise(int fd, int64_t offset, int64_t length, int advice)
    int pyai_preallocate(int fd, int64_t offset, int64_t nbytes)
    int pyai_write_back(int fd)
    int pyai_syncfs(int fd)


# Declarations of csrc/pyai_chunked.h (see that header for the contracts).
cdef extern from "pyai_chunked.h" nogil:
    enum:
        PYAI_CHUNKED_SIZE
        PYAI_CHUNKED_DATA
        PYAI_CHUNKED_CRLF
        PYAI_CHUNKED_TRAILER
        PYAI_CHUNKED_DONE
        PYAI_CHUNKED_FAILED
        PYAI_CHUNKED_MAX_LINE
        PYAI_CHUNKED_MAX_TRAILER

    ctypedef struct pyai_chunked:
        int64_t max_size
        size_t max_line
        size_t max_trailer
        int phase
        int error
        int64_t decoded
        char *trailer
        size_t trailer_len
        char *buf
        size_t cap
        size_t pos
        size_t len

    void pyai_chunked_init(pyai_chunked *st, int64_t max_size)
    void pyai_chunked_free(pyai_chunked *st)
    int pyai_chunked_feed(pyai_chunked *st, const void *data, size_t len)
    int64_t pyai_recv_chunked(int sock_fd, int file_fd, pyai_chunked *st, pyai_recv_limits *lim,
                              pyai_interrupt_fn interrupted, void *ctx, pyai_data_fn on_data, void *data_ctx,
                              int tee_fd)


cdef extern from "pyai_plain.h" nogil:
    enum:
        PYAI_PLAIN_GET
        PYAI_PLAIN_HEAD

    struct pyai_plain_limits:
        size_t line
        size_t fields
        size_t field

    struct pyai_plain_request:
        int method
        int minor_version
        int keep_alive
        size_t target_offset
        size_t target_length

    int pyai_plain_load()
    const char *pyai_plain_library()
    long pyai_plain_parse(const char *buf, size_t len, const pyai_plain_limits *lim, pyai_plain_request *req)
    ssize_t pyai_plain_recv(int fd, char *buf, size_t len)
