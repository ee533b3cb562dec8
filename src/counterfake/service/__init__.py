"""The HTTP service (`counterfake serve`): FastAPI over the same store and matcher as the CLI."""

from .app import create_app

__all__ = ["create_app"]
