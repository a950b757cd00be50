"""``morphoscope serve``: the web app and HTTP API (docs/web.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def register(app: typer.Typer) -> None:
    @app.command("serve")
    def serve_cmd(
        host: Annotated[str, typer.Option("--host", help="address to listen on; the default is this computer "
                                          "only. 0.0.0.0 lets every machine that can reach this one use the "
                                          "server (no login, no encryption): see docs/web.md")] = "127.0.0.1",
        port: Annotated[int, typer.Option("--port", help="port to listen on")] = 8000,
        model: Annotated[Optional[list[str]], typer.Option(
            "--model", help="model to offer (shipped name, checkpoint file or run folder); repeat for "
            "several, the first is the default. Default: the shipped models")] = None,
        device: Annotated[str, typer.Option("--device", help="cpu, cuda or auto")] = "auto",
        max_upload_mb: Annotated[float, typer.Option("--max-upload-mb", min=0.01, help="largest upload (MB)")] = 100.0,
        max_pixels: Annotated[int, typer.Option("--max-pixels", min=1, help="largest image plane (height × width)")] = 4096 * 4096,
        max_queue: Annotated[int, typer.Option("--max-queue", min=1, help="jobs waiting or running at most; "
                                               "more are refused (503) until one ends")] = 8,
        workers: Annotated[int, typer.Option("--workers", min=1, help="jobs run at the same time")] = 1,
        keep_minutes: Annotated[float, typer.Option("--keep-minutes", min=0.1, help="delete uploads and results "
                                                    "unused for this long")] = 60.0,
        tmp_dir: Annotated[Optional[Path], typer.Option("--tmp-dir", help="where uploads and results are kept "
                                                        "(default: the system's temporary folder)")] = None,
        examples: Annotated[Optional[list[Path]], typer.Option("--examples", help="a folder of images offered "
                                                               "as examples besides the bundled ones")] = None,
        sync_wait: Annotated[float, typer.Option("--sync-wait", min=0, help="seconds POST /api/predict waits "
                                                 "before answering with a job id")] = 60.0,
        open_browser: Annotated[bool, typer.Option("--open", help="open the page in the default browser")] = False,
        write_openapi: Annotated[Optional[Path], typer.Option("--write-openapi", hidden=True,
                                                              help="write the OpenAPI document and exit")] = None,
    ) -> None:
        """Start the web app and HTTP API: open the printed address in a browser."""
        if write_openapi is not None:
            from morphoscope.web.app import write_openapi as _write

            _write(write_openapi)
            typer.echo(f"wrote {write_openapi}")
            return
        serve(host=host, port=port, models=list(model or []), device=device, max_upload_mb=max_upload_mb,
              max_pixels=max_pixels, max_queue=max_queue, workers=workers, keep_minutes=keep_minutes,
              tmp_dir=tmp_dir, examples=list(examples or []), sync_wait=sync_wait, open_browser=open_browser)


def check_port_free(host: str, port: int) -> None:
    import socket

    from morphoscope.errors import ConfigError

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror}); is another server "
                              "running there? Choose another port with --port") from None


def serve(*, host: str = "127.0.0.1", port: int = 8000, models=(), device: str = "auto", max_upload_mb=100.0,
          max_pixels=4096 * 4096, max_queue=8, workers=1, keep_minutes=60.0, tmp_dir=None, examples=(),
          sync_wait=60.0, open_browser=False) -> None:
    import uvicorn

    from morphoscope.web.app import create_app
    from morphoscope.web.jobs import JobManager, ServerConfig

    config = ServerConfig(host=host, port=port, models=list(models), device=device, max_upload_mb=max_upload_mb,
                          max_pixels=max_pixels, max_queue=max_queue, workers=workers, keep_minutes=keep_minutes,
                          tmp_dir=tmp_dir, examples=list(examples), sync_wait_s=sync_wait)
    check_port_free(host, port)
    manager = JobManager(config)  # reads the model cards: a bad --model fails here, before listening
    loopback = host in LOOPBACK
    # the app's shutdown deletes the temporary folder: uvicorn re-raises SIGTERM after it, which
    # ends the process before a `finally` here would run
    app = create_app(config, manager=manager, close_manager=True,
                     trusted_hosts=["127.0.0.1", "localhost", "::1", "[::1]"] if loopback else None)
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    url = f"http://{'[' + shown + ']' if ':' in shown else shown}:{port}/"
    n = len(manager.catalog.entries)
    typer.secho(f"morphoscope is running at {url}", fg=typer.colors.GREEN, bold=True)
    typer.echo(f"  models: {', '.join(manager.catalog.entries) or 'none (start with --model CHECKPOINT)'}"
               if n else "  no model installed: start with --model CHECKPOINT")
    typer.echo(f"  API reference: {url}api/docs   ·   stop with Ctrl+C")
    if not loopback:
        typer.secho(f"  warning: listening on {host}: anyone who can reach this machine on port {port} can "
                    "upload images and run models (no login, no encryption).", fg=typer.colors.YELLOW, err=True)
    if open_browser:
        import threading
        import webbrowser

        threading.Timer(1.0, webbrowser.open, args=(url,)).start()
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=3)
    finally:
        manager.close()
