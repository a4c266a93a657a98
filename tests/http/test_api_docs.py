"""The documents say what the service does.

- ``docs/api.md`` has one ``### METHOD /path`` heading per endpoint of ``/openapi.json``,
  none more; each section lists (as ``- `NNN` ...`` lines) every status the document gives,
  with the same success status, and names every parameter, body field, answer field, event
  and caller scope the document gives.
- ``docs/configuration.md`` has a row for every environment variable ``Settings.from_env``
  reads (found by feeding it each ``PRESENCE_<FIELD>``), with its default, mentions the flags
  of the settings that have none, and no variable that is not read.
- Every link of ``README.md`` and ``docs/*.md`` leads to a file (and heading) inside the
  repository: nothing outside it, no web address.

Each check returns its problems; the last tests break the real documents on purpose and
assert that the checks notice.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from presence_svc.settings import ConfigError, Settings


def _none(problems: list[str]) -> None:
    assert not problems, "\n" + "\n".join(problems)


def _repo_root() -> Path:
    for parent in Path(__file__).resolve().parents:
        if (parent / "pyproject.toml").is_file():
            return parent
    raise AssertionError("no pyproject.toml above this test")


ROOT = _repo_root()
DOCS = ROOT / "docs"
API_DOC = DOCS / "api.md"
EVENTS_DOC = DOCS / "events.md"
CONFIG_DOC = DOCS / "configuration.md"

OpenApi = dict[str, Any]

# --- Markdown --------------------------------------------------------------------------------

_FENCE = re.compile(r"^\s*(```|~~~)")
_ENDPOINT = re.compile(r"^### (GET|POST|PUT|PATCH|DELETE) (/\S*)$")
_STATUS = re.compile(r"^- `(\d{3})`", re.MULTILINE)


def _lines_outside_fences(text: str) -> Iterator[str]:
    fenced = False
    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield line


def _prose(text: str) -> str:
    """The text outside code blocks and code spans: what Markdown renders as text and links."""
    return re.sub(r"`[^`\n]*`", "", "\n".join(_lines_outside_fences(text)))


def _headings(text: str) -> Iterator[tuple[int, str]]:
    for line in _lines_outside_fences(text):
        match = re.match(r"^(#{1,6})\s+(.*?)\s*#*\s*$", line)
        if match:
            yield len(match[1]), match[2]


def endpoint_sections(text: str) -> dict[tuple[str, str], str]:
    """``(METHOD, path)`` -> the text under its ``### METHOD /path`` heading, up to the next
    heading of level 3 or above (code blocks included)."""
    sections: dict[tuple[str, str], list[str]] = {}
    current: list[str] | None = None
    fenced = False
    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
        heading = None if fenced else re.match(r"^(#{1,6}) ", line)
        if heading and len(heading[1]) <= 3:
            current = None
            endpoint = _ENDPOINT.match(line)
            if endpoint:
                key = (endpoint[1], endpoint[2])
                if key in sections:
                    raise AssertionError(f"docs/api.md documents {key} twice")
                current = sections[key] = []
                continue
        if current is not None:
            current.append(line)
    return {key: "\n".join(lines) for key, lines in sections.items()}


def _slug(heading: str) -> str:
    """The anchor GitHub gives a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(text: str) -> set[str]:
    seen: dict[str, int] = {}
    found = set()
    for _, heading in _headings(text):
        slug = _slug(re.sub(r"`", "", heading))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


# --- docs/api.md against /openapi.json ---------------------------------------------------------


def _schema(doc: OpenApi, schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref is None:
        return schema
    found: dict[str, Any] = doc["components"]["schemas"][ref.rsplit("/", 1)[1]]
    return found


def _fields(doc: OpenApi, content: dict[str, Any] | None) -> set[str]:
    """Top-level property names of a request or answer body (JSON)."""
    if not content or "application/json" not in content:
        return set()
    return set(_schema(doc, content["application/json"]["schema"]).get("properties", {}))


def _who(section: str) -> str:
    match = re.search(r"^\*\*Who:\*\*(.*?)(?:\n\n|\Z)", section, re.MULTILINE | re.DOTALL)
    return match[1] if match else ""


def _operation_problems(
    doc: OpenApi, key: tuple[str, str], op: dict[str, Any], text: str
) -> list[str]:
    where = f"docs/api.md, {key[0]} {key[1]}"
    problems = []
    given = set(op["responses"])
    documented = set(_STATUS.findall(text))
    if missing := sorted(given - documented):
        problems.append(f"{where}: statuses {missing} of /openapi.json are not listed")
    success = {s for s in given if s.startswith("2")}
    if {s for s in documented if s.startswith("2")} != success:
        problems.append(f"{where}: the success status is not {sorted(success)}")
    names = {p["name"] for p in op.get("parameters", [])}
    names |= _fields(doc, op.get("requestBody", {}).get("content"))
    ok = op["responses"][min(success)] if success else {}
    names |= _fields(doc, ok.get("content"))
    names |= set(ok.get("x-events", {}))
    problems += [f"{where}: `{n}` is not mentioned" for n in sorted(names) if f"`{n}`" not in text]
    roles = re.match(r"Who may call: ([^.]*)\.", op.get("description", ""))
    who = _who(text)
    for role in roles[1].split(",") if roles else ["(no 'Who may call' in /openapi.json)"]:
        if role.strip() not in who:
            problems.append(f"{where}: the **Who:** line does not name {role.strip()!r}")
    return problems


def api_doc_problems(doc: OpenApi, text: str) -> list[str]:
    sections = endpoint_sections(text)
    operations = {
        (method.upper(), path): op
        for path, item in doc["paths"].items()
        for method, op in item.items()
    }
    problems = [
        f"docs/api.md has no '### {m} {p}' section"
        for m, p in sorted(operations.keys() - sections.keys())
    ]
    problems += [
        f"docs/api.md documents '{m} {p}', which /openapi.json does not have"
        for m, p in sorted(sections.keys() - operations.keys())
    ]
    for key in sorted(operations.keys() & sections.keys()):
        problems += _operation_problems(doc, key, operations[key], sections[key])
    return problems


def _code(text: str) -> str:
    """Code spans and code blocks: where event names and data fields are written."""
    spans = re.findall(r"`([^`\n]+)`", "\n".join(_lines_outside_fences(text)))
    blocks = set(text.splitlines()) - set(_lines_outside_fences(text))
    return "\n".join([*spans, *blocks])


def events_doc_problems(doc: OpenApi, text: str) -> list[str]:
    """Every event of the stream (as `name`), and every field of its data (in code), is in
    docs/events.md."""
    problems = []
    code = _code(text)
    for item in doc["paths"].values():
        for op in item.values():
            for name, schema in op["responses"].get("200", {}).get("x-events", {}).items():
                if f"`{name}`" not in text:
                    problems.append(f"docs/events.md: the event `{name}` is missing")
                for field in sorted(_schema(doc, schema).get("properties", {})):
                    if not re.search(rf"\b{field}\b", code):
                        problems.append(
                            f"docs/events.md: event {name!r}: field {field!r} is missing"
                        )
    return problems


def _shape_problems(doc: OpenApi, where: str, value: Any, schema: dict[str, Any]) -> list[str]:
    """An example value against its JSON Schema: an object has every required field and
    no other; the items of a list of objects likewise."""
    schema = _schema(doc, schema)
    if "anyOf" in schema:  # nullable: the non-null branch that fits
        branches = [b for b in schema["anyOf"] if _schema(doc, b).get("type") != "null"]
        return [] if value is None else _shape_problems(doc, where, value, branches[0])
    problems = []
    if isinstance(value, dict) and "properties" in schema:
        known, required = set(schema["properties"]), set(schema.get("required", ()))
        if missing := sorted(required - value.keys()):
            problems.append(f"{where}: {missing} missing")
        if unknown := sorted(value.keys() - known):
            problems.append(f"{where}: {unknown} are no fields of it")
        for name in sorted(value.keys() & known):
            problems += _shape_problems(
                doc, f"{where}.{name}", value[name], schema["properties"][name]
            )
    elif isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            problems += _shape_problems(doc, f"{where}[{i}]", item, schema["items"])
    return problems


def events_example_problems(doc: OpenApi, text: str) -> list[str]:
    """Each example frame of docs/events.md (`event: name` then `data: {...}`) has the
    shape the stream sends: the event's schema in /openapi.json."""
    events: dict[str, Any] = {}
    for item in doc["paths"].values():
        for op in item.values():
            events |= op["responses"].get("200", {}).get("x-events", {})
    problems, frames = [], 0
    for name, data in re.findall(r"^event: (\w+)\ndata: (.*)$", text, re.MULTILINE):
        frames += 1
        if name not in events:
            problems.append(f"docs/events.md: an example of an unknown event {name!r}")
            continue
        problems += _shape_problems(doc, f"docs/events.md: {name}", json.loads(data), events[name])
    return problems if frames else ["docs/events.md: no example frames found"]


@pytest.fixture
async def openapi(client: TestClient[web.Request, web.Application]) -> OpenApi:
    response = await client.get("/openapi.json")  # no token: the document is public
    assert response.status == 200
    document: OpenApi = await response.json()
    return document


async def test_api_doc_matches_openapi(openapi: OpenApi) -> None:
    _none(api_doc_problems(openapi, API_DOC.read_text()))


async def test_events_doc_has_every_event(openapi: OpenApi) -> None:
    _none(events_doc_problems(openapi, EVENTS_DOC.read_text()))


async def test_events_doc_examples_have_the_shape_of_the_events(openapi: OpenApi) -> None:
    _none(events_example_problems(openapi, EVENTS_DOC.read_text()))


def test_docs_name_the_sdk_idle_options_it_has() -> None:
    """The browser SDK has two idle timers: `idleAfterS` (away) and `engagedIdleAfterS`
    (engaged time). Every one the docs name is an option of the SDK, and the engaged-time
    section of the API reference names the engaged one."""
    types = (ROOT / "clients" / "js" / "src" / "types.ts").read_text()
    options = set(re.findall(r"^\s+(\w+AfterS)\?: number;", types, re.MULTILINE))
    assert options == {"idleAfterS", "engagedIdleAfterS"}
    readme = ROOT / "clients" / "js" / "README.md"
    for doc in [readme, *DOCS.glob("*.md")]:
        named = set(re.findall(r"`(\w+AfterS)`", doc.read_text()))
        assert named <= options, f"{doc.name} names {sorted(named - options)}"
    engaged = API_DOC.read_text().split("#### Engaged time", 1)[1].split("\n#", 1)[0]
    first = engaged.strip().split("\n\n", 1)[0]  # what the SDK measures
    assert "`engagedIdleAfterS` (60 s" in first
    assert re.search(r"`idleAfterS`[^.]*300 s", first)  # told apart from the away timer
    assert "`engagedIdleAfterS` (default 60 s)" in readme.read_text()


# --- docs/configuration.md against Settings --------------------------------------------------

CLI_ONLY = {"host": "--host", "port": "--port", "run_worker": "--worker"}
"""Settings without an environment variable: ``serve`` flags."""
_PROBE = "not a value any setting takes"


def reads(var: str) -> bool:
    """Whether ``Settings.from_env`` reads ``var``: a value no setting accepts either stops it
    (``ConfigError``) or lands in a field; an unread variable changes nothing."""
    try:
        return Settings.from_env({var: _PROBE}) != Settings()
    except ConfigError:
        return True


def settings_env() -> dict[str, str]:
    """Settings field -> its environment variable, ``PRESENCE_<FIELD>``, when it has one."""
    names = {f.name: f"PRESENCE_{f.name.upper()}" for f in dataclasses.fields(Settings)}
    return {name: var for name, var in names.items() if reads(var)}


def _rows(text: str) -> dict[str, list[str]]:
    """Table rows whose first cell is a `PRESENCE_*` variable: variable -> cells."""
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        match = re.fullmatch(r"`(PRESENCE_[A-Z0-9_]+)`", cells[0]) if line.startswith("|") else None
        if match:
            rows[match[1]] = cells
    return rows


def _default_problem(var: str, default: object, cell: str) -> str | None:
    if default is None or default == ():
        return None
    code = re.fullmatch(r"`([^`]*)`", cell)
    value = code[1] if code else None
    if isinstance(default, bool):
        ok = value in ("0", "1") and bool(int(value)) == default
    elif isinstance(default, int | float):
        ok = (
            value is not None
            and re.fullmatch(r"[\d.]+", value) is not None
            and float(value) == default
        )
    elif isinstance(default, Path):
        ok = value is not None and Path(value) == default
    elif isinstance(default, tuple) and all(isinstance(v, float) for v in default):
        numbers = value.split(",") if value else []
        ok = all(re.fullmatch(r"[\d.]+", v) for v in numbers)
        ok = ok and tuple(float(v) for v in numbers) == default
    else:
        ok = value == str(default)
    return None if ok else f"docs/configuration.md: {var}'s default is {default!r}, not {cell}"


def settings_doc_problems(text: str) -> list[str]:
    fields = {f.name: f for f in dataclasses.fields(Settings)}
    env = settings_env()
    problems = [
        f"Settings.{name} has no PRESENCE_{name.upper()} and no entry in CLI_ONLY"
        for name in sorted(fields.keys() - env.keys() - CLI_ONLY.keys())
    ]
    rows = _rows(text)
    for name, var in sorted(env.items()):
        if var not in rows:
            problems.append(f"docs/configuration.md has no row for {var} (Settings.{name})")
            continue
        cells = rows[var]
        default = fields[name].default if name in fields else None
        problem = _default_problem(var, default, cells[1] if len(cells) > 1 else "")
        if problem:
            problems.append(problem)
    problems += [
        f"docs/configuration.md does not mention {flag} (Settings.{name})"
        for name, flag in CLI_ONLY.items()
        if f"`{flag}`" not in text
    ]
    named = set(re.findall(r"\bPRESENCE_[A-Z0-9_]*[A-Z0-9]\b", text))
    unknown = {var for var in named - set(env.values()) if not reads(var)}
    problems += [
        f"docs/configuration.md names {v}, which Settings does not read" for v in sorted(unknown)
    ]
    return problems


def test_configuration_doc_has_every_setting() -> None:
    _none(settings_doc_problems(CONFIG_DOC.read_text()))


# --- links -------------------------------------------------------------------------------------

_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]*)>?(?:\s+[\"'][^)]*[\"'])?\s*\)")
_REFERENCE = re.compile(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.MULTILINE)
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def _targets(text: str) -> Iterator[str]:
    prose = _prose(text)
    yield from _LINK.findall(prose)
    yield from _REFERENCE.findall(prose)
    yield from re.findall(r"<([A-Za-z][A-Za-z0-9+.-]*:[^>\s]*)>", prose)
    yield from re.findall(r"(?<![(<\w])(https?://[^\s)>]+|www\.[^\s)>]+)", prose)


def _target_problem(source: Path, target: str) -> str | None:
    name = source.relative_to(ROOT)
    if not target:
        return f"{name}: an empty link"
    if _SCHEME.match(target) or target.startswith(("//", "www.")):
        return f"{name}: {target} points outside the repository"
    path, _, fragment = target.partition("#")
    resolved = (source.parent / path).resolve() if path else source
    if not resolved.is_relative_to(ROOT):
        return f"{name}: {target} points outside the repository"
    if not resolved.exists():
        return f"{name}: {target} does not exist"
    if fragment and resolved.suffix == ".md" and fragment not in anchors(resolved.read_text()):
        return f"{name}: {target}: no heading with the anchor #{fragment}"
    return None


def link_problems(source: Path, text: str) -> list[str]:
    return [p for t in _targets(text) if (p := _target_problem(source, t)) is not None]


def _documents() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


@pytest.mark.parametrize("document", _documents(), ids=lambda p: str(p.relative_to(ROOT)))
def test_links_stay_inside_the_repository(document: Path) -> None:
    _none(link_problems(document, document.read_text()))


# --- the checks can fail -----------------------------------------------------------------------


async def test_api_checks_notice_a_broken_doc(openapi: OpenApi) -> None:
    text = API_DOC.read_text()
    heartbeat = "### POST /v1/heartbeat\n"
    assert heartbeat in text
    dropped = text.replace(heartbeat, "### POST /v1/heartbeats\n")
    assert "docs/api.md has no '### POST /v1/heartbeat' section" in api_doc_problems(
        openapi, dropped
    )
    assert any("which /openapi.json does not have" in p for p in api_doc_problems(openapi, dropped))
    head, _, tail = text.partition("### GET /v1/ledger\n")
    no_503 = head + "### GET /v1/ledger\n" + tail.replace("- `503`", "- 503", 1)
    assert any("GET /v1/ledger: statuses ['503']" in p for p in api_doc_problems(openapi, no_503))
    no_field = text.replace("`sessionId`", "sessionId")
    assert any("`sessionId` is not mentioned" in p for p in api_doc_problems(openapi, no_field))
    status_200 = text.replace("- `204`: erased", "- `200`: erased")
    assert any(
        "DELETE /v1/users/{userId}: the success status" in p
        for p in api_doc_problems(openapi, status_200)
    )
    no_dashboard = text.replace("**Who:** dashboard, admin.", "**Who:** admin.")
    assert any("does not name 'dashboard'" in p for p in api_doc_problems(openapi, no_dashboard))
    events = EVENTS_DOC.read_text()
    assert events_doc_problems(openapi, events) == []
    no_event = events.replace("`sessions`", "sessions")
    assert "docs/events.md: the event `sessions` is missing" in events_doc_problems(
        openapi, no_event
    )
    no_field = events.replace("reason", "why")
    assert any("field 'reason'" in p for p in events_doc_problems(openapi, no_field))
    assert events_example_problems(openapi, events) == []
    no_away = events.replace(',"away":0}', "}")
    assert any("count: ['away'] missing" in p for p in events_example_problems(openapi, no_away))
    extra = events.replace('{"userId":"alice","reason":"left"}', '{"userId":"alice","why":1}')
    assert any("leave: ['why'] are no fields" in p for p in events_example_problems(openapi, extra))


def test_settings_check_notices_a_broken_doc() -> None:
    text = CONFIG_DOC.read_text()
    row = next(line for line in text.splitlines() if line.startswith("| `PRESENCE_PARTITIONS`"))
    problems = settings_doc_problems(text.replace(row + "\n", ""))
    assert any("no row for PRESENCE_PARTITIONS" in p for p in problems)
    wrong_default = text.replace(row, row.replace("| `64` |", "| `32` |"))
    assert any("PRESENCE_PARTITIONS's default" in p for p in settings_doc_problems(wrong_default))
    invented = text + "\n`PRESENCE_NOT_A_SETTING`\n"
    assert any("PRESENCE_NOT_A_SETTING" in p for p in settings_doc_problems(invented))


def test_link_check_notices_broken_links() -> None:
    readme = ROOT / "README.md"
    broken = {
        "[contract](../shared/CONTRACT.md)": "points outside the repository",
        "[site](https://example.org/docs)": "points outside the repository",
        "see https://example.org/docs": "points outside the repository",
        "[gone](docs/no-such-file.md)": "does not exist",
        "[api](docs/api.md#no-such-heading)": "no heading with the anchor",
    }
    for link, expected in broken.items():
        problems = link_problems(readme, f"# t\n\n{link}\n")
        assert any(expected in p for p in problems), (link, problems)
    assert (
        link_problems(readme, "# t\n\n[api](docs/api.md#post-v1heartbeat)\n\n`https://x.org`\n")
        == []
    )
