/* pyai_io.h - the blocking file and socket primitives of pyai, in plain C.
 *
 * No Python here: every function returns >= 0 on success and -errno on
 * failure, and the caller (pyai/_io.pyx) decides what an error means.  The
 * functions retry EINTR themselves and complete short writes, so one call
 * does the whole job and can run without the GIL.
 */
#ifndef PYAI_IO_H
#define PYAI_IO_H

#include <stddef.h>
#include <stdint.h>
#include <fcntl.h>
#include <sys/uio.h>

/* posix_fadvise advice values, re-exported as fileio.FADV_* */
#define PYAI_FADV_NORMAL POSIX_FADV_NORMAL
#define PYAI_FADV_SEQUENTIAL POSIX_FADV_SEQUENTIAL
#define PYAI_FADV_RANDOM POSIX_FADV_RANDOM
#define PYAI_FADV_WILLNEED POSIX_FADV_WILLNEED
#define PYAI_FADV_DONTNEED POSIX_FADV_DONTNEED
#define PYAI_FADV_NOREUSE POSIX_FADV_NOREUSE

/* Called when a wait is interrupted by a signal (EINTR).  Return 0 to carry
 * on, non-zero to give up with -EINTR: the Python binding runs the signal
 * handlers here, so Ctrl-C or a worker's exit handler still work while a
 * slow client keeps us waiting.  NULL means always carry on. */
typedef int (*pyai_interrupt_fn)(void *ctx);

/* Called with every piece of a body as it passes through memory, before it
 * is written (the Python binding feeds it to the digests a PUT computes).
 * Return 0 to carry on, or -errno to stop the receive with that error. */
typedef int (*pyai_data_fn)(void *ctx, const char *buf, size_t len);

/* The limits of one receive and what it reports back.  Times are in
 * milliseconds, < 0 meaning "no limit"; the caller sets the in fields. */
typedef struct pyai_recv_limits {
    int timeout_ms;         /* in: fail with -ETIMEDOUT once no byte has moved for this long */
    int waited_ms;          /* in: how long before this call the last byte came (counts against timeout_ms) */
    int patience_ms;        /* in: return -EAGAIN once no byte has moved for this long within the call */
    int budget_ms;          /* in: return -EAGAIN once the call has run this long (checked after each piece) */
    int64_t reserve_step;   /* in: > 0: keep disk space reserved this far ahead of the write position */
    int64_t writeback_step; /* in: > 0: write back behind the receive in steps of this size (pyai_write_behind) */
    int64_t moved;          /* out: the bytes moved by the call, whatever it returned */
    int idle_ms;            /* out: how long ago the last byte came when the call returned (waited_ms included) */
} pyai_recv_limits;

/* Move up to nbytes from the stream socket sock_fd to file_fd (at its
 * offset), never reading past nbytes.  Works on blocking and non-blocking
 * sockets alike.  Returns the bytes moved, fewer than nbytes only if the peer
 * closed the connection; or -errno, with lim->moved saying how many were
 * moved (and written) before: -ETIMEDOUT when no byte came for
 * lim->timeout_ms, -EAGAIN when the patience or the budget ran out.
 * The deadlines hold on every path: a socket that poll() calls readable but
 * that yields nothing (TCP urgent data stops splice at its mark) is read with
 * recv(), which reads past the mark (the urgent byte itself is not in the
 * stream unless SO_OOBINLINE is set, and is dropped); should that yield
 * nothing either, the receive naps instead of spinning.  With
 * lim->reserve_step > 0, each time the bytes written reach the reserved end,
 * the next reserve_step bytes (up to nbytes) are reserved with
 * pyai_preallocate: -ENOSPC then fails the receive.  With
 * lim->writeback_step > 0, the file's pages are written back behind the
 * receive (pyai_write_behind after each piece): a file that cannot be (see
 * pyai_write_behind) is simply received, a writeback error fails the receive.
 * The caller must be the socket's only reader while this runs. */
int64_t pyai_recv_to_file(int sock_fd, int file_fd, int64_t nbytes, pyai_recv_limits *lim,
                          pyai_interrupt_fn interrupted, void *ctx);

/* The same, except that every byte passes through one buffer in user space
 * (recv + write, never splice) and is shown to on_data(data_ctx, ...) before
 * it is written: the way to compute a digest while receiving. */
int64_t pyai_recv_to_file_seen(int sock_fd, int file_fd, int64_t nbytes, pyai_recv_limits *lim,
                               pyai_interrupt_fn interrupted, void *ctx, pyai_data_fn on_data, void *data_ctx);

/* The same as pyai_recv_to_file (splice when it can), and every byte is also
 * put into the pipe tee_fd for a reader in another thread: with tee(2) the
 * pipes share the pages, so no copy is made here.  The way to compute a
 * digest beside the receive instead of in its way.  Waits (at most
 * lim->timeout_ms at a time) while tee_fd is full; -EPIPE when its reader has gone. */
int64_t pyai_recv_to_file_tee(int sock_fd, int file_fd, int64_t nbytes, pyai_recv_limits *lim,
                              pyai_interrupt_fn interrupted, void *ctx, int tee_fd);

/* Write all len bytes of buf to fd (retrying short writes).  Returns 0. */
int pyai_write_all(int fd, const void *buf, size_t len);

/* Write all of iov[0, n) to fd (retrying short writes; iov is used up).  Returns 0. */
int pyai_writev_all(int fd, struct iovec *iov, int n);

/* Copy nbytes from src_fd to dst_fd, both at their current offsets, in the
 * kernel when it can (copy_file_range, then sendfile, then read/write).
 * Returns the bytes copied, fewer than nbytes only at the end of src_fd. */
int64_t pyai_copy_fd(int src_fd, int dst_fd, int64_t nbytes);

/* Rename src (relative to src_dir_fd, or AT_FDCWD) to dst (relative to
 * dst_dir_fd) unless dst exists (-EEXIST); neither name is followed if it is
 * a symlink.  Atomic with renameat2; link + unlink where the kernel or file
 * system lacks RENAME_NOREPLACE. */
int pyai_rename_noreplace(int src_dir_fd, const char *src, int dst_dir_fd, const char *dst);

/* openat2(2): open path relative to dir_fd with flags and the RESOLVE_*
 * flags resolve.  Returns the descriptor, or -errno: -ENOSYS where the
 * kernel (or a seccomp filter) has no openat2, -EAGAIN when the kernel saw a
 * rename race during a RESOLVE_BENEATH walk (the caller decides whether to
 * try again). */
int pyai_openat2(int dir_fd, const char *path, int flags, uint64_t resolve);

int pyai_fsync(int fd);

/* Writeback behind a writer, so that a final fsync has little left to do and
 * an upload holds a bounded amount of dirty page cache.  Call it after the
 * data at file offsets [from, to) has been written.  For every whole step of
 * `step` bytes (steps are aligned to file offsets, so the calls need no state
 * between them) that the write completed, it starts the writeback of that
 * step (sync_file_range WRITE, which does not wait) and waits for the
 * writeback of the step before it to finish: at most about two steps of the
 * file are dirty at any time.  It flushes no device cache and no metadata:
 * fsync is still what makes the file durable.  Returns 1 when it started a
 * writeback, 0 when no step was completed, -errno on failure: -ESPIPE,
 * -EINVAL, -ENOSYS or -EOPNOTSUPP mean this file cannot be written back this
 * way (nothing is wrong with it), others (-EIO) that its data cannot be
 * written. */
int pyai_write_behind(int fd, int64_t from, int64_t to, int64_t step);

/* 1 if err (a negative errno of pyai_write_behind) means "not possible for this file". */
int pyai_write_behind_unsupported(int err);

/* fsync a directory, so the entries added to or removed from it are durable. */
int pyai_fsync_dir(const char *path);

int pyai_fadvise(int fd, int64_t offset, int64_t length, int advice);

/* Reserve nbytes of fd from offset on, without changing its size.  Returns 1
 * when reserved, 0 when the file system cannot (or nbytes is 0); -ENOSPC when
 * it is full. */
int pyai_preallocate(int fd, int64_t offset, int64_t nbytes);

/* Write back every dirty page of fd and wait until the device has them
 * (sync_file_range WAIT_BEFORE|WRITE|WAIT_AFTER over the whole file): the
 * blocks are allocated and written, but no device cache is flushed and no
 * metadata is committed, so alone it makes nothing durable (see
 * pyai/backends/flusher.py for when a later directory fsync does).  Returns 0
 * or -errno (-EIO when the data cannot be written). */
int pyai_write_back(int fd);

/* syncfs(2): write back every dirty page and inode of the file system that
 * holds fd and ask it to make them durable.  Returns 0 or -errno (a writeback
 * error anywhere on that file system since this descriptor last asked). */
int pyai_syncfs(int fd);

#endif /* PYAI_IO_H */
