"""What lucid.compile specialises on: the validated `options=` and a call's signature.

Both are plain frozen data, below everything else of `lucid.compile` (compiled.py, _entry.py):
the pass pipeline is a function of the options alone (`CompileOptions.pipeline`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

from lucid.errors import LucidError
from lucid.ir.types import TensorType
from lucid.runtime.build import DEFAULT_FLAGS, BuildOptions

__all__ = ["CompileOptions", "Signature"]

_OPTION_KEYS = (
    "fusion",
    "passes",
    "isa",
    "cflags",
    "cc",
    "debug_dir",
    "autotune",
    "max_entries",
    "fullgraph",
    "sanitize",
    "background",
    "build_jobs",
    "profile",
)

# options["sanitize"] = "address": every build instrumented with AddressSanitizer and
# UndefinedBehaviorSanitizer (stopping at the first finding), debuggable (-O1 -g). The
# sanitizer runtimes must be in the process before Python (LD_PRELOAD), see sanitizer_preloaded.
SANITIZE_FLAGS: dict[str, tuple[str, ...]] = {
    "address": (
        "-O1",
        "-g",
        "-fno-omit-frame-pointer",
        "-fsanitize=address,undefined",
        "-fsanitize=float-cast-overflow",
        "-fno-sanitize-recover=all",
    ),
}


@dataclass(frozen=True)
class CompileOptions:
    """The `options=` of lucid.compile, validated: every field has a meaning, nothing else."""

    fusion: bool = True
    passes: tuple[str, ...] | None = None  # replaces the default pipeline when given
    isa: str = "auto"
    build: BuildOptions = field(default_factory=BuildOptions)
    debug_dir: Path | None = None
    autotune: bool = False  # time GEMM blockings on this machine (lucid.runtime.autotune)
    # compiled entries (signatures) per module before it runs new signatures eagerly, or, with
    # fullgraph, raises RecompileError instead
    max_entries: int = 8
    fullgraph: bool = False
    # what a model that cannot be traced does: "error" (a TraceError listing every problem) or
    # "eager" (run it eagerly, with one FallbackWarning); lucid.compile's `fallback=` sets it
    fallback: str = "error"
    # build new signatures on a thread while their calls run eagerly (no call waits for the C
    # compiler); the compiled program takes over once it is built
    background: bool = False
    # C compiler processes one build runs at once: the program's kernels are spread over this
    # many translation units (0: one per core this process may use, at most 4)
    build_jobs: int = 0
    # time every kernel call of the compiled programs (CompiledModule.profile reads the table)
    profile: bool = False

    @classmethod
    def from_dict(cls, options: Mapping[str, Any] | None) -> CompileOptions:
        """Validate the user's dict; unknown keys are an error listing the valid ones."""
        options = dict(options or {})
        unknown = sorted(set(options) - set(_OPTION_KEYS))
        if unknown:
            raise ValueError(
                f"lucid.compile: unknown option(s) {', '.join(map(repr, unknown))}; "
                f"valid options: {', '.join(_OPTION_KEYS)}"
            )
        passes = options.get("passes")
        if passes is not None:
            if isinstance(passes, str) or not all(isinstance(p, str) for p in passes):
                raise TypeError(
                    f"lucid.compile: 'passes' must be a list of pass names, not {passes!r}"
                )
            passes = tuple(passes)
        cflags = options.get("cflags", DEFAULT_FLAGS)
        if isinstance(cflags, str):
            raise TypeError(f"lucid.compile: 'cflags' must be a list of flags, not {cflags!r}")
        sanitize = options.get("sanitize")
        if sanitize is not None:
            if sanitize not in SANITIZE_FLAGS:
                raise ValueError(
                    f"lucid.compile: 'sanitize' must be None or one of "
                    f"{', '.join(map(repr, SANITIZE_FLAGS))}, not {sanitize!r} (ThreadSanitizer "
                    "does not run inside CPython: use an exported library from C for it)"
                )
            check_sanitizer_preloaded()
            cflags = [f for f in cflags if not f.startswith("-O")] + list(SANITIZE_FLAGS[sanitize])
        debug_dir = options.get("debug_dir")
        autotune, fullgraph, background, profile = (
            _flag(options, name) for name in ("autotune", "fullgraph", "background", "profile")
        )
        max_entries = options.get("max_entries", 8)
        if isinstance(max_entries, bool) or not isinstance(max_entries, int) or max_entries < 1:
            raise ValueError(
                f"lucid.compile: 'max_entries' must be a whole number >= 1, not {max_entries!r}"
            )
        if background and fullgraph:
            raise ValueError(
                "lucid.compile: options 'background' (eager calls while the C builds) and "
                "'fullgraph' (no call may run eagerly) contradict each other"
            )
        build_jobs = options.get("build_jobs", 0)
        if isinstance(build_jobs, bool) or not isinstance(build_jobs, int) or build_jobs < 0:
            raise ValueError(
                "lucid.compile: 'build_jobs' must be a whole number >= 1 (or 0: one per core), "
                f"not {build_jobs!r}"
            )
        return cls(
            fusion=bool(options.get("fusion", True)),
            passes=passes,
            isa=str(options.get("isa", "auto")),
            build=BuildOptions(cc=options.get("cc"), flags=tuple(cflags)),
            debug_dir=Path(debug_dir) if debug_dir is not None else None,
            autotune=autotune,
            max_entries=max_entries,
            fullgraph=fullgraph,
            background=background,
            build_jobs=build_jobs,
            profile=profile,
        )

    def with_fallback(self, fallback: str) -> CompileOptions:
        """These options with `fallback` checked and set (see the field)."""
        if fallback not in ("error", "eager"):
            raise ValueError(
                f"lucid.compile: fallback must be 'error' or 'eager', not {fallback!r}"
            )
        if fallback == "eager" and self.fullgraph:
            raise ValueError(
                "lucid.compile: fallback='eager' contradicts options['fullgraph']=True, which "
                "forbids running any call eagerly"
            )
        return replace(self, fallback=fallback)

    def pipeline(self) -> list[str]:
        """Pass names to run: the explicit list, else the default pipeline."""
        from lucid.ir.pipeline import default_pipeline  # names only: no pass is imported

        return (
            list(self.passes) if self.passes is not None else default_pipeline(fusion=self.fusion)
        )


def _flag(options: Mapping[str, Any], name: str) -> bool:
    """options[name] (default False), which must be a bool."""
    value = options.get(name, False)
    if not isinstance(value, bool):
        raise TypeError(f"lucid.compile: {name!r} must be True or False, not {value!r}")
    return value


def check_sanitizer_preloaded() -> None:
    """Raise unless AddressSanitizer's runtime is loaded in this process: an instrumented
    library loaded into a Python started without it aborts the process."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            if "libasan" in maps.read():
                return
    except OSError:
        pass
    raise LucidError(
        "lucid.compile(options={'sanitize': 'address'}) needs the sanitizer runtimes loaded "
        "before Python: run it as\n"
        '  ASAN_OPTIONS=detect_leaks=0 LD_PRELOAD="$(gcc -print-file-name=libasan.so) '
        '$(gcc -print-file-name=libubsan.so)" python ...'
    )


class Signature(NamedTuple):
    """What a compiled graph was specialised for: input types (`N` = batch), train/eval, and
    grad mode: None for forward only, else which inputs get gradients (params always do)."""

    inputs: tuple[TensorType, ...]
    training: bool
    grad: tuple[bool, ...] | None = None

    def __str__(self) -> str:
        mode = "train" if self.training else "eval"
        if self.grad is not None:
            wrt = ", ".join(f"input {i}" for i, w in enumerate(self.grad) if w)
            mode += f" grad(params{', ' + wrt if wrt else ''})"
        return f"({', '.join(map(str, self.inputs))}) {mode}"
