"""The examples in the ingest package's docstrings run."""

from __future__ import annotations

import doctest

import pytest

from services.logger.ingest import lineprotocol, mapping, mqtt, settings


@pytest.mark.parametrize("module", [lineprotocol, mapping, mqtt, settings],
                         ids=lambda m: m.__name__)
def test_docstring_examples(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0
