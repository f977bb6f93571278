"""Search spaces, architectures and their compact string form."""

from donna_nas.space.space import (
    ACTS,
    KERNELS,
    OPS,
    Architecture,
    Block,
    BlockChoice,
    Choice,
    SearchSpace,
    Stem,
)

__all__ = ["ACTS", "KERNELS", "OPS", "Architecture", "Block", "BlockChoice", "Choice",
           "SearchSpace", "Stem", "load_space"]


def load_space(path_or_name) -> SearchSpace:
    """Load a space from a YAML path, or by the name of a shipped space (``donna_depth``, ``tiny`` …)."""
    from pathlib import Path

    from donna_nas.errors import UserError

    p = Path(path_or_name)
    if p.suffix in (".yaml", ".yml") or p.exists():
        return SearchSpace.from_yaml(p)
    shipped = shipped_spaces_dir() / f"{path_or_name}.yaml"
    if shipped.exists():
        return SearchSpace.from_yaml(shipped)
    names = sorted(f.stem for f in shipped_spaces_dir().glob("*.yaml"))
    raise UserError(f"{path_or_name}: no such space file, and not a shipped space "
                    f"(shipped: {', '.join(names)})")


def shipped_spaces_dir():
    from pathlib import Path

    return Path(__file__).resolve().parent.parent / "resources" / "search_spaces"
