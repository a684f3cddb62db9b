"""Pins the public names of the package (trio's test_exports): removing or renaming one is a
breaking change that must show up here."""

from __future__ import annotations

import importlib.metadata

import httpsys

REQUIRED = {"Server", "HttpsysError", "AlreadyExistsError", "InvalidParameterError", "__version__"}


def test_all_contains_the_public_api():
    assert REQUIRED <= set(httpsys.__all__), REQUIRED - set(httpsys.__all__)


def test_every_name_in_all_exists():
    missing = [name for name in httpsys.__all__ if not hasattr(httpsys, name)]
    assert missing == []
    assert len(httpsys.__all__) == len(set(httpsys.__all__)), "duplicates in __all__"


def test_error_hierarchy():
    assert issubclass(httpsys.HttpsysError, Exception)
    assert issubclass(httpsys.AlreadyExistsError, httpsys.HttpsysError)
    assert issubclass(httpsys.InvalidParameterError, httpsys.HttpsysError)
    assert issubclass(httpsys.InvalidParameterError, ValueError)


def test_version_matches_the_distribution():
    assert isinstance(httpsys.__version__, str)
    assert httpsys.__version__ == importlib.metadata.version("httpsys")
