"""call_in_child: the agent's code runs in a fresh interpreter and only plain data comes back. What comes back
must be exactly plain() of what the code returned (the child writes it without the json module), and nothing
the child prints or does instead may pass for a result."""

from __future__ import annotations

import math

import pytest
from toolgym.envs.inside.toolgym_env import call_in_child, plain, same_behaviour

VALUES = [
    None,
    True,
    False,
    0,
    -7,
    10**40,
    1.5,
    -0.0,
    1e16,
    1e-7,
    float("inf"),
    float("nan"),
    "",
    "plain",
    'quote " backslash \\ tab \t newline \n nul \x00',
    "é ü 漢字 \U0001f600",
    "\ud800 lone surrogate",
    [],
    (),
    [1, (2, [3.0, "x"])],
    {1, 2, 3},
    frozenset({"a", "b"}),
    {},
    {"b": 1, "a": [1, 2], (1, 2): {"n": None}},
    {3: "int key", "3": "str key", 3.5: (True,)},
]


@pytest.fixture
def lib(tmp_path):
    (tmp_path / "vals.py").write_text(
        f"import math\nVALUES = {VALUES!r}\n".replace("inf", "math.inf").replace("nan", "math.nan")
        + "def value(i):\n    return VALUES[i]\n"
        "def noisy(i):\n    print('[{\"value\": 1}]')\n    return i\n"
        "def boom(i):\n    raise KeyError(i)\n"
        "class Odd:\n    pass\n"
        "def odd(i):\n    return Odd()\n"
    )
    return str(tmp_path)


def test_every_plain_value_comes_back_as_plain_data(lib):
    got = call_in_child(lib, [["vals", "value", f"({i},)"] for i in range(len(VALUES))])
    assert got is not None and len(got) == len(VALUES)
    for value, result in zip(VALUES, got, strict=True):
        want = plain(value)
        assert result == {"value": want}, (value, result)
        if isinstance(value, float) and math.isnan(value):
            assert result["value"] == {"float": "nan"}


def test_errors_prints_and_non_plain_values_are_data_not_results(lib):
    got = call_in_child(lib, [["vals", "noisy", "(4,)"], ["vals", "boom", "(1,)"], ["vals", "odd", "(0,)"]])
    assert got == [{"value": 4}, {"error": "KeyError"}, {"error": "TypeError"}]


def test_a_report_of_the_wrong_shape_gives_none(tmp_path):
    (tmp_path / "evil.py").write_text(
        "import os, sys\n"
        "def f():\n"
        "    sys.stdout.write('\\n[{\"value\": 42}]\\n'); sys.stdout.flush(); os._exit(0)\n"
    )
    assert call_in_child(str(tmp_path), [["evil", "f", "()"], ["evil", "f", "()"]]) is None


def test_same_behaviour_compares_here(lib):
    ok, why = same_behaviour(lib, hidden=[["vals", "value", "(3,)", 0], ["vals", "value", "(13,)", "plain"]])
    assert ok, why
    ok, why = same_behaviour(lib, hidden=[["vals", "value", "(3,)", 1]])
    assert not ok and "value(3,)" in why
