"""Runtime: build generated C into loadable modules (build.py) and cache them on disk (cache.py);
`lucid.compile` (compiled.py) over pluggable backends (backends.py); thread count (threads.py);
`lucid.export` (aot.py) and `load` (loader.py) for exported libraries."""

from lucid.runtime.threads import get_num_threads, set_num_threads

__all__ = ["get_num_threads", "load", "set_num_threads"]


def __getattr__(name: str) -> object:
    """`load`, imported on first use: it needs cffi, which `import lucid.runtime` must not."""
    if name == "load":
        from lucid.runtime.loader import load

        return load
    raise AttributeError(f"module 'lucid.runtime' has no attribute {name!r}")
