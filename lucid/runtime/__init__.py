"""Runtime: build generated C into loadable modules (build.py) and cache them on disk (cache.py)."""
