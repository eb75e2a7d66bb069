/* pyai_io.c - see pyai_io.h.  Linux only (splice, copy_file_range, renameat2, openat2). */
#include "pyai_io.h"
#include "pyai_wait.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0) /* linux/fs.h; absent from old libc headers */
#endif
#if !defined(SYS_openat2) && defined(__linux__)
#define SYS_openat2 437 /* the same number on every Linux architecture (the unified syscall table) */
#endif

#define CHUNK (1 << 20)
/* Bytes that are hashed on the way: a piece small enough to stay in the CPU
 * cache between recv, the digest and write (measured: see SEEN_CHUNK below). */
#ifndef SEEN_CHUNK
#define SEEN_CHUNK (256 << 10)
#endif
/* Linux moves at most this much per read/write/sendfile call anyway. */
#define MAX_IO 0x7ffff000

static size_t min_size(int64_t left, size_t cap)
{
    return left < (int64_t)cap ? (size_t)left : cap;
}

/* Old glibc (< 2.28 / < 2.27) has no wrappers: go to the kernel directly. */
static int sys_renameat2(int src_dir_fd, const char *src, int dst_dir_fd, const char *dst, unsigned int flags)
{
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 28))
    return renameat2(src_dir_fd, src, dst_dir_fd, dst, flags);
#elif defined(SYS_renameat2)
    return (int)syscall(SYS_renameat2, src_dir_fd, src, dst_dir_fd, dst, flags);
#else
    errno = ENOSYS;
    return -1;
#endif
}

static ssize_t sys_copy_file_range(int src_fd, int dst_fd, size_t len)
{
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 27))
    return copy_file_range(src_fd, NULL, dst_fd, NULL, len, 0);
#elif defined(SYS_copy_file_range)
    return syscall(SYS_copy_file_range, src_fd, NULL, dst_fd, NULL, len, 0);
#else
    errno = ENOSYS;
    return -1;
#endif
}

int pyai_writev_all(int fd, struct iovec *iov, int n)
{
    ssize_t done = 0;

    for (;;) {
        /* step over what is written, and over empty entries (a writev of nothing returns 0) */
        while (n > 0 && (size_t)done >= iov->iov_len) {
            done -= (ssize_t)iov->iov_len;
            iov++;
            n--;
        }
        if (n == 0)
            return 0;
        iov->iov_base = (char *)iov->iov_base + done;
        iov->iov_len -= (size_t)done;
        done = writev(fd, iov, n);
        if (done < 0) {
            if (errno != EINTR)
                return -errno;
            done = 0;
        } else if (done == 0) {
            return -EIO; /* no progress and no error: retrying would spin forever */
        }
    }
}

int pyai_write_all(int fd, const void *buf, size_t len)
{
    struct iovec one = {(void *)buf, len}; /* a write longer than the kernel takes at once is short: retried */
    return pyai_writev_all(fd, &one, 1);
}

/* ---- recv_to_file ------------------------------------------------------ */

/* After a non-blocking call on fd failed with errno: 0 to try it again (once
 * fd is ready for events, or after a signal the caller lets pass), else
 * -errno to give up with. */
static int after_failed_call(int fd, short events, int timeout_ms, pyai_interrupt_fn interrupted, void *ctx)
{
    if (errno == EAGAIN || errno == EWOULDBLOCK)
        return pyai_wait_for(fd, events, timeout_ms, interrupted, ctx);
    if (errno == EINTR)
        return (interrupted && interrupted(ctx)) ? -EINTR : 0;
    return -errno;
}

/* A pipe for splice(2), as large as allowed up to CHUNK.  Returns its size,
 * or -errno (the caller then copies through memory instead). */
static int open_pipe(int p[2], int64_t nbytes)
{
    int size;

    if (pipe2(p, O_CLOEXEC) < 0)
        return -errno;
    size = fcntl(p[0], F_GETPIPE_SZ);
    /* Bigger pipes mean fewer syscalls; failing to grow one (EPERM past
     * fs.pipe-user-pages-soft) only costs speed, so it is not an error. */
    if (size > 0 && size < CHUNK && nbytes > size) {
        int grown = fcntl(p[0], F_SETPIPE_SZ, CHUNK);
        if (grown > 0)
            size = grown;
    }
    if (size <= 0) {
        int err = size < 0 ? errno : EINVAL;
        close(p[0]);
        close(p[1]);
        return -err;
    }
    return size;
}

/* Move exactly len bytes that splice put into the pipe on to the file.  If
 * the file refuses splice (EINVAL: O_APPEND, or a file system without
 * splice_write) copy them through *buf instead and clear *use_splice so the
 * rest of the body goes through memory too. */
static int drain_pipe(int pipe_fd, int file_fd, size_t len, char **buf, int *use_splice)
{
    while (len > 0 && *use_splice) {
        ssize_t n = splice(pipe_fd, NULL, file_fd, NULL, len, SPLICE_F_MOVE);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EINVAL)
                return -errno;
            *use_splice = 0;
            break;
        }
        len -= (size_t)n;
    }
    if (len > 0 && *buf == NULL && (*buf = malloc(CHUNK)) == NULL)
        return -ENOMEM;
    while (len > 0) {
        /* the pipe holds these len bytes already: read() cannot block */
        ssize_t n = read(pipe_fd, *buf, min_size((int64_t)len, CHUNK));
        int rc;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            return -EIO; /* cannot happen: we hold the write end */
        rc = pyai_write_all(file_fd, *buf, (size_t)n);
        if (rc < 0)
            return rc;
        len -= (size_t)n;
    }
    return 0;
}

/* Move the len bytes splice put into pipe_fd on to the file, first
 * duplicating them into tee_fd with tee(2) (the pipes share the pages; the
 * reader of tee_fd sees every byte the file gets).  tee copies from the
 * front of the pipe without consuming it, so each part teed is drained to
 * the file before the next is teed.  A full tee_fd is waited for (at most
 * timeout_ms); a tee_fd whose reader has gone fails with -EPIPE. */
static int tee_then_drain(int pipe_fd, int tee_fd, int file_fd, size_t len, int timeout_ms,
                          pyai_interrupt_fn interrupted, void *ctx, char **buf, int *use_splice)
{
    while (len > 0) {
        ssize_t n = tee(pipe_fd, tee_fd, len, SPLICE_F_NONBLOCK);
        int rc;
        if (n < 0) {
            rc = after_failed_call(tee_fd, POLLOUT, timeout_ms, interrupted, ctx);
            if (rc < 0)
                return rc;
            continue;
        }
        rc = drain_pipe(pipe_fd, file_fd, (size_t)n, buf, use_splice);
        if (rc < 0)
            return rc;
        len -= (size_t)n;
    }
    return 0;
}

/* Keep space reserved ahead of the write position: once the bytes written
 * reach *reserved_to, reserve the next lim->reserve_step (within the body). */
static int reserve_ahead(int file_fd, const pyai_recv_limits *lim, int64_t pos, int64_t end, int64_t *reserved_to)
{
    int64_t len = end - pos < lim->reserve_step ? end - pos : lim->reserve_step;
    int rc;

    if (lim->reserve_step <= 0 || pos < *reserved_to || len <= 0)
        return 0;
    rc = pyai_preallocate(file_fd, pos, len);
    if (rc < 0)
        return rc;
    /* a file system that cannot reserve is not asked again in this call */
    *reserved_to = rc == 0 ? INT64_MAX : pos + len;
    return 0;
}

/* socket -> pipe -> file with splice(2) saves the copy into user space
 * (measured 15-35% faster than recv+write on loopback); recv+write through a
 * 1 MiB buffer is the fallback when splice is not possible.  Reads never
 * block and poll() does the waiting, so the limits hold.  splice has no
 * per-call "don't wait" for TCP (SPLICE_F_NONBLOCK only concerns the pipe),
 * and on a blocking socket it was seen to sleep in sk_wait_data although
 * poll() had reported data: so a blocking socket is switched to O_NONBLOCK
 * for the duration of the call (we are its only user meanwhile) and
 * switched back before returning.
 *
 * TCP urgent data: splice (tcp_read_sock) stops in front of the urgent mark
 * and returns EAGAIN while poll() reports the bytes after it as readable.
 * So an EAGAIN right after a readable poll sends the next piece through
 * recv(), which steps over the mark (dropping the urgent byte, which with
 * SO_OOBINLINE off is not part of the stream) and clears it; then splice
 * goes on.  Should recv() yield nothing either, the receive naps (PYAI_NAP_MS)
 * before trying again: it never spins, and its deadlines end it. */
static int64_t receive(int sock_fd, int file_fd, int64_t nbytes, pyai_recv_limits *lim, pyai_interrupt_fn interrupted,
                       void *ctx, pyai_data_fn on_data, void *data_ctx, int tee_fd)
{
    int p[2] = {-1, -1};
    char *buf = NULL;
    int use_splice;
    int via_recv = 0; /* splice is stuck (urgent mark): the next piece goes through recv */
    size_t chunk;
    int64_t done = 0, start_pos = -1, reserved_to = INT64_MAX;
    int64_t writeback_step = lim->writeback_step; /* 0 once the file turns out not to support it */
    int64_t rc;
    struct pyai_rx rx;

    pyai_rx_begin(&rx, sock_fd, lim, interrupted, ctx);
    if (nbytes < 0)
        return -EINVAL;
    if (nbytes == 0)
        return 0;
    if (lim->reserve_step > 0 || writeback_step > 0) {
        start_pos = lseek(file_fd, 0, SEEK_CUR); /* -1 for a pipe or socket: nothing to reserve or write back */
        if (lim->reserve_step > 0)
            reserved_to = start_pos < 0 ? INT64_MAX : start_pos;
    }
    if ((rc = pyai_rx_nonblocking(&rx)) < 0)
        return rc;
    /* Bytes that must be seen (hashed) go through memory anyway: no pipe. */
    rc = on_data ? -EINVAL : open_pipe(p, nbytes);
    use_splice = rc > 0;
    chunk = use_splice ? (size_t)rc : (on_data ? SEEN_CHUNK : CHUNK);

    while (done < nbytes) {
        int spliced = use_splice && !via_recv;
        ssize_t got;

        if (spliced) {
            got = splice(sock_fd, NULL, p[1], NULL, min_size(nbytes - done, chunk), SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
            if (got < 0) {
                if (errno == EINVAL) {
                    use_splice = 0; /* a socket without splice_read: nothing was consumed */
                    continue;
                }
                if ((errno == EAGAIN || errno == EWOULDBLOCK) && rx.readable) {
                    via_recv = 1;
                    continue;
                }
                if ((rc = pyai_rx_retry(&rx, errno)) < 0)
                    goto out;
                continue;
            }
        } else {
            if (buf == NULL && (buf = malloc(min_size(nbytes, CHUNK))) == NULL) {
                rc = -ENOMEM;
                goto out;
            }
            got = pyai_rx_recv(&rx, buf, min_size(nbytes - done, chunk < CHUNK ? chunk : CHUNK));
            if (got < 0) {
                rc = got;
                goto out;
            }
        }
        if (got == 0)
            break; /* the peer closed: the body is short */
        if (spliced && tee_fd >= 0) {
            rc = tee_then_drain(p[0], tee_fd, file_fd, (size_t)got, lim->timeout_ms, interrupted, ctx, &buf,
                                &use_splice);
        } else if (spliced) {
            rc = drain_pipe(p[0], file_fd, (size_t)got, &buf, &use_splice);
        } else {
            rc = on_data ? on_data(data_ctx, buf, (size_t)got) : 0;
            if (rc == 0 && tee_fd >= 0)
                rc = pyai_write_all(tee_fd, buf, (size_t)got); /* no splice: the reader gets a copy */
            if (rc == 0)
                rc = pyai_write_all(file_fd, buf, (size_t)got);
        }
        if (rc < 0)
            goto out;
        done += got;
        lim->moved = done;
        via_recv = 0;
        pyai_rx_moved(&rx);
        if (start_pos >= 0 &&
            (rc = reserve_ahead(file_fd, lim, start_pos + done, start_pos + nbytes, &reserved_to)) < 0)
            goto out;
        if (start_pos >= 0 && writeback_step > 0 &&
            (rc = pyai_write_behind(file_fd, start_pos + done - got, start_pos + done, writeback_step)) < 0) {
            if (!pyai_write_behind_unsupported((int)rc))
                goto out;
            writeback_step = 0;
        }
        if (done < nbytes && pyai_rx_over_budget(&rx)) {
            rc = -EAGAIN;
            goto out;
        }
    }
    rc = done;
out:
    if (p[0] >= 0) {
        close(p[0]);
        close(p[1]);
    }
    free(buf);
    return pyai_rx_end(&rx, done, rc);
}

int64_t pyai_recv_to_file(int sock_fd, int file_fd, int64_t nbytes, pyai_recv_limits *lim,
                          pyai_interrupt_fn interrupted, void *ctx)
{
    return receive(sock_fd, file_fd, nbytes, lim, interrupted, ctx, NULL, NULL, -1);
}

int64_t pyai_recv_to_file_tee(int sock_fd, int file_fd, int64_t nbytes, pyai_recv_limits *lim,
                              pyai_interrupt_fn interrupted, void *ctx, int tee_fd)
{
    lim->moved = 0;
    if (tee_fd < 0)
        return -EBADF;
    return receive(sock_fd, file_fd, nbytes, lim, interrupted, ctx, NULL, NULL, tee_fd);
}

int64_t pyai_recv_to_file_seen(int sock_fd, int file_fd, int64_t nbytes, pyai_recv_limits *lim,
                               pyai_interrupt_fn interrupted, void *ctx, pyai_data_fn on_data, void *data_ctx)
{
    lim->moved = 0;
    if (on_data == NULL)
        return -EINVAL;
    return receive(sock_fd, file_fd, nbytes, lim, interrupted, ctx, on_data, data_ctx, -1);
}

/* ---- copy_fd ----------------------------------------------------------- */

/* errno values that mean "this method does not work for these files". */
static int unsupported(int err)
{
    return err == EXDEV || err == EINVAL || err == ENOSYS || err == EOPNOTSUPP;
}

int64_t pyai_copy_fd(int src_fd, int dst_fd, int64_t nbytes)
{
    enum { COPY_FILE_RANGE, SENDFILE, READ_WRITE } how = COPY_FILE_RANGE;
    char *buf = NULL;
    int64_t done = 0;
    int64_t rc;

    if (nbytes < 0)
        return -EINVAL;
    while (done < nbytes) {
        size_t want = min_size(nbytes - done, MAX_IO);
        ssize_t n;

        if (how == COPY_FILE_RANGE) {
            n = sys_copy_file_range(src_fd, dst_fd, want);
        } else if (how == SENDFILE) {
            n = sendfile(dst_fd, src_fd, NULL, want);
        } else {
            if (buf == NULL && (buf = malloc(min_size(nbytes, CHUNK))) == NULL) {
                rc = -ENOMEM;
                goto out;
            }
            n = read(src_fd, buf, min_size(nbytes - done, CHUNK));
            if (n > 0 && (rc = pyai_write_all(dst_fd, buf, (size_t)n)) < 0)
                goto out;
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (how != READ_WRITE && unsupported(errno)) {
                how++; /* offsets are unchanged by a failed call: just go on */
                continue;
            }
            rc = -errno;
            goto out;
        }
        if (n == 0) {
            /* Pseudo files (/proc, some FUSE) report size 0 to the in-kernel
             * copies; a first 0 is confirmed by the next method. */
            if (how != READ_WRITE && done == 0) {
                how++;
                continue;
            }
            break;
        }
        done += n;
    }
    rc = done;
out:
    free(buf);
    return rc;
}

/* ---- the rest ---------------------------------------------------------- */

int pyai_rename_noreplace(int src_dir_fd, const char *src, int dst_dir_fd, const char *dst)
{
    int err;

    if (sys_renameat2(src_dir_fd, src, dst_dir_fd, dst, RENAME_NOREPLACE) == 0)
        return 0;
    if (errno != ENOSYS && errno != EINVAL)
        return -errno;
    /* No RENAME_NOREPLACE here (old kernel, or e.g. NFS): link() also refuses
     * an existing dst, atomically (and follows no symlink); then drop the old
     * name. */
    if (linkat(src_dir_fd, src, dst_dir_fd, dst, 0) < 0)
        return -errno;
    if (unlinkat(src_dir_fd, src, 0) == 0)
        return 0;
    /* Undo, so a failure leaves things as they were (dst is the link we made). */
    err = errno;
    unlinkat(dst_dir_fd, dst, 0);
    return -err;
}

int pyai_openat2(int dir_fd, const char *path, int flags, uint64_t resolve)
{
#ifdef SYS_openat2
    /* struct open_how of linux/openat2.h, which old headers lack */
    struct {
        uint64_t flags, mode, resolve;
    } how = {.flags = (uint64_t)(unsigned int)flags, .mode = 0, .resolve = resolve};
    long fd;

    while ((fd = syscall(SYS_openat2, dir_fd, path, &how, sizeof(how))) < 0) {
        if (errno != EINTR)
            return -errno;
    }
    return (int)fd;
#else
    (void)dir_fd, (void)path, (void)flags, (void)resolve;
    return -ENOSYS;
#endif
}

int pyai_fsync(int fd)
{
    while (fsync(fd) < 0) {
        if (errno != EINTR)
            return -errno;
    }
    return 0;
}

static int sync_range(int fd, int64_t offset, int64_t nbytes, unsigned int flags)
{
#ifdef SYNC_FILE_RANGE_WRITE
    while (sync_file_range(fd, (off_t)offset, (off_t)nbytes, flags) < 0) {
        if (errno != EINTR)
            return -errno;
    }
    return 0;
#else
    (void)fd, (void)offset, (void)nbytes, (void)flags;
    return -ENOSYS;
#endif
}

int pyai_write_behind(int fd, int64_t from, int64_t to, int64_t step)
{
    int64_t first, last; /* the steps [first, last) are complete since this write */
    int rc;

    if (step <= 0 || from < 0 || to < from)
        return -EINVAL;
    first = from / step;
    last = to / step;
    if (last <= first)
        return 0;
    rc = sync_range(fd, first * step, (last - first) * step, SYNC_FILE_RANGE_WRITE);
    if (rc < 0)
        return rc;
    /* Wait for the steps before those: their writeback was started by an
     * earlier call (or just now, for the first of them). */
    if (last >= 2) {
        int64_t wait_from = (first > 0 ? first - 1 : 0) * step;
        rc = sync_range(fd, wait_from, (last - 1) * step - wait_from,
                        SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER);
        if (rc < 0)
            return rc;
    }
    return 1;
}

int pyai_write_behind_unsupported(int err)
{
    return err == -ESPIPE || err == -EINVAL || err == -ENOSYS || err == -EOPNOTSUPP;
}

int pyai_fsync_dir(const char *path)
{
    int fd, rc;

    do {
        fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0)
        return -errno;
    rc = pyai_fsync(fd);
    /* Never retry close(): Linux frees the descriptor even when it reports
     * EINTR, and a retry could close one another thread just opened. */
    if (close(fd) < 0 && rc == 0 && errno != EINTR)
        rc = -errno;
    return rc;
}

int pyai_fadvise(int fd, int64_t offset, int64_t length, int advice)
{
    /* posix_fadvise returns the error number; it does not set errno. */
    return -posix_fadvise(fd, (off_t)offset, (off_t)length, advice);
}

int pyai_preallocate(int fd, int64_t offset, int64_t nbytes)
{
    if (nbytes < 0 || offset < 0)
        return -EINVAL;
    if (nbytes == 0)
        return 0; /* nothing to reserve (and fallocate rejects a 0 length) */
    while (fallocate(fd, FALLOC_FL_KEEP_SIZE, (off_t)offset, (off_t)nbytes) < 0) {
        if (errno == EINTR)
            continue;
        if (errno == EOPNOTSUPP || errno == ENOSYS)
            return 0;
        return -errno;
    }
    return 1;
}

int pyai_write_back(int fd)
{
    return sync_range(fd, 0, 0, SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER);
}

int pyai_syncfs(int fd)
{
    while (syncfs(fd) < 0) {
        if (errno != EINTR)
            return -errno;
    }
    return 0;
}
