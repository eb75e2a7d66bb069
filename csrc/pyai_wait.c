/* pyai_wait.c - see pyai_wait.h. */
#include "pyai_wait.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sys/socket.h>
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

void pyai_rx_begin(struct pyai_rx *rx, int sock_fd, pyai_recv_limits *lim, pyai_interrupt_fn interrupted, void *ctx)
{
    lim->moved = 0;
    lim->idle_ms = 0;
    rx->lim = lim;
    rx->sock_fd = sock_fd;
    rx->interrupted = interrupted;
    rx->ctx = ctx;
    rx->sock_flags = -1;
    rx->readable = 0;
    rx->start = pyai_now_ms();
    rx->last = rx->start - (lim->waited_ms > 0 ? lim->waited_ms : 0);
}

int pyai_rx_nonblocking(struct pyai_rx *rx)
{
    int err;

    if (rx->sock_flags >= 0)
        return 0;
    if ((rx->sock_flags = fcntl(rx->sock_fd, F_GETFL)) < 0) {
        err = errno;
        rx->sock_flags = -1;
        return -err;
    }
    if (!(rx->sock_flags & O_NONBLOCK) && fcntl(rx->sock_fd, F_SETFL, rx->sock_flags | O_NONBLOCK) < 0) {
        err = errno;
        rx->sock_flags = O_NONBLOCK; /* nothing to restore */
        return -err;
    }
    return 0;
}

/* Wait for the socket to be readable (nap: just sleep up to PYAI_NAP_MS, waking
 * early only for an error or hang-up) within the limits of the receive.
 * 0 to try reading again, -ETIMEDOUT or -EAGAIN when a limit is reached
 * (the progress deadline wins a tie), or the error. */
static int wait_for_bytes(const struct pyai_rx *rx, int nap)
{
    const pyai_recv_limits *lim = rx->lim;
    int64_t now = pyai_now_ms(), until = INT64_MAX;
    int why = 0, wait, rc;

    if (lim->timeout_ms >= 0) {
        until = rx->last + lim->timeout_ms;
        why = -ETIMEDOUT;
    }
    if (lim->patience_ms >= 0 && (rx->last > rx->start ? rx->last : rx->start) + lim->patience_ms < until) {
        until = (rx->last > rx->start ? rx->last : rx->start) + lim->patience_ms;
        why = -EAGAIN;
    }
    if (lim->budget_ms >= 0 && rx->start + lim->budget_ms < until) {
        until = rx->start + lim->budget_ms;
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
    rc = pyai_wait_for(rx->sock_fd, nap ? 0 : POLLIN, wait, rx->interrupted, rx->ctx);
    return rc == -ETIMEDOUT ? why : rc;
}

int pyai_rx_retry(struct pyai_rx *rx, int err)
{
    int nap, rc;

    if (err == EINTR)
        return (rx->interrupted && rx->interrupted(rx->ctx)) ? -EINTR : 0;
    if (err != EAGAIN && err != EWOULDBLOCK)
        return -err;
    nap = rx->readable; /* readable, yet the read found nothing: do not spin */
    if ((rc = wait_for_bytes(rx, nap)) < 0)
        return rc;
    rx->readable = !nap;
    return 0;
}

ssize_t pyai_rx_recv(struct pyai_rx *rx, void *buf, size_t len)
{
    for (;;) {
        ssize_t got = recv(rx->sock_fd, buf, len, 0);
        int rc;
        if (got >= 0)
            return got;
        if ((rc = pyai_rx_retry(rx, errno)) < 0)
            return rc;
    }
}

void pyai_rx_moved(struct pyai_rx *rx)
{
    rx->readable = 0;
    rx->last = pyai_now_ms();
}

int pyai_rx_over_budget(const struct pyai_rx *rx)
{
    return rx->lim->budget_ms >= 0 && rx->last - rx->start >= rx->lim->budget_ms;
}

int64_t pyai_rx_end(struct pyai_rx *rx, int64_t moved, int64_t rc)
{
    int64_t idle = pyai_now_ms() - rx->last;

    rx->lim->moved = moved;
    rx->lim->idle_ms = idle > INT_MAX ? INT_MAX : (int)idle;
    if (rx->sock_flags >= 0 && !(rx->sock_flags & O_NONBLOCK))
        fcntl(rx->sock_fd, F_SETFL, rx->sock_flags);
    return rc;
}
