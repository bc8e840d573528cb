"""genrec's HTTP server: an OpenAI-compatible chat endpoint and native recommendation routes."""

from genrec.server.app import create_app

__all__ = ["create_app"]
