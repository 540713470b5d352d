"""Cache folders and the offline check that runs before any download.

Both Allen caches are folders described by a manifest JSON file that
``allensdk`` writes on first use. :func:`require_files` runs before any
``allensdk`` call that could download: with every needed file present nothing
touches the network; with files missing it probes the Allen API host for at
most :data:`PROBE_TIMEOUT_S` seconds and, offline, raises a
:class:`~neurozoo.errors.NeurozooError` that names the missing files and says
how to get them.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from pathlib import Path

from neurozoo.errors import NeurozooError

__all__ = [
    "ALLEN_HOST",
    "PROBE_TIMEOUT_S",
    "DOWNLOAD_SOCKET_TIMEOUT_S",
    "network_available",
    "require_files",
    "manifest_path",
]

log = logging.getLogger(__name__)

ALLEN_HOST = "api.brain-map.org"
PROBE_TIMEOUT_S = 3.0
#: Socket timeout set for downloads, so that a dead connection fails, not hangs.
DOWNLOAD_SOCKET_TIMEOUT_S = 60.0


def network_available(host: str = ALLEN_HOST, port: int = 80,
                      timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Whether a TCP connection to ``host`` opens within ``timeout`` seconds.

    Name resolution ignores socket timeouts, so the probe runs in a daemon
    thread that is abandoned after ``timeout``. ``NEUROZOO_OFFLINE=1`` answers
    False without probing.
    """
    if os.environ.get("NEUROZOO_OFFLINE", "") not in ("", "0"):
        return False
    result = {"ok": False}

    def probe():
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result["ok"] = True
        except OSError:
            pass

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout)
    return result["ok"]


def manifest_path(cache_dir, name: str) -> Path:
    """The manifest file of a cache: ``cache_dir`` itself if it is a ``.json``
    file (an existing Allen manifest), else ``cache_dir/name``."""
    p = Path(cache_dir)
    if p.suffix == ".json":
        return p
    return p / name


def require_files(paths, what: str, how: str, offline: bool = False) -> None:
    """Make sure files are present, or that downloading them is possible.

    Parameters
    ----------
    paths : list of path
        Files the next step reads.
    what : str
        What they are, for the message (e.g. ``"2-photon session NWB files"``).
    how : str
        How to get them, for the message.
    offline : bool
        Never probe the network: missing files are an error at once.

    Raises
    ------
    NeurozooError
        Files are missing and the Allen servers cannot be reached (or
        ``offline``). The message lists up to five missing paths and the count.
    """
    missing = [Path(p) for p in paths if not Path(p).is_file()]
    if not missing:
        return
    if not offline and network_available():
        log.info("%d %s missing: downloading from %s", len(missing), what,
                 ALLEN_HOST)
        socket.setdefaulttimeout(DOWNLOAD_SOCKET_TIMEOUT_S)
        return
    shown = ", ".join(str(p) for p in missing[:5])
    more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
    reason = "offline mode" if offline else f"{ALLEN_HOST} is unreachable"
    raise NeurozooError(
        f"{len(missing)} {what} missing ({reason}): {shown}{more}. {how}"
    )
