"""The code family (`family.py`): generated Python repositories with injected bugs and issues that report them;
`library.py`, `mutate.py`, `repo.py` and `tools.py` hold its parts."""

from .family import FAMILY, CodeFamily

__all__ = ["FAMILY", "CodeFamily"]
