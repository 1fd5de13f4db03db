"""Whether the server may read a file: the permission check that the repository helpers, the runtimes and
the lab checks share. It sits below them all (it imports nothing of the course), so that none of them
imports another only for it."""

from __future__ import annotations

import os
import stat
from pathlib import Path


def readable_by_server(path: Path) -> bool:
    """Whether a Triton process of our user can read `path` (a folder: list and enter it), as it
    would without root's override.

    The course starts Triton without the capability that lets root read any file, so a chmod
    means the same for root as for anyone (as in a container run with --user).
    """
    path = Path(path)
    is_dir = path.is_dir()
    if os.geteuid() != 0:
        return os.access(path, os.R_OK | (os.X_OK if is_dir else 0))
    try:
        st = path.stat()
    except OSError:
        return False
    if st.st_uid == 0:
        read, enter = stat.S_IRUSR, stat.S_IXUSR
    elif st.st_gid == 0:
        read, enter = stat.S_IRGRP, stat.S_IXGRP
    else:
        read, enter = stat.S_IROTH, stat.S_IXOTH
    need = read | (enter if is_dir else 0)
    return st.st_mode & need == need
