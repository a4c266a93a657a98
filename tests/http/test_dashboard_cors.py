"""The dashboard's static files and CORS for browser apps on other origins."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from presence_svc.settings import ConfigError, Settings
from tests.conftest import AppClient, MakeClient

Auth = Callable[..., dict[str, str]]
APP = "https://app.example.com"


async def test_dashboard_is_served_with_a_strict_csp(client: AppClient) -> None:
    page = await client.get("/dashboard")
    assert page.status == 200
    assert page.content_type == "text/html"
    csp = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    html = await page.text()
    assert 'src="/dashboard/app.js"' in html
    assert "http://" not in html.replace("http://www.w3.org", "")
    script = await client.get("/dashboard/app.js")
    assert script.status == 200
    assert script.content_type == "text/javascript"
    assert "sessionStorage" in await script.text()
    style = await client.get("/dashboard/style.css")
    assert style.content_type == "text/css"


@pytest.mark.parametrize("name", ["secret.txt", "..%2F..%2Fapp.py", "index.htm"])
async def test_dashboard_serves_only_its_own_files(client: AppClient, name: str) -> None:
    response = await client.get(f"/dashboard/{name}")
    assert response.status == 404
    assert response.content_type == "application/problem+json"


async def test_no_cors_headers_by_default(client: AppClient, auth: Auth) -> None:
    response = await client.get(
        "/v1/artifacts/doc-1/online", headers={**auth("alice"), "Origin": APP}
    )
    assert response.status == 200
    assert "Access-Control-Allow-Origin" not in response.headers


async def test_preflight_allows_authorization_and_json_for_listed_origins(
    make_client: MakeClient, auth: Auth
) -> None:
    client = await make_client(cors_origins=(APP,))
    preflight = await client.options(
        "/v1/heartbeat",
        headers={
            "Origin": APP,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert preflight.status == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == APP
    allowed = preflight.headers["Access-Control-Allow-Headers"].lower()
    assert "authorization" in allowed
    assert "content-type" in allowed
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]

    beat = await client.post(
        "/v1/heartbeat",
        json={"artifactId": "doc-1", "sessionId": "tab-12345678"},
        headers={**auth("alice"), "Origin": APP},
    )
    assert beat.status == 200
    assert beat.headers["Access-Control-Allow-Origin"] == APP
    assert "Retry-After" in beat.headers["Access-Control-Expose-Headers"]
    # Errors carry the headers too, so the app can read the problem.
    denied = await client.get("/v1/artifacts/doc-1/stats", headers={**auth("a"), "Origin": APP})
    assert denied.status == 403
    assert denied.headers["Access-Control-Allow-Origin"] == APP


async def test_other_origins_get_no_cors_headers(make_client: MakeClient) -> None:
    client = await make_client(cors_origins=(APP,))
    preflight = await client.options(
        "/v1/heartbeat",
        headers={"Origin": "https://evil.example.org", "Access-Control-Request-Method": "POST"},
    )
    assert "Access-Control-Allow-Origin" not in preflight.headers
    assert "Access-Control-Allow-Headers" not in preflight.headers


async def test_star_allows_any_origin(make_client: MakeClient) -> None:
    client = await make_client(cors_origins=("*",))
    response = await client.get("/healthz", headers={"Origin": "http://localhost:5173"})
    assert response.headers["Access-Control-Allow-Origin"] == "http://localhost:5173"


def test_cors_origins_are_read_and_checked() -> None:
    settings = Settings.from_env({"PRESENCE_CORS_ORIGINS": f"{APP}, http://localhost:5173"})
    assert settings.cors_origins == (APP, "http://localhost:5173")
    with pytest.raises(ConfigError, match="PRESENCE_CORS_ORIGINS"):
        Settings.from_env({"PRESENCE_CORS_ORIGINS": "https://app.example.com/path"})
