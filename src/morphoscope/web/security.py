"""What stands between ``morphoscope serve`` and the network (docs/security.md).

One ASGI middleware, :class:`Guard`, runs before any route and

* refuses a ``Host`` the server does not answer to (DNS rebinding; loopback servers only),
* asks for the access token when the server has one (``Authorization: Bearer``, the token cookie,
  or ``?token=`` once, which sets that cookie),
* refuses cross-site writes: a POST/PUT/PATCH/DELETE whose ``Sec-Fetch-Site`` or ``Origin`` says
  another site sent it,
* gives every client a session: a random id in an HttpOnly SameSite=Strict cookie, or the
  ``X-Morphoscope-Session`` header for scripts; uploads and jobs belong to it,
* counts request body bytes as they arrive and stops at the limit (413), ``Content-Length`` or
  not,
* adds the security headers (CSP, nosniff, frame-ancestors, referrer policy) to every answer.

Its refusals are JSON ``{"detail": ...}`` like the API's other errors.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import unicodedata
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlencode

from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException

SESSION_HEADER = "x-morphoscope-session"
_SESSION_RE = re.compile(r"^[A-Za-z0-9_-]{22,64}$")
UNSAFE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
JSON_BODY_LIMIT = 1 << 20  # every body that is not an image upload

# The page's policy: scripts and styles from this server only (no inline code), images also as
# data:/blob: URLs (previews, the overlay canvas), no frames, no plugins.
PAGE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
            "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
            "form-action 'self'; frame-ancestors 'none'")
# A downloaded report is one self-contained file with inline styles and data: images; sandboxed,
# it cannot reach the server even when opened from it.
REPORT_CSP = ("sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
              "frame-ancestors 'none'")
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",  # the page's URL may carry ?token=
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}


def docs_csp(html_text: str) -> str:
    """The policy of a page whose one inline script (Swagger UI's set-up) is allowed by its hash."""
    import base64

    hashes = []
    for m in re.finditer(r"<script>(.*?)</script>", html_text, flags=re.S):
        digest = base64.b64encode(hashlib.sha256(m.group(1).encode()).digest()).decode()
        hashes.append(f"'sha256-{digest}'")
    return (f"default-src 'self'; script-src 'self' {' '.join(hashes)}; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
            "frame-ancestors 'none'")


class BodyTooLarge(HTTPException):
    """A request body past its limit (FastAPI passes HTTPExceptions through its body parsing)."""

    def __init__(self, detail: str):
        super().__init__(status_code=413, detail=detail)


def new_session_id() -> str:
    return secrets.token_urlsafe(18)


def cookie_names(port: int) -> tuple[str, str]:
    """(session, token) cookie names; cookies ignore ports, so two servers on one host must not
    overwrite each other's."""
    return f"morphoscope_session_{port}", f"morphoscope_token_{port}"


def _json(status: int, detail: str, headers: dict | None = None):
    from starlette.responses import JSONResponse

    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def _token_page(status: int) -> "object":
    from starlette.responses import HTMLResponse

    body = ("<!doctype html><html lang='en'><head><meta charset='utf-8'><title>morphoscope: access "
            "token needed</title></head><body><h1>This morphoscope server needs its access token</h1>"
            "<p>Open the address <code>morphoscope serve</code> printed when it started (it ends in "
            "<code>?token=…</code>), or paste the token here:</p>"
            "<form method='get' action='/'><input name='token' size='40' autocomplete='off' "
            "aria-label='access token'> <button>Open</button></form></body></html>")
    return HTMLResponse(body, status_code=status)


class Guard:
    """The checks above, as pure ASGI middleware (it must see the body as it streams)."""

    def __init__(self, app, *, token: str | None = None, allowed_hosts: list[str] | None = None,
                 upload_paths: tuple[str, ...] = (), upload_limit: int = 100 << 20, port: int = 8000,
                 upload_limit_text: str = ""):
        self.app = app
        self.token = token or None
        self.allowed_hosts = [h.lower() for h in allowed_hosts] if allowed_hosts else None
        self.upload_paths = upload_paths
        self.upload_limit = upload_limit
        self.upload_limit_text = upload_limit_text or f"{upload_limit / 2**20:g} MB"
        self.session_cookie, self.token_cookie = cookie_names(port)

    # ---- the checks ------------------------------------------------------------------------
    def _host_ok(self, headers: Headers) -> bool:
        if self.allowed_hosts is None:
            return True
        host = headers.get("host", "").lower()
        name = host[: host.rindex("]") + 1] if host.startswith("[") else host.split(":")[0]
        return name in self.allowed_hosts

    def _token_ok(self, headers: Headers, cookies: dict, query: dict) -> tuple[bool, bool]:
        """(allowed, came in the query)"""
        if self.token is None:
            return True, False
        auth = headers.get("authorization", "")
        if auth[:7].lower() == "bearer " and secrets.compare_digest(auth[7:].strip().encode(), self.token.encode()):
            return True, False
        cookie = cookies.get(self.token_cookie)
        if cookie and secrets.compare_digest(cookie.encode(), self.token.encode()):
            return True, False
        given = query.get("token")
        if given and secrets.compare_digest(given.encode(), self.token.encode()):
            return True, True
        return False, False

    @staticmethod
    def _cross_site(scope, headers: Headers) -> bool:
        """True when a browser says another site sent this write."""
        if scope["method"] not in UNSAFE_METHODS:
            return False
        site = headers.get("sec-fetch-site")
        if site is not None:
            return site not in ("same-origin", "none")
        origin = headers.get("origin")
        if origin is None:
            return False  # not a browser (curl, scripts): nothing to forge
        scheme = scope.get("scheme", "http")
        return origin.lower() != f"{scheme}://{headers.get('host', '')}".lower()

    def _body_limit(self, path: str) -> tuple[int, str]:
        if path in self.upload_paths:
            return self.upload_limit, f"this server accepts uploads up to {self.upload_limit_text} (--max-upload-mb)"
        return JSON_BODY_LIMIT, f"this request may have a body of at most {JSON_BODY_LIMIT >> 10} kB"

    # ---- ASGI ------------------------------------------------------------------------------
    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        cookies = _cookies(headers.get("cookie", ""))
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True))
        extra_cookies: list[str] = []

        if not self._host_ok(headers):
            await self._send(_json(400, "this server answers to its loopback address only "
                                        "(127.0.0.1 or localhost); the Host header names another"),
                             scope, receive, send)
            return
        allowed, from_query = self._token_ok(headers, cookies, query)
        if not allowed:
            wants_html = scope["method"] == "GET" and "text/html" in headers.get("accept", "")
            if wants_html:
                resp = _token_page(401)
            else:
                resp = _json(401, "this server needs its access token: send 'Authorization: Bearer "
                                  "TOKEN' (the token morphoscope serve printed), or open the printed "
                                  "address once in the browser", {"WWW-Authenticate": "Bearer"})
            await self._send(resp, scope, receive, send)
            return
        if from_query:
            extra_cookies.append(_set_cookie(self.token_cookie, self.token))
            if scope["method"] == "GET" and scope["path"] == "/":
                # the token leaves the address bar (and the history) once it is in the cookie
                from starlette.responses import RedirectResponse

                rest = urlencode([(k, v) for k, v in parse_qsl(scope.get("query_string", b"").decode("latin-1"),
                                                               keep_blank_values=True) if k != "token"])
                await self._send(RedirectResponse("/" + (f"?{rest}" if rest else ""), status_code=303),
                                 scope, receive, send, extra_cookies)
                return
        if self._cross_site(scope, headers):
            await self._send(_json(403, "refused: this request came from another web site (cross-site "
                                        "writes are not allowed)"), scope, receive, send)
            return

        session = headers.get(SESSION_HEADER) or cookies.get(self.session_cookie) or ""
        if not _SESSION_RE.match(session):
            session = new_session_id()
            extra_cookies.append(_set_cookie(self.session_cookie, session))
        scope.setdefault("state", {})["session"] = session
        client = scope.get("client")
        scope["state"]["client"] = client[0] if client else "unknown"

        limit, limit_text = self._body_limit(scope["path"])
        length = headers.get("content-length")
        if scope["method"] in UNSAFE_METHODS and length is not None and length.isdigit() and int(length) > limit:
            await self._send(_json(413, f"the request body is {int(length) / 2**20:.1f} MB; {limit_text}"),
                             scope, receive, send, extra_cookies, session)
            return

        received = 0

        async def counted_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(f"the request body is larger than {limit / 2**20:g} MB; {limit_text}")
            return message

        started = False

        async def send_with_headers(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                add_headers(message, session, extra_cookies, scope["path"])
            await send(message)

        try:
            await self.app(scope, counted_receive, send_with_headers)
        except BodyTooLarge as exc:  # raised outside a route's error handling
            if started:
                raise
            await self._send(_json(413, exc.detail), scope, receive, send, extra_cookies, session)

    async def _send(self, response, scope, receive, send, cookies=(), session=None):
        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                add_headers(message, session, list(cookies), scope["path"])
            await send(message)

        await response(scope, receive, send_with_headers)


def add_headers(message: dict, session: str | None, cookies: list[str], path: str) -> None:
    headers = MutableHeaders(scope=message)
    for name, value in SECURITY_HEADERS.items():
        headers.setdefault(name, value)
    headers.setdefault("Content-Security-Policy", PAGE_CSP)
    if session:
        headers[SESSION_HEADER] = session  # scripts read it and send it back
    for c in cookies:
        headers.append("Set-Cookie", c)


def _set_cookie(name: str, value: str) -> str:
    return f"{name}={value}; Path=/; HttpOnly; SameSite=Strict"


def _cookies(text: str) -> dict:
    out = {}
    for part in text.split(";"):
        if "=" in part:
            k, v = part.split("=", 1)
            out.setdefault(k.strip(), v.strip())
    return out


# --------------------------------------------------------------------------------------------
# names and paths in answers
# --------------------------------------------------------------------------------------------


def content_disposition(filename: str, kind: str = "attachment") -> str:
    """RFC 6266 / RFC 5987: an ASCII fallback name and the real (UTF-8) one."""
    stem, dot, suffix = filename.rpartition(".")
    if not dot:
        stem, suffix = filename, ""
    plain = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode()
    plain = re.sub(r"[^A-Za-z0-9._-]+", "_", plain).strip("._") or "download"
    fallback = plain + (f".{re.sub(r'[^A-Za-z0-9]+', '', suffix)}" if suffix else "")
    if fallback == filename:
        return f'{kind}; filename="{filename}"'
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


class PathScrubber:
    """Replaces absolute server paths in text meant for clients by their last part."""

    def __init__(self, roots):
        found = set()
        for r in roots:
            if r is None:
                continue
            text = str(r).rstrip("/\\")
            if len(text) > 1 and Path(text).is_absolute():
                found.add(text)
                try:
                    found.add(str(Path(text).resolve()))
                except OSError:
                    pass
        parts = sorted(found, key=len, reverse=True)
        self.pattern = (re.compile("(" + "|".join(re.escape(p) for p in parts) + r")([/\\][^\s'\"<>,;:)]*)?")
                        if parts else None)

    def __call__(self, text):
        if not text or self.pattern is None:
            return text
        return self.pattern.sub(lambda m: Path(m.group(0)).name or "…", str(text))
