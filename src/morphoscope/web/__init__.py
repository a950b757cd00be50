"""``morphoscope serve``: an HTTP API (FastAPI) and the web app it serves (``static/``).

``create_app(ServerConfig(...))`` builds the application; :class:`JobManager` holds uploads, the
bounded job queue and the kept results. See docs/web.md.
"""

from morphoscope.web.jobs import JobManager, ServerConfig


def create_app(*args, **kwargs):
    from morphoscope.web.app import create_app as _create_app

    return _create_app(*args, **kwargs)


__all__ = ["JobManager", "ServerConfig", "create_app"]
