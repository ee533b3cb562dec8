"""The public surface is exactly what __all__ says, and every error code maps to one class."""

from __future__ import annotations

import inspect

import counterfake
from counterfake import errors


def test_all_lists_exactly_the_public_names() -> None:
    for name in counterfake.__all__:  # loaded on first use
        getattr(counterfake, name)
    public = {name for name in vars(counterfake) if not name.startswith("_")}
    modules = {name for name, value in vars(counterfake).items() if inspect.ismodule(value)}
    assert set(counterfake.__all__) == public - modules
    assert sorted(counterfake.__all__) == list(counterfake.__all__)


def test_one_exception_root_with_a_separate_misuse_root() -> None:
    classes = [getattr(errors, name) for name in errors.__all__]
    for cls in classes:
        if cls is errors.UsageError:
            assert not issubclass(cls, errors.CounterfakeError)
        else:
            assert issubclass(cls, errors.CounterfakeError)


def test_every_error_class_is_drawn_in_the_tree() -> None:
    doc = errors.__doc__ or ""
    for name in errors.__all__:
        assert name in doc, name


def test_hashing_loads_no_store_and_the_version_no_numpy() -> None:
    """What each entry point costs to start: `hash` needs no database, `--version` no NumPy."""
    import subprocess
    import sys

    probe = (
        "import sys, counterfake.hashing, counterfake.core;"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'sqlalchemy', 'alembic', 'cv2',"
        " 'numba', 'fastapi'}))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    probe = "import sys, counterfake.cli; print('numpy' in sys.modules, 'rich' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"
