"""Prometheus metrics (stub: filled in by the metrics work)."""


def start_worker(config):
    pass


def request_finished(record, status, sent):
    pass


def exposition(health):
    return "text/plain; version=0.0.4; charset=utf-8", b""


def count_swept(removed):
    pass
