"""Who may talk to the web app: the page's own origin, with this launch's token.

The app can read files and run workflows as the user who started it, so a page of any other
site open in the same browser must not reach it (cross-site WebSocket hijacking), nor may anyone
who merely guesses the port. Every launch makes a random token (``secrets.token_urlsafe``) and
prints the address that carries it, as Jupyter does::

    SpineAI web app listening on http://127.0.0.1:8080/?token=Zq3…

* A request whose ``Origin`` header is not the server's own address (``http://127.0.0.1:PORT``,
  ``http://localhost:PORT``, ``http://[::1]:PORT``, ``http://HOST:PORT`` for ``--host HOST``;
  with a wildcard host also this machine's name and addresses; more in ``SPINEAI_WEB_ORIGINS``,
  comma-separated) is refused with 403, the websocket ``/ws`` included.
* Every request needs the token: ``?token=…`` in the address (the page is then redirected to
  the same address without it, and a cookie ``spineai-token-PORT`` — HttpOnly, SameSite=Strict —
  carries it from then on: reloads and further tabs of that browser need no token), or that
  cookie. Without it: 403 and one line saying which address to open.
* The websocket's own secret (wslink's ``hello``) is the token too, not wslink's default; the
  page gets it from ``/paraview/`` (trame's session-manager request), which answers only
  requests that passed the two checks above.

Scripts connect to ``ws://127.0.0.1:PORT/ws?token=…`` (no Origin header, or the app's own).
"""

import ipaddress
import secrets
import socket
from urllib.parse import urlsplit

from aiohttp import web

TOKEN_PARAMETER = "token"
SESSION_MANAGER_PATH = "/paraview/"  # where trame's page asks for its websocket address and secret
WILDCARD_HOSTS = ("0.0.0.0", "::", "")


def new_token():
    return secrets.token_urlsafe(32)


def cookie_name(port):
    return f"spineai-token-{port}"


def _host_names(host):
    """The names a browser may use for this server: loopback names, the host given, and this
    machine's names and addresses when it listens on every interface."""
    names = {"127.0.0.1", "localhost", "::1"}
    if host and host not in WILDCARD_HOSTS:
        names.add(host)
    else:
        for name in (socket.gethostname(), socket.getfqdn()):
            names.add(name)
            try:
                names.update(info[4][0] for info in socket.getaddrinfo(name, None))
            except OSError:
                pass
    return {n.lower() for n in names if n}


def _origin_of(host, port):
    try:
        if ipaddress.ip_address(host).version == 6:
            host = f"[{host}]"
    except ValueError:
        pass
    return f"http://{host}:{port}"


class AccessGuard:
    """The checks above for one launch: ``token``, the ``host`` it listens on, ``extra_origins``."""

    def __init__(self, token, host="127.0.0.1", extra_origins=()):
        self.token = token
        self.host = host
        self._names = _host_names(host)
        self._extra = {o.strip().rstrip("/").lower() for o in extra_origins if o and o.strip()}

    def allowed_origins(self, port):
        origins = {_origin_of(name, port) for name in self._names}
        origins |= {o.replace("http://", "https://", 1) for o in origins}
        return origins | self._extra

    def origin_allowed(self, origin, port):
        """None (no Origin: not a browser) or the page's own origin."""
        if origin is None:
            return True
        return origin.strip().rstrip("/").lower() in self.allowed_origins(port)

    def token_valid(self, value):
        return isinstance(value, str) and secrets.compare_digest(value.encode(), self.token.encode())

    def url(self, host, port):
        """The address to open: ``http://HOST:PORT/?token=…`` (127.0.0.1 for a wildcard host)."""
        shown = "127.0.0.1" if host in WILDCARD_HOSTS else host
        return f"{_origin_of(shown, port)}/?{TOKEN_PARAMETER}={self.token}"

    # -- aiohttp ------------------------------------------------------------------------------

    @staticmethod
    def _port(request):
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        if sockname:
            return sockname[1]
        return urlsplit(str(request.url)).port

    @web.middleware
    async def middleware(self, request, handler):
        port = self._port(request)
        origin = request.headers.get("Origin")
        if not self.origin_allowed(origin, port):
            return web.Response(status=403, text=f"SpineAI: refused: requests from {origin} are not accepted here\n")
        query_token = request.query.get(TOKEN_PARAMETER)
        if query_token is not None and self.token_valid(query_token) and request.method == "GET" \
                and request.path != "/ws":
            # The token moves from the address into a cookie: it leaves the address bar and history.
            rest = {k: v for k, v in request.query.items() if k != TOKEN_PARAMETER}
            response = web.Response(status=302, headers={"Location": str(request.rel_url.with_query(rest))})
            response.set_cookie(cookie_name(port), self.token, httponly=True, samesite="Strict", path="/")
            return response
        if not (self.token_valid(query_token) or self.token_valid(request.cookies.get(cookie_name(port)))):
            return web.Response(status=403, text="SpineAI: refused: open the address `spineai web` printed at start "
                                                 "(http://…/?token=…)\n")
        return await handler(request)

    async def session_manager(self, request):
        """trame's page asks here for its websocket address and secret (it has passed the checks)."""
        return web.json_response({"sessionURL": "ws://USE_HOST/ws", "secret": self.token})

    def install(self, ws_server, protocol):
        """Put the checks in front of wslink's aiohttp app (before it starts) and make the token
        the websocket's secret."""
        ws_server.app.middlewares.append(self.middleware)
        ws_server.app.router.add_post(SESSION_MANAGER_PATH, self.session_manager)
        protocol.updateSecret(self.token)


def is_loopback(host):
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_warning(host, port):
    """The warning printed when the app listens beyond this machine, else None."""
    if is_loopback(host):
        return None
    return (
        f"WARNING: serving on {host}:{port}: the SpineAI web app is reachable from the network over plain "
        "http, with no authentication beyond the token in its address; anyone who has that address can "
        "open files on this machine and run workflows as this user."
    )
