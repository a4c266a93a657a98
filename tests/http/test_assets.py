"""The browser SDK and the favicon, served from the package with a long cache and an ETag."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import AppClient
from tests.npm import npm_ci_unless_present

ROOT = Path(__file__).resolve().parents[2]
JS = ROOT / "clients" / "js"
SERVED = ROOT / "presence_svc" / "http" / "static" / "sdk"
YEAR = "public, max-age=31536000, immutable"


@pytest.mark.parametrize(
    ("path", "content_type", "file", "needle"),
    [
        ("/sdk/v1/presence.js", "text/javascript", "presence.min.js", "createPresence"),
        (
            "/sdk/v1/presence.d.ts",
            "application/typescript",
            "presence.min.d.ts",
            "export declare function createPresence(options: PresenceOptions): Presence;",
        ),
    ],
)
async def test_sdk_files_are_served_with_a_long_cache_and_an_etag(
    client: AppClient, path: str, content_type: str, file: str, needle: str
) -> None:
    first = await client.get(path)
    assert first.status == 200
    assert first.content_type == content_type
    assert first.charset == "utf-8"
    assert first.headers["Cache-Control"] == YEAR
    assert first.headers["X-Content-Type-Options"] == "nosniff"
    body = await first.read()
    assert body == (SERVED / file).read_bytes()
    assert needle in body.decode()
    etag = first.headers["ETag"]
    assert re.fullmatch(r'"[0-9a-f]{32}"', etag)

    again = await client.get(path, headers={"If-None-Match": etag})
    assert again.status == 304
    assert await again.read() == b""
    assert again.headers["ETag"] == etag
    assert again.headers["Cache-Control"] == YEAR
    for listed in (f'"other", {etag}', f"W/{etag}", "*"):
        assert (await client.get(path, headers={"If-None-Match": listed})).status == 304
    stale = await client.get(path, headers={"If-None-Match": '"an-older-build"'})
    assert stale.status == 200
    assert await stale.read() == body


async def test_the_module_names_its_types_and_loads_from_any_origin(client: AppClient) -> None:
    # No PRESENCE_CORS_ORIGINS: the API answers no CORS header, the public SDK file does.
    module = await client.get("/sdk/v1/presence.js", headers={"Origin": "https://app.example"})
    assert module.headers["Access-Control-Allow-Origin"] == "*"
    assert module.headers["X-TypeScript-Types"] == "/sdk/v1/presence.d.ts"
    head = await client.head("/sdk/v1/presence.js")
    assert head.status == 200
    assert head.headers["ETag"] == module.headers["ETag"]


async def test_other_sdk_paths_are_not_found(client: AppClient) -> None:
    for path in ("/sdk/v1/presence.min.js", "/sdk/v2/presence.js", "/static/presence.min.js"):
        response = await client.get(path)
        assert response.status == 404, path
        assert response.content_type == "application/problem+json"


async def test_favicon_is_an_icon_the_dashboard_links(client: AppClient) -> None:
    icon = await client.get("/favicon.ico")
    assert icon.status == 200
    assert icon.content_type == "image/x-icon"
    assert (await icon.read()).startswith(b"\x00\x00\x01\x00")  # ICO header, one image or more
    assert "max-age" in icon.headers["Cache-Control"]
    cached = await client.get("/favicon.ico", headers={"If-None-Match": icon.headers["ETag"]})
    assert cached.status == 304
    page = await (await client.get("/dashboard")).text()
    assert '<link rel="icon" href="/favicon.ico">' in page


@pytest.mark.slow  # needs node and the SDK's npm packages, as the browser tests do
def test_served_sdk_files_match_a_fresh_build_of_clients_js(tmp_path: Path) -> None:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.fail("this check needs node and npm on PATH: apt-get install -y nodejs npm")
    npm_ci_unless_present(npm, JS / "node_modules" / "dts-bundle-generator")
    subprocess.run(
        [node, "scripts/bundle.mjs", str(tmp_path)],
        cwd=JS,
        check=True,
        capture_output=True,
        env={**os.environ, "NO_COLOR": "1"},
    )
    for name in ("presence.min.js", "presence.min.d.ts"):
        fresh, served = (tmp_path / name).read_bytes(), (SERVED / name).read_bytes()
        assert fresh == served, (
            f"presence_svc/http/static/sdk/{name} is not the build of clients/js/src: "
            "run `cd clients/js && npm ci && npm run vendor` and commit the result"
        )
