"""TCP settings for the remote link: a lost repair costs a short timeout, not a 200+ ms one.

The link carries one small message each way per frame (a crop, an animated crop: a few packets), so a lost
packet is rarely followed by enough others to trigger a fast retransmit: a lost tail waits for a timer. Linux's
tail-loss probe (2 RTT; 2 RTT + 200 ms with one packet in flight) repairs a single lost tail by itself: at
40 ms RTT, 15 fps and one frame in flight that costs a 165-185 ms gap with or without these settings
(user-space netem, every 6th reply's tail dropped). When the repair is lost too, the stock 200 ms minimum
retransmission timeout and its exponential back-off froze the output for 395-486 ms; with these settings,
234-254 ms. Both ends therefore set, per socket and where the kernel has them:

- ``TCP_NODELAY`` (websockets and asyncio set it too): no Nagle wait behind an unacknowledged segment;
- ``TCP_RTO_MIN_US`` (Linux >= 6.15): the timeout floor down to :data:`RTO_MIN_US` (the RTO becomes about
  RTT + max(4 × RTT variation, 20 ms): 64 ms at 40 ms RTT, read with ``ss -ti``), also shortening the
  one-packet tail-loss probe;
- ``TCP_DELACK_MAX_US`` (recent Linux; this 6.18 kernel has it): delayed ACKs at most :data:`DELACK_MAX_US`,
  so the sender's RTT estimate (and with it the timeout) stays the network's;
- ``TCP_THIN_LINEAR_TIMEOUTS``: a thin stream's repeated timeouts do not back off exponentially.

Older kernels and other systems keep their defaults (the options are skipped silently): the link still works,
a lost repair just stalls longer there.
"""

from __future__ import annotations

import socket

TCP_RTO_MIN_US = 45  # linux/tcp.h (6.15+)
TCP_THIN_LINEAR_TIMEOUTS = 16  # linux/tcp.h
TCP_DELACK_MAX_US = 46  # linux/tcp.h (recent kernels)
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
