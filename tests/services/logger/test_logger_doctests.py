"""The examples in the logger's docstrings run."""

from __future__ import annotations

import doctest

import pytest

from services.logger import columns, postgres, queries, service, settings, spool, store


@pytest.mark.parametrize("module", [columns, postgres, queries, service, settings, spool, store],
                         ids=lambda m: m.__name__)
def test_docstring_examples(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0
