"""The search family (`family.py`): archives of generated long-tail entities and multi-hop questions over them;
`themes.py` holds the themes as data, `corpus.py` writes an archive."""

from .family import FAMILY, SearchFamily

__all__ = ["FAMILY", "SearchFamily"]
