"""Who may talk to the web app (``SpineAILib.web.access``), against a real server with a real
websocket client: a page of another site is refused, so is anyone without this launch's token,
and the address the app prints at start lets a client in (websocket upgrade and wslink hello).

One server for the module (start-up ≈ 10 s on two cores); no browser.
"""

import asyncio
from urllib.parse import parse_qs, urlsplit

import aiohttp
import msgpack
import pytest
from web_helpers import WebServer

from SpineAILib.web.access import AccessGuard, cookie_name


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    log = tmp_path_factory.mktemp("access") / "server.log"
    with WebServer(log_path=log) as running:
        yield running


def _ws_url(server, token=None):
    query = f"?token={token}" if token is not None else ""
    return f"ws://127.0.0.1:{server.port}/ws{query}"


def _hello(secret):
    """A wslink hello (what trame's page sends first), chunked as wslink expects."""
    from wslink.chunking import generate_chunks

    message = {"wslink": "1.0", "id": "system:c0:0", "method": "wslink.hello", "args": [{"secret": secret}],
               "kwargs": {}}
    return list(generate_chunks(msgpack.packb(message), 0))


async def _connect(url, origin=None, cookies=None, secret=None):
    """(HTTP status of the upgrade, the hello's reply or None)."""
    headers = {"Origin": origin} if origin else {}
    async with aiohttp.ClientSession(cookies=cookies) as session:
        try:
            async with session.ws_connect(url, headers=headers, timeout=aiohttp.ClientWSTimeout(ws_close=10)) as ws:
                reply = None
                if secret is not None:
                    from wslink.chunking import UnChunker

                    for chunk in _hello(secret):
                        await ws.send_bytes(chunk)
                    unchunker = UnChunker()
                    while reply is None:
                        msg = await asyncio.wait_for(ws.receive(), 20)
                        assert msg.type == aiohttp.WSMsgType.BINARY, msg
                        reply = unchunker.process_chunk(msg.data)
                return 101, reply
        except aiohttp.WSServerHandshakeError as error:
            return error.status, None


def test_start_up_line_carries_a_fresh_token(server, tmp_path):
    url = server.url
    assert url.startswith(f"http://127.0.0.1:{server.port}/?token=")
    token = parse_qs(urlsplit(url).query)["token"][0]
    assert len(token) >= 40 and token != "wslink-secret"
    with WebServer(log_path=tmp_path / "second.log") as other:
        assert other.token != server.token, "the token must be new at every start"


def test_websocket_from_another_site_is_refused(server):
    status, _ = asyncio.run(_connect(_ws_url(server, server.token), origin="http://evil.example"))
    assert status == 403
    # ... a look-alike on another port of this machine too
    status, _ = asyncio.run(_connect(_ws_url(server, server.token), origin=f"http://127.0.0.1:{server.port + 1}"))
    assert status == 403


def test_websocket_without_or_with_a_wrong_token_is_refused(server):
    own = f"http://127.0.0.1:{server.port}"
    assert asyncio.run(_connect(_ws_url(server), origin=own))[0] == 403
    assert asyncio.run(_connect(_ws_url(server, "wslink-secret"), origin=own))[0] == 403
    assert asyncio.run(_connect(_ws_url(server, server.token[:-1] + "x"), origin=own))[0] == 403


def test_websocket_with_the_token_works_and_wants_it_as_secret(server):
    own = f"http://127.0.0.1:{server.port}"
    status, reply = asyncio.run(_connect(_ws_url(server, server.token), origin=own, secret=server.token))
    assert status == 101
    assert "error" not in reply and reply["result"]["clientID"], reply
    # the same address with localhost, and a script without an Origin header
    status, _ = asyncio.run(_connect(_ws_url(server, server.token), origin=f"http://localhost:{server.port}"))
    assert status == 101
    assert asyncio.run(_connect(_ws_url(server, server.token)))[0] == 101
    # the cookie the page gets instead of the token in its address
    status, reply = asyncio.run(_connect(_ws_url(server), origin=own, cookies={cookie_name(server.port): server.token},
                                         secret=server.token))
    assert status == 101 and reply["result"]["clientID"]
    # wslink's default secret is no longer the websocket's secret
    status, reply = asyncio.run(_connect(_ws_url(server, server.token), origin=own, secret="wslink-secret"))
    assert status == 101 and "error" in reply, reply


def test_page_needs_the_token_and_keeps_it_in_a_cookie(server):
    async def fetch():
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:  # keeps 127.0.0.1's
            async with session.get(server.base_url) as refused:
                refused_status, refused_text = refused.status, await refused.text()
            async with session.get(server.url, allow_redirects=False) as redirect:
                location, cookie = redirect.headers["Location"], redirect.cookies[cookie_name(server.port)]
                redirect_status = redirect.status
            async with session.get(server.base_url) as page:  # the cookie now
                page_status, page_text = page.status, await page.text()
            async with session.post(server.base_url + "paraview/", headers={"Origin": "http://evil.example"}) as evil:
                evil_status = evil.status
            async with session.post(server.base_url + "paraview/", json={}) as manager:
                secret = (await manager.json())["secret"]
        return (refused_status, refused_text, redirect_status, location, cookie, page_status, page_text, evil_status,
                secret)

    refused, text, redirect, location, cookie, page, html, evil, secret = asyncio.run(fetch())
    assert refused == 403 and text.count("\n") == 1 and "?token=" in text  # one line that says what to open
    assert redirect == 302 and "token" not in location  # the token leaves the address bar
    assert cookie.value == server.token and cookie["httponly"] and cookie["samesite"] == "Strict"
    assert page == 200 and "<html" in html
    assert evil == 403
    assert secret == server.token


def test_allowed_origins_follow_the_host():
    guard = AccessGuard("t", host="127.0.0.1")
    assert guard.origin_allowed("http://127.0.0.1:8080", 8080) and guard.origin_allowed("http://localhost:8080", 8080)
    assert guard.origin_allowed("http://[::1]:8080", 8080) and guard.origin_allowed(None, 8080)
    assert not guard.origin_allowed("http://evil.example", 8080)
    assert not guard.origin_allowed("http://127.0.0.1:8081", 8080)
    assert not guard.origin_allowed("null", 8080)
    lan = AccessGuard("t", host="192.168.10.5", extra_origins=["https://spine.example.org"])
    assert lan.origin_allowed("http://192.168.10.5:8080", 8080)
    assert lan.origin_allowed("https://spine.example.org", 8080)
    assert not lan.origin_allowed("http://192.168.10.6:8080", 8080)
    assert guard.url("127.0.0.1", 8080) == "http://127.0.0.1:8080/?token=t"
    assert guard.url("0.0.0.0", 8080) == "http://127.0.0.1:8080/?token=t"
