"""The Dockerfile, checked without a Docker engine: its rules are read from the parsed file, and
its build stage is carried out in a clean virtualenv standing in for the image's /opt/venv, from
exactly the files the .dockerignore lets into the build context."""

from __future__ import annotations

import http.server
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import threading
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from rendering import REPO_ROOT

DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
IMAGE_VENV = "/opt/venv"
UID = "10001"


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str

    @property
    def exec_form(self) -> list[str]:
        """The JSON array of an exec-form instruction (fails the test if it is shell form)."""
        form = json.loads(self.arguments)
        assert isinstance(form, list), f"{self.keyword} is not in exec form"
        return [str(part) for part in form]


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[Instruction] = field(default_factory=list)

    def all_of(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages, with continuation lines joined."""
    joined = re.sub(r"\\\n", " ", text)
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, arguments = line.partition(" ")
        keyword, arguments = keyword.upper(), arguments.strip()
        if keyword == "FROM":
            image, _, name = arguments.partition(" AS ")
            for arg, default in global_args.items():
                image = image.replace(f"${{{arg}}}", default)
            stages.append(Stage(image.strip(), name.strip()))
        elif not stages and keyword == "ARG":
            arg, _, default = arguments.partition("=")
            global_args[arg] = default
        else:
            stages[-1].instructions.append(Instruction(keyword, arguments))
    return global_args, stages


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse_dockerfile(DOCKERFILE.read_text())[1]


def test_multi_stage_on_a_slim_python(stages: list[Stage]) -> None:
    build, runtime = stages
    assert (build.name, runtime.name) == ("build", "runtime")
    assert re.fullmatch(r"python:3\.1[1-9]-slim(-\w+)?", runtime.base)
    assert build.base == runtime.base
    # The runtime gets the finished virtualenv and nothing else: no sources, no build tools.
    assert [c.arguments for c in runtime.all_of("COPY")] == [
        f"--from=build {IMAGE_VENV} {IMAGE_VENV}"
    ]
    assert not any("pip install" in run.arguments for run in runtime.all_of("RUN"))
    assert not [i for stage in stages for i in stage.instructions if i.keyword == "ADD"]


def test_dependencies_are_installed_in_their_own_cached_layer(stages: list[Stage]) -> None:
    build = stages[0]
    keywords = [(i.keyword, i.arguments) for i in build.instructions]
    install = next(
        index
        for index, (kw, args) in enumerate(keywords)
        if kw == "RUN" and "--requirement" in args
    )
    copies_before = [args for kw, args in keywords[:install] if kw == "COPY"]
    assert copies_before == ["pyproject.toml ./"], "only the dependency list may come before"
    copies_after = [args for kw, args in keywords[install:] if kw == "COPY"]
    assert "service/regen_sync ./service/regen_sync" in copies_after


def test_runs_as_uid_10001_from_the_entrypoint_regen_sync_run(stages: list[Stage]) -> None:
    runtime = stages[-1]
    [user] = runtime.all_of("USER")
    assert user.arguments.split(":")[0] == UID, "numeric, so runAsNonRoot can verify it"
    assert any(f"--uid {UID}" in run.arguments for run in runtime.all_of("RUN"))
    [entrypoint] = runtime.all_of("ENTRYPOINT")
    assert entrypoint.exec_form == ["regen-sync", "run"]
    assert not runtime.all_of("CMD")
    assert [s.arguments for s in runtime.all_of("STOPSIGNAL")] in ([], ["SIGTERM"])


def test_nothing_is_written_outside_tmp(stages: list[Stage]) -> None:
    runtime = stages[-1]
    env = " ".join(e.arguments for e in runtime.all_of("ENV"))
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert "TMPDIR=/tmp" in env
    assert not runtime.all_of("VOLUME")


def test_healthcheck_asks_health_live(stages: list[Stage]) -> None:
    [healthcheck] = stages[-1].all_of("HEALTHCHECK")
    options, _, command = healthcheck.arguments.partition("CMD ")
    assert "--interval=" in options
    assert "--timeout=" in options
    assert "/health/live" in " ".join(Instruction("CMD", command).exec_form)


def test_oci_labels(stages: list[Stage]) -> None:
    labels = " ".join(label.arguments for label in stages[-1].all_of("LABEL"))
    for key in ("title", "description", "version", "revision", "base.name"):
        assert f"org.opencontainers.image.{key}=" in labels


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; ``!`` re-includes; a pattern that matches
    a directory matches everything under it."""
    ignored = False
    parts = path.split("/")
    candidates = ["/".join(parts[: depth + 1]) for depth in range(len(parts))]
    for pattern in patterns:
        negated = pattern.startswith("!")
        regex = _glob(pattern.removeprefix("!").rstrip("/"))
        if any(regex.fullmatch(candidate) for candidate in candidates):
            ignored = not negated
    return ignored


def _glob(pattern: str) -> re.Pattern[str]:
    translated = ""
    for token in re.split(r"(\*\*/|\*\*|\*|\?)", pattern):
        translated += {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(
            token, re.escape(token)
        )
    return re.compile(translated)


def build_context() -> Iterator[Path]:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for path in sorted(REPO_ROOT.rglob("*")):
        relative = path.relative_to(REPO_ROOT).as_posix()
        if path.is_file() and not _ignored(relative, patterns):
            yield path


def test_build_context_holds_the_service_package_and_nothing_else() -> None:
    context = {path.relative_to(REPO_ROOT).as_posix() for path in build_context()}
    tracked = subprocess.run(
        ["git", "ls-files", "service/regen_sync"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert {"pyproject.toml", "README.md", *tracked} <= context
    # The sandbox and the local-broker tooling are dev-only: they never reach the image.
    assert {path.split("/")[0] for path in context} == {"pyproject.toml", "README.md", "service"}
    assert {path.split("/")[1] for path in context if "/" in path} == {"regen_sync"}
    assert not [path for path in context if "__pycache__" in path or path.endswith(".pyc")]


@pytest.fixture(scope="module")
def image_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The build stage carried out: WORKDIR, COPY from the build context, ENV and RUN as written,
    with the image's /opt/venv replaced by a fresh virtualenv."""
    root = tmp_path_factory.mktemp("image")
    context = root / "context"
    for path in build_context():
        target = context / path.relative_to(REPO_ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    venv = root / "venv"
    build = parse_dockerfile(DOCKERFILE.read_text())[1][0]
    workdir = root / "src"
    env = {"PATH": os.environ["PATH"], "HOME": str(root), "PIP_CACHE_DIR": _pip_cache()}
    for instruction in build.instructions:
        arguments = instruction.arguments.replace(IMAGE_VENV, str(venv))
        if instruction.keyword == "WORKDIR":
            workdir.mkdir(parents=True, exist_ok=True)
        elif instruction.keyword == "ENV":
            for assignment in shlex.split(arguments):
                name, _, value = assignment.partition("=")
                env[name] = value.replace("$PATH", env["PATH"])
        elif instruction.keyword == "COPY":
            *sources, destination = shlex.split(arguments)
            for source in sources:
                _copy(context / source, workdir / destination, many=len(sources) > 1)
        elif instruction.keyword == "RUN":
            completed = subprocess.run(
                ["bash", "-ec", arguments], cwd=workdir, env=env, capture_output=True, text=True
            )
            assert completed.returncode == 0, f"RUN {arguments}\n{completed.stderr[-3000:]}"
    return venv


def _pip_cache() -> str:
    # The build may reuse the developer's download cache; the image itself sets no cache.
    return str(Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "pip")


def _copy(source: Path, destination: Path, many: bool) -> None:
    if source.is_dir():
        shutil.copytree(source, destination, dirs_exist_ok=True)
    elif many or str(destination).endswith("/") or destination.is_dir():
        destination.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, destination / source.name)
    else:
        shutil.copy2(source, destination)


def _runtime_env(venv: Path) -> dict[str, str]:
    runtime = parse_dockerfile(DOCKERFILE.read_text())[1][-1]
    env = {"PATH": f"{venv}/bin:/usr/bin:/bin", "REGEN_SECRETS_DIR": "/nonexistent"}
    for instruction in runtime.all_of("ENV"):
        for assignment in shlex.split(instruction.arguments.replace(IMAGE_VENV, str(venv))):
            name, _, value = assignment.partition("=")
            env[name] = value.replace("$PATH", env["PATH"])
    return env


def _files(directory: Path) -> set[Path]:
    return set(directory.rglob("*"))


def test_the_installed_entrypoint_runs_without_writing_anything(image_venv: Path) -> None:
    runtime = parse_dockerfile(DOCKERFILE.read_text())[1][-1]
    [entrypoint] = runtime.all_of("ENTRYPOINT")
    env = _runtime_env(image_venv)
    before = _files(image_venv)
    help_text = subprocess.run(
        ["regen-sync", "--help"], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert "run" in help_text
    assert "check" in help_text
    # The entrypoint with no configuration stops at once, naming what is missing (exit 2).
    unconfigured = subprocess.run(
        entrypoint.exec_form, env=env, capture_output=True, text=True, timeout=60
    )
    assert unconfigured.returncode == 2, unconfigured.stderr
    assert "REGEN_KAFKA__BOOTSTRAP_SERVERS" in unconfigured.stderr
    # The entrypoint imports the application only once configured: every dependency of it
    # must be installed all the same.
    subprocess.run(
        ["python", "-c", "import regen_sync.app, regen_sync.operator.check"], env=env, check=True
    )
    # A read-only root filesystem would have refused any of these writes.
    assert _files(image_venv) == before


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/health/live" else 404)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the test asserts on exit codes."""


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False)])
def test_healthcheck_command_follows_the_live_endpoint(
    image_venv: Path, status: int, healthy: bool
) -> None:
    [healthcheck] = parse_dockerfile(DOCKERFILE.read_text())[1][-1].all_of("HEALTHCHECK")
    command = Instruction("CMD", healthcheck.arguments.partition("CMD ")[2]).exec_form
    handler = type("Handler", (_Health,), {"status": status})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        env = _runtime_env(image_venv) | {"REGEN_HTTP__PORT": str(server.server_port)}
        result = subprocess.run(command, env=env, capture_output=True, timeout=30)
    finally:
        server.shutdown()
        thread.join()
    assert (result.returncode == 0) is healthy


def test_healthcheck_fails_when_nothing_listens(image_venv: Path) -> None:
    [healthcheck] = parse_dockerfile(DOCKERFILE.read_text())[1][-1].all_of("HEALTHCHECK")
    command = Instruction("CMD", healthcheck.arguments.partition("CMD ")[2]).exec_form
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    env = _runtime_env(image_venv) | {"REGEN_HTTP__PORT": str(port)}
    assert subprocess.run(command, env=env, capture_output=True, timeout=30).returncode != 0


def test_the_runtime_dependencies_leave_the_sandbox_to_its_extra() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    runtime = {re.split(r"[\[=<>]", dependency)[0] for dependency in project["dependencies"]}
    assert "starlette" not in runtime
    assert [d.split("==")[0] for d in project["optional-dependencies"]["sandbox"]] == ["starlette"]
