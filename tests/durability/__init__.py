"""End-to-end proof of the durability order of uploads, read from strace (see test_order.py)."""
