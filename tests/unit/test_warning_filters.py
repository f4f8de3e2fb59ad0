"""The pytest warning filters in pyproject.toml: deprecations raised from the provider are errors."""

from __future__ import annotations

import warnings

import pytest


def test_a_deprecation_raised_by_the_provider_fails_the_test():
    with pytest.raises(DeprecationWarning, match="old API"):
        warnings.warn_explicit("old API", DeprecationWarning, "luma.py", 1, module="luma_provider.hooks.luma")


def test_a_deprecation_raised_elsewhere_is_only_reported():
    with pytest.warns(DeprecationWarning, match="old API"):
        warnings.warn_explicit("old API", DeprecationWarning, "thing.py", 1, module="somebody_else.thing")
