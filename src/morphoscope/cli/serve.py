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
                                          "server, with the access token it prints (no encryption): see "
                                          "docs/web.md")] = "127.0.0.1",
        port: Annotated[int, typer.Option("--port", help="port to listen on")] = 8000,
        model: Annotated[Optional[list[str]], typer.Option(
            "--model", help="model to offer (shipped name, checkpoint file or run folder); repeat for "
            "several, the first is the default. Default: the shipped models")] = None,
        device: Annotated[str, typer.Option("--device", help="cpu, cuda or auto")] = "auto",
        max_upload_mb: Annotated[float, typer.Option("--max-upload-mb", min=0.01, help="largest upload (MB)")] = 100.0,
        max_pixels: Annotated[int, typer.Option("--max-pixels", min=1, help="largest image plane (height × width)")] = 4096 * 4096,
        max_image_mb: Annotated[float, typer.Option("--max-image-mb", min=0.01, help="largest image decoded (MB): "
                                                    "planes × height × width × channels × bytes, checked "
                                                    "from the file header before decoding")] = 1024.0,
        quota_mb: Annotated[float, typer.Option("--quota-mb", min=0.01, help="decoded images one computer "
                                                "(address) may keep on the server at once (MB)")] = 2048.0,
        max_total_mb: Annotated[float, typer.Option("--max-total-mb", min=0.01, help="decoded images the "
                                                    "server keeps at once, all users together (MB)")] = 8192.0,
        token: Annotated[Optional[str], typer.Option("--token", help="access token every request must carry "
                                                     "(default: one is made when --host is not this computer "
                                                     "only, and printed with the address)")] = None,
        no_token: Annotated[bool, typer.Option("--no-token", help="no access token even on a network address "
                                               "(anyone who reaches the port can use the server)")] = False,
        max_queue: Annotated[int, typer.Option("--max-queue", min=1, help="jobs waiting or running at most; "
                                               "more are refused (503) until one ends")] = 8,
        workers: Annotated[int, typer.Option("--workers", min=1, help="jobs run at the same time")] = 1,
        keep_minutes: Annotated[float, typer.Option("--keep-minutes", min=0.1, help="delete uploads and results "
                                                    "unused for this long")] = 60.0,
        tmp_dir: Annotated[Optional[Path], typer.Option("--tmp-dir", help="where uploads, results and every "
                                                        "temporary file of the server go (default: the system's "
                                                        "temporary folder)")] = None,
        examples: Annotated[Optional[list[Path]], typer.Option("--examples", help="a folder of images offered "
                                                               "as examples besides the bundled ones")] = None,
        sync_wait: Annotated[float, typer.Option("--sync-wait", min=0, help="seconds POST /api/predict waits "
                                                 "before answering with a job id")] = 60.0,
        open_browser: Annotated[bool, typer.Option("--open", help="open the page in the default browser")] = False,
        write_openapi: Annotated[Optional[Path], typer.Option("--write-openapi", hidden=True,
                                                              help="write the OpenAPI document and exit")] = None,
    ) -> None:
        """Start the web app and HTTP API: open the printed address in a browser."""
        from morphoscope.extras import require

        require("web", "morphoscope serve")
        if write_openapi is not None:
            from morphoscope.web.app import write_openapi as _write

            _write(write_openapi)
            typer.echo(f"wrote {write_openapi}")
            return
        if token is not None and no_token:
            raise typer.BadParameter("give --token or --no-token, not both")
        serve(host=host, port=port, models=list(model or []), device=device, max_upload_mb=max_upload_mb,
              max_pixels=max_pixels, max_image_mb=max_image_mb, quota_mb=quota_mb, max_total_mb=max_total_mb,
              max_queue=max_queue, workers=workers, keep_minutes=keep_minutes, tmp_dir=tmp_dir,
              examples=list(examples or []), sync_wait=sync_wait, open_browser=open_browser,
              token=None if no_token else (token or ("auto" if host not in LOOPBACK else None)))


def _shown_host(host: str) -> str:
    """The address to print: for 0.0.0.0 this machine's name on the network (others use it)."""
    if host not in ("0.0.0.0", "::"):
        return host
    import socket

    try:
        name = socket.gethostname()
        socket.getaddrinfo(name, None)
        return name
    except OSError:
        return "127.0.0.1"


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
          max_pixels=4096 * 4096, max_image_mb=1024.0, quota_mb=2048.0, max_total_mb=8192.0, max_queue=8,
          workers=1, keep_minutes=60.0, tmp_dir=None, examples=(), sync_wait=60.0, open_browser=False,
          token: str | None = None) -> None:
    """Run the server. ``token``: required on every request; "auto" makes a random one."""
    import secrets
    import tempfile

    import uvicorn

    from morphoscope.web.app import create_app
    from morphoscope.web.jobs import JobManager, ServerConfig

    if token == "auto":
        token = secrets.token_urlsafe(24)
    config = ServerConfig(host=host, port=port, models=list(models), device=device, max_upload_mb=max_upload_mb,
                          max_pixels=max_pixels, max_image_mb=max_image_mb, quota_mb=quota_mb,
                          max_total_mb=max_total_mb, max_queue=max_queue, workers=workers,
                          keep_minutes=keep_minutes, tmp_dir=tmp_dir, examples=list(examples),
                          sync_wait_s=sync_wait, token=token)
    check_port_free(host, port)
    manager = JobManager(config)  # reads the model cards: a bad --model fails here, before listening
    # whatever a library writes "temporarily" lands in the server's folder, which goes at the end
    (manager.root / "tmp").mkdir(exist_ok=True)
    tempfile.tempdir = str(manager.root / "tmp")
    loopback = host in LOOPBACK
    # the app's shutdown deletes the temporary folder: uvicorn re-raises SIGTERM after it, which
    # ends the process before a `finally` here would run
    app = create_app(config, manager=manager, close_manager=True,
                     trusted_hosts=["127.0.0.1", "localhost", "::1", "[::1]"] if loopback else None)
    shown = _shown_host(host)
    url = f"http://{'[' + shown + ']' if ':' in shown else shown}:{port}/"
    page = url + (f"?token={token}" if token else "")
    n = len(manager.catalog.entries)
    typer.secho(f"morphoscope is running at {page}", fg=typer.colors.GREEN, bold=True)
    typer.echo(f"  models: {', '.join(manager.catalog.entries) or 'none (start with --model CHECKPOINT)'}"
               if n else "  no model installed: start with --model CHECKPOINT")
    typer.echo(f"  API reference: {url}docs   ·   stop with Ctrl+C")
    if token:
        typer.echo("  access token: give the address above to the people who should use this server; "
                   f"scripts send 'Authorization: Bearer {token}'")
    if not loopback:
        typer.secho(f"  note: listening on {host}: every machine that can reach this one on port {port} can "
                    + ("open the page, but only with the token" if token else
                       "upload images and run models (--no-token: no login)")
                    + "; traffic is not encrypted (HTTP).", fg=typer.colors.YELLOW, err=True)
    if open_browser:
        import threading
        import webbrowser

        threading.Timer(1.0, webbrowser.open, args=(page,)).start()
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=3)
    finally:
        manager.close()
