/* pyai_wait.h - the receive step shared by pyai_io.c and pyai_chunked.c: one
 * receive's clock and limits, the socket's mode for the call, and the wait.
 *
 * Internal to the extension: not part of pyai_io.h's contract.  Every wait is
 * bounded by the receive's limits and runs the interrupt callback on EINTR;
 * every failure is a -errno for the caller to return.
 */
#ifndef PYAI_WAIT_H
#define PYAI_WAIT_H

#include <stdint.h>
#include <sys/types.h>

#include "pyai_io.h"

/* How long a receive sleeps when the socket is called readable but yields no
 * byte to splice nor recv: long enough to cost nothing (100 wake-ups a second
 * at most), short enough not to delay a byte that comes. */
#define PYAI_NAP_MS 10

/* One receive from a stream socket (set up by pyai_rx_begin). */
struct pyai_rx {
    pyai_recv_limits *lim;
    int sock_fd;
    pyai_interrupt_fn interrupted;
    void *ctx;
    int sock_flags;      /* the socket's flags before pyai_rx_nonblocking; -1: not switched yet */
    int readable;        /* poll() said readable and no byte has come since */
    int64_t start, last; /* when the call began, and when its last byte came */
};

/* Monotonic milliseconds. */
int64_t pyai_now_ms(void);

/* Wait until fd is ready for events (or has an error/EOF to report), at most
 * timeout_ms in all (< 0: forever), signals included: 0, -ETIMEDOUT, -EINTR
 * when interrupted() asked to stop, or -errno. */
int pyai_wait_for(int fd, short events, int timeout_ms, pyai_interrupt_fn interrupted, void *ctx);

/* Start a receive: lim->moved and lim->idle_ms are 0, the clock starts now
 * with the last byte lim->waited_ms ago.  The socket is left as it is. */
void pyai_rx_begin(struct pyai_rx *rx, int sock_fd, pyai_recv_limits *lim, pyai_interrupt_fn interrupted, void *ctx);

/* Make the socket non-blocking for the rest of the receive (once; pyai_rx_end
 * restores it), so that poll() does every wait and the limits hold.  0 or
 * -errno (nothing then left to restore). */
int pyai_rx_nonblocking(struct pyai_rx *rx);

/* After a read of the socket (recv, splice) failed with errno err: 0 to read
 * again, once ready (EAGAIN: wait within the limits; readable yet empty
 * twice in a row: nap PYAI_NAP_MS instead of spinning) or after a signal
 * interrupted() let pass (EINTR); else the -errno to stop with: -ETIMEDOUT or
 * -EAGAIN when a limit is reached (the progress deadline wins a tie), -EINTR,
 * or -err. */
int pyai_rx_retry(struct pyai_rx *rx, int err);

/* recv() up to len bytes into buf, retrying as pyai_rx_retry says: the bytes
 * received (0: the peer closed) or -errno.  Does not count them as progress:
 * the caller calls pyai_rx_moved once they are taken care of. */
ssize_t pyai_rx_recv(struct pyai_rx *rx, void *buf, size_t len);

/* Bytes came (and are written): progress, for the deadlines. */
void pyai_rx_moved(struct pyai_rx *rx);

/* 1 once the call has run its budget (as of its last byte). */
int pyai_rx_over_budget(const struct pyai_rx *rx);

/* End the receive: lim->moved = moved, lim->idle_ms, the socket's mode
 * restored.  Returns rc. */
int64_t pyai_rx_end(struct pyai_rx *rx, int64_t moved, int64_t rc);

#endif /* PYAI_WAIT_H */
