"""TCP settings for the remote link: a lost packet costs one short retransmission, not a 200+ ms stall.

The link carries one small message each way per frame (a crop, an animated crop: a few packets), so a lost
packet is rarely followed by others that would trigger fast retransmit: it waits for a timer. Linux's minimum
retransmission timeout is 200 ms, and its tail-loss probe with one packet in flight waits 2 RTT + that minimum,
so one lost packet froze the output for ~400 ms at 40 ms RTT (measured with the user-space netem,
tests/test_remote_netem.py). Both ends therefore set, per socket and where the kernel has them:

- ``TCP_NODELAY`` (websockets and asyncio set it too): no Nagle wait behind an unacknowledged segment;
- ``TCP_RTO_MIN_US`` (Linux >= 6.15): the timeout floor down to :data:`RTO_MIN_US`, so a loss is repaired after
  about RTT + max(4 × RTT variation, 20 ms) instead of 200 ms + 2 RTT;
- ``TCP_THIN_LINEAR_TIMEOUTS``: a thin stream's repeated timeouts do not back off exponentially.

Older kernels and other systems keep their defaults (the options are skipped silently): the link still works,
a loss just stalls longer there.
"""

from __future__ import annotations

import socket

TCP_RTO_MIN_US = 45  # linux/tcp.h (6.15+)
TCP_THIN_LINEAR_TIMEOUTS = 16  # linux/tcp.h
TCP_DELACK_MAX_US = 46  # linux/tcp.h (6.16+)
RTO_MIN_US = 20_000
DELACK_MAX_US = 5_000


def tune_socket(sock) -> list[str]:
    """Set the low-latency options on a connected TCP socket; the names of those that took."""
    done = []
    for name, level, opt, value in (("nodelay", socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),
                                     ("rto_min", socket.IPPROTO_TCP, TCP_RTO_MIN_US, RTO_MIN_US),
                                     ("delack_max", socket.IPPROTO_TCP, TCP_DELACK_MAX_US, DELACK_MAX_US),
                                     ("thin_linear_timeouts", socket.IPPROTO_TCP, TCP_THIN_LINEAR_TIMEOUTS, 1)):
        try:
            sock.setsockopt(level, opt, value)
        except (OSError, AttributeError):
            continue
        done.append(name)
    return done
