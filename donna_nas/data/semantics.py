"""The semantic class scheme of the synthetic world (Cityscapes-like train ids).

Label PNGs store these ids as single-channel uint8; 255 means "ignore". The ids follow the 19-class
Cityscapes *trainId* numbering so that label maps from a Cityscapes-trained segmentation teacher can be
written into the same ``semantics/`` tree and used interchangeably. The synthetic world only produces
a subset of the classes (road, sidewalk, building, pole, vegetation, sky, car).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IGNORE = 255


@dataclass(frozen=True)
class SemanticClass:
    name: str
    id: int
    color: tuple[int, int, int]


#: Cityscapes trainIds (id = position in the 19-class list) with the usual palette.
CLASSES: tuple[SemanticClass, ...] = (
    SemanticClass("road", 0, (128, 64, 128)),
    SemanticClass("sidewalk", 1, (244, 35, 232)),
    SemanticClass("building", 2, (70, 70, 70)),
    SemanticClass("wall", 3, (102, 102, 156)),
    SemanticClass("fence", 4, (190, 153, 153)),
    SemanticClass("pole", 5, (153, 153, 153)),
    SemanticClass("traffic_light", 6, (250, 170, 30)),
    SemanticClass("traffic_sign", 7, (220, 220, 0)),
    SemanticClass("vegetation", 8, (107, 142, 35)),
    SemanticClass("terrain", 9, (152, 251, 152)),
    SemanticClass("sky", 10, (70, 130, 180)),
    SemanticClass("person", 11, (220, 20, 60)),
    SemanticClass("rider", 12, (255, 0, 0)),
    SemanticClass("car", 13, (0, 0, 142)),
    SemanticClass("truck", 14, (0, 0, 70)),
    SemanticClass("bus", 15, (0, 60, 100)),
    SemanticClass("train", 16, (0, 80, 100)),
    SemanticClass("motorcycle", 17, (0, 0, 230)),
    SemanticClass("bicycle", 18, (119, 11, 32)),
)
NUM_CLASSES = len(CLASSES)
ID = {c.name: c.id for c in CLASSES}

ROAD, SIDEWALK, BUILDING, POLE, VEGETATION, SKY, CAR = (
    ID["road"], ID["sidewalk"], ID["building"], ID["pole"], ID["vegetation"], ID["sky"], ID["car"]
)


def palette() -> np.ndarray:
    """(256, 3) uint8 colour table; unused ids (incl. 255 = ignore) are black."""
    pal = np.zeros((256, 3), np.uint8)
    for c in CLASSES:
        pal[c.id] = c.color
    return pal


def colorize(labels: np.ndarray) -> np.ndarray:
    """Map an (H, W) id map to an (H, W, 3) uint8 colour image for viewing."""
    return palette()[np.asarray(labels, dtype=np.uint8)]
