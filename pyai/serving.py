"""What pyai's app and server agree on: how the app waits for a slow client without holding a thread.

The worker offers parking by setting ``environ[CAN_PARK]``.  An app whose
answer has to wait for the client (an upload whose bytes stopped arriving)
then returns an iterable that yields a ``Wait`` before the first byte of its
answer: the worker puts the connection back into its poller until the socket
is readable or the Wait's deadline passes, and then goes on iterating in a
pool thread.  Under any other server the key is absent and the app must block
instead of yielding a Wait.

``environ[SEND_CONTINUE]`` sends ``100 Continue`` to a client that asked for
it (``Expect: 100-continue``) and does nothing otherwise; the app calls it
once it has decided to read the body, so a request it refuses first (no
token, an id that holds a file) never invites the body.
"""

CAN_PARK = "pyai.can_park"
SEND_CONTINUE = "pyai.send_continue"
# How long a thread waits for a request body's next bytes before the request is parked
# in the worker's poller: longer than the gaps of a healthy stream, short enough that
# slow clients hand their thread back at once.
PATIENCE = 0.1


class Wait:
    """Yielded by a response iterable: resume me when ``fd`` is readable or at ``deadline`` (monotonic)."""

    __slots__ = ("fd", "deadline")

    def __init__(self, fd, deadline):
        self.fd = fd
        self.deadline = deadline


def send_continue(environ):
    """Invite the body now if the client waits for an invitation (see SEND_CONTINUE)."""
    send = environ.pop(SEND_CONTINUE, None)
    if send is not None:
        send()


def run_to_end(steps):
    """The return value of a generator of steps that must never wait (nothing could park it)."""
    try:
        next(steps)
    except StopIteration as done:
        return done.value
    steps.close()
    raise RuntimeError("a request waited for its client where it cannot be parked")
