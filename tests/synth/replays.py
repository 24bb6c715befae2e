"""What the synth tests replay besides a task's own scripts: the admission's random-tool episodes."""

from toolgym.envs import EnvServerOps, replay
from toolgym.synth.admission import random_scripts


def random_rewards(ops: EnvServerOps, task: dict, tools: list[dict]) -> list[float]:
    """The rewards of a task's random-tool episodes, as admission plays them."""
    return [replay(ops, s.task, s.calls, s.answer)["reward"] for s in random_scripts(task, tools)]
