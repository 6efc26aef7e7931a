"""Suite-wide settings."""

from __future__ import annotations

import os
import tempfile

# the parsed-index cache (detector/data/index_cache.py) of the suite's many throwaway data sets goes
# to a folder of the run's own, not the user's ~/.cache; tools run as subprocesses inherit it
os.environ.setdefault("GOOGLENET_DET_CACHE", tempfile.mkdtemp(prefix="googlenet-det-index-"))
