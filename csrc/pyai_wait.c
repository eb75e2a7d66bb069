/* pyai_wait.c - see pyai_wait.h. */
#include "pyai_wait.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <time.h>

int64_t pyai_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait until fd is ready for events (or has an error/EOF to report).
 * timeout_ms bounds the whole wait, signals included: poll() is restarted
 * with what is left after each EINTR. */
int pyai_wait_for(int fd, short events, int timeout_ms, pyai_interrupt_fn interrupted, void *ctx)
{
    struct pollfd pfd = {.fd = fd, .events = events};
    int64_t deadline = timeout_ms < 0 ? 0 : pyai_now_ms() + timeout_ms;
    int wait = timeout_ms;

    for (;;) {
        int n = poll(&pfd, 1, wait);
        if (n > 0)
            return (pfd.revents & POLLNVAL) ? -EBADF : 0;
        if (n == 0)
            return -ETIMEDOUT;
        if (errno != EINTR)
            return -errno;
        if (interrupted && interrupted(ctx))
            return -EINTR;
        if (timeout_ms >= 0) {
            int64_t left = deadline - pyai_now_ms();
            wait = left > 0 ? (int)left : 0;
        }
    }
}

/* Wait for the socket to be readable (nap: just sleep up to PYAI_NAP_MS, waking
 * early only for an error or hang-up) within the limits of the receive.
 * 0 to try reading again, -ETIMEDOUT or -EAGAIN when a limit is reached
 * (the progress deadline wins a tie), or the error. */
int pyai_wait_for_bytes(int sock_fd, const struct pyai_rx_clock *ck, int nap, pyai_interrupt_fn interrupted, void *ctx)
{
    const pyai_recv_limits *lim = ck->lim;
    int64_t now = pyai_now_ms(), until = INT64_MAX;
    int why = 0, wait, rc;

    if (lim->timeout_ms >= 0) {
        until = ck->last + lim->timeout_ms;
        why = -ETIMEDOUT;
    }
    if (lim->patience_ms >= 0 && (ck->last > ck->start ? ck->last : ck->start) + lim->patience_ms < until) {
        until = (ck->last > ck->start ? ck->last : ck->start) + lim->patience_ms;
        why = -EAGAIN;
    }
    if (lim->budget_ms >= 0 && ck->start + lim->budget_ms < until) {
        until = ck->start + lim->budget_ms;
        why = -EAGAIN;
    }
    if (nap && now + PYAI_NAP_MS < until) {
        until = now + PYAI_NAP_MS;
        why = 0;
    }
    if (until == INT64_MAX)
        wait = -1;
    else
        wait = until <= now ? 0 : (until - now > INT_MAX ? INT_MAX : (int)(until - now));
    rc = pyai_wait_for(sock_fd, nap ? 0 : POLLIN, wait, interrupted, ctx);
    return rc == -ETIMEDOUT ? why : rc;
}
