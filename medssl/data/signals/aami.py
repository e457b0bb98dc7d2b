"""MIT-BIH beat symbols -> AAMI EC57 classes (the de Chazal et al. 2004 convention).

    N  normal and bundle-branch beats: N L R e j
    S  supraventricular ectopic:       A a J S
    V  ventricular ectopic:            V E
    F  fusion of ventricular + normal: F
    Q  paced, fusion of paced, unclassifiable: / f Q

Every other annotation symbol (rhythm changes ``+``, noise ``~``, artefacts ``|``, non-conducted
P waves ``x``, flutter waves ``!``, ``[`` ``]`` ``"`` ...) is not a beat and is skipped.
"""

from __future__ import annotations

AAMI_CLASSES = ("N", "S", "V", "F", "Q")

AAMI_MAP: dict[str, str] = {
    "N": "N", "L": "N", "R": "N", "e": "N", "j": "N",
    "A": "S", "a": "S", "J": "S", "S": "S",
    "V": "V", "E": "V",
    "F": "F",
    "/": "Q", "f": "Q", "Q": "Q",
}


def aami_class(symbol: str) -> str | None:
    """The AAMI class of an annotation ``symbol``, or None when it does not mark a beat."""
    return AAMI_MAP.get(symbol)
