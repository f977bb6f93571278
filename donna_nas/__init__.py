"""donna-nas: hardware-aware neural architecture search (DONNA) and X-Distill depth on a CPU."""

from donna_nas.space import Architecture, Block, BlockChoice, Choice, SearchSpace, Stem, load_space

__version__ = "0.1.0"
__all__ = ["Architecture", "Block", "BlockChoice", "Choice", "SearchSpace", "Stem", "load_space"]
