"""Tests of the Allen loaders against the real allensdk reading code.

They run in the ``.venv-allen`` environment (``make test-allen``). In the core
environment, where allensdk is deliberately absent, this folder is not collected.
"""

import importlib.util

if importlib.util.find_spec("allensdk") is None:
    collect_ignore_glob = ["test_*.py"]
