"""Runtime: build generated C into loadable modules (build.py) and cache them on disk (cache.py);
`lucid.compile` (compiled.py) over pluggable backends (backends.py); thread count (threads.py)."""

from lucid.runtime.threads import get_num_threads, set_num_threads

__all__ = ["get_num_threads", "set_num_threads"]
