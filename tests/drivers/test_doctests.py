"""The examples in the drivers' docstrings run."""

from __future__ import annotations

import doctest

import pytest

from drivers import base, options, registry
from drivers.analog import dac
from drivers.lakeshore import ls218
from drivers.pfeiffer import tpg
from drivers.thorlabs import pm100

MODULES = [base, options, registry, dac, ls218, tpg, pm100]


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_docstring_examples(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0
