"""mkdocs hooks of the documentation site (mkdocs.yml ``hooks:``).

* Every Markdown page in docs/ is in the site: pages missing from ``nav`` are appended under
  "More" (engineers add pages concurrently; none is left out of the navigation).
* docs/cli.md's ``<!-- cli-reference -->`` marker is replaced by the command-line reference that
  typer generates from the ``morphoscope`` app itself, so it cannot drift from the code.
"""

from __future__ import annotations

from pathlib import Path

MARKER = "<!-- cli-reference -->"


def _nav_files(nav) -> set[str]:
    found: set[str] = set()
    for item in nav or []:
        value = next(iter(item.values())) if isinstance(item, dict) else item
        if isinstance(value, list):
            found |= _nav_files(value)
        elif isinstance(value, str):
            found.add(value)
    return found


def on_config(config, **kwargs):
    docs = Path(config["docs_dir"])
    listed = _nav_files(config["nav"])
    extra = sorted(p.relative_to(docs).as_posix() for p in docs.rglob("*.md")
                   if p.relative_to(docs).as_posix() not in listed)
    if extra and config["nav"] is not None:
        config["nav"].append({"More": extra})
    return config


def cli_reference() -> str:
    import typer
    from typer.cli import get_docs_for_click

    from morphoscope.cli import app

    command = typer.main.get_command(app)
    ctx = typer.Context(command, info_name="morphoscope")
    text = get_docs_for_click(obj=command, ctx=ctx, name="morphoscope", title="morphoscope")
    # typer's page starts with its own level-1 title; the page has one already
    return "\n".join(text.splitlines()[1:])


def on_page_markdown(markdown, page, config, files, **kwargs):
    if MARKER in markdown:
        return markdown.replace(MARKER, cli_reference())
    return markdown
