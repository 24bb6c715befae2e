"""The general family: services of many shapes (synth/general/shapes/), each with its own schema, tools and
rules, rendered into variants. See `base.py` for what a shape is and what its tasks must be."""

from .family import FAMILY, GeneralFamily, shapes

__all__ = ["FAMILY", "GeneralFamily", "shapes"]
