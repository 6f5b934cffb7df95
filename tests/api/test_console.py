"""The web console is served with a strict content-security policy and only its own assets."""

from __future__ import annotations

from tests.api.conftest import Api


async def test_console_page_and_assets_are_served(sqlite_api: Api) -> None:
    page = await sqlite_api.client.get("/console")
    assert page.status_code == 200
    assert "<title>Vocalis console</title>" in page.text
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    script = await sqlite_api.client.get("/console/console.js")
    assert script.status_code == 200 and script.headers["content-type"].startswith(
        "text/javascript"
    )
    assert "import" in script.text  # an ES module (no build step)
    worklet = await sqlite_api.client.get("/console/js/voice/playback-worklet.js")
    assert worklet.status_code == 200 and "registerProcessor" in worklet.text
    policy = page.headers["content-security-policy"]
    assert "script-src 'self';" in policy and "unsafe-inline" not in policy


async def test_console_serves_nothing_outside_its_assets(sqlite_api: Api) -> None:
    assert (await sqlite_api.client.get("/console/api.py")).status_code == 404
    assert (await sqlite_api.client.get("/console/..%2fapi.py")).status_code == 404
    assert (await sqlite_api.client.get("/console/js/../../api.py")).status_code == 404
    assert (await sqlite_api.client.get("/console/js/screens")).status_code == 404


async def test_root_redirects_to_the_console(sqlite_api: Api) -> None:
    response = await sqlite_api.client.get("/", follow_redirects=False)
    assert response.status_code == 307 and response.headers["location"] == "/console"
