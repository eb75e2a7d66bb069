/* pyai_wait.h - the clock and the waits of the receives (pyai_io.c, pyai_chunked.c).
 *
 * Internal to the extension: not part of pyai_io.h's contract.  Every wait is
 * bounded by the receive's limits and runs the interrupt callback on EINTR.
 */
#ifndef PYAI_WAIT_H
#define PYAI_WAIT_H

#include <stdint.h>

#include "pyai_io.h"

/* How long a receive sleeps when the socket is called readable but yields no
 * byte to splice nor recv: long enough to cost nothing (100 wake-ups a second
 * at most), short enough not to delay a byte that comes. */
#define PYAI_NAP_MS 10

/* The clock of one receive: when it began and when its last byte came. */
struct pyai_rx_clock {
    const pyai_recv_limits *lim;
    int64_t start, last;
};

/* Monotonic milliseconds. */
int64_t pyai_now_ms(void);

/* Wait until fd is ready for events (or has an error/EOF to report), at most
 * timeout_ms in all (< 0: forever), signals included: 0, -ETIMEDOUT, -EINTR
 * when interrupted() asked to stop, or -errno. */
int pyai_wait_for(int fd, short events, int timeout_ms, pyai_interrupt_fn interrupted, void *ctx);

/* Wait for the socket to be readable (nap: just sleep up to PYAI_NAP_MS,
 * waking early only for an error or hang-up) within the limits of the
 * receive: 0 to read again, -ETIMEDOUT or -EAGAIN when a limit is reached
 * (the progress deadline wins a tie), or the error. */
int pyai_wait_for_bytes(int sock_fd, const struct pyai_rx_clock *ck, int nap, pyai_interrupt_fn interrupted, void *ctx);

#endif /* PYAI_WAIT_H */
