"""The code-interpreter family (`family.py`): data files and maths questions around a stateful Python session;
`themes.py`, `data.py`, `questions.py`, `maths.py` and `kinds.py` hold its parts."""

from .family import FAMILY, CodeInterpreterFamily

__all__ = ["CodeInterpreterFamily", "FAMILY"]
