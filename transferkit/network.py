"""Fail fast offline: one quick reachability probe instead of minutes of download retries."""
import os
import socket
import threading


def reachable(host, port=443, timeout=3.0):
    """True if a TCP connection to ``host:port`` opens within ``timeout`` seconds (DNS included).

    Setting ``TRANSFERKIT_OFFLINE=1`` makes every host unreachable.

    Example:
        >>> reachable("storage.googleapis.com")   # False on an offline machine, within 3 seconds
    """
    if os.environ.get("TRANSFERKIT_OFFLINE", "") not in ("", "0"):
        return False
    result = []

    def probe():
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result)
