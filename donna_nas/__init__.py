"""donna-nas: hardware-aware neural architecture search (DONNA) and X-Distill depth on a CPU.

``import donna_nas`` stays light (no torch, no optuna): ``search``, ``build_supernet`` and
``LookupTable`` load their subpackages on first use. ``search`` is the ``donna_nas.search``
package, callable as ``search(space, predictor, latency, constraints, method=...)``."""

from donna_nas.space import Architecture, Block, BlockChoice, Choice, SearchSpace, Stem, load_space

__version__ = "0.1.0"
__all__ = ["Architecture", "Block", "BlockChoice", "Choice", "LookupTable", "SearchSpace", "Stem",
           "build_supernet", "load_space", "search"]

_LAZY = {
    "search": ("donna_nas.search", None),  # the package, callable as search(space, ...)
    "build_supernet": ("donna_nas.distill.pipeline", "build_supernet"),
    "LookupTable": ("donna_nas.latency.table", "LookupTable"),
}


def __getattr__(name: str):
    if name in _LAZY:
        from importlib import import_module

        module, attr = _LAZY[name]
        value = import_module(module)
        value = value if attr is None else getattr(value, attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
