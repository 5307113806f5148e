"""Run the components of `recipes/` as a nucleus would, on one machine.

Each component's `Run` script starts as its own process with the environment the nucleus
gives (IPC socket, SVCUID token, thing name) plus the recipe's `Setenv`; its configuration
is the recipe's DefaultConfiguration merged with local overrides. The recipe variables
`{artifacts:decompressedPath}` and `{work:path}` point at a local layout in which the
artifact is this checkout and the Install step's virtual environment is the one running
this code, so the Run scripts are used unchanged; the Install step (a venv from the
artifact's pinned requirements) is not run, as that venv is already there. A process that
exits non-zero is restarted; three errors in a row make it BROKEN, as on a device.
"""

from __future__ import annotations

import copy
import logging
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import yaml

from devkit.nucleus.config import ComponentSpec
from devkit.nucleus.nucleus import LocalNucleus

log = logging.getLogger("runner")
ARTIFACT_DIR_NAME = "visual-search"  # the artifact zip's name without .zip
MAX_ERRORS_IN_A_ROW = 3
HEALTHY_AFTER_S = 30.0  # a run this long resets the error count
LOG_LINES_KEPT = 200


def load_recipe(path: Path) -> dict:
    try:
        recipe = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: cannot read recipe ({exc})") from None
    if not isinstance(recipe, dict) or "ComponentName" not in recipe:
        raise ValueError(f"{path}: not a Greengrass recipe (no ComponentName)")
    return recipe


def run_script(recipe: dict) -> tuple[str, dict]:
    """The Linux manifest's Run script and Setenv (lifecycle-level Setenv included)."""
    for manifest in recipe.get("Manifests", []):
        if (manifest.get("Platform") or {}).get("os", "linux") in ("linux", "*"):
            lifecycle = manifest.get("Lifecycle") or {}
            run = lifecycle.get("Run")
            script = run.get("Script") if isinstance(run, dict) else run
            env = dict(lifecycle.get("Setenv") or {})
            if isinstance(run, dict):
                env.update(run.get("Setenv") or {})
            if script:
                return str(script), {k: str(v) for k, v in env.items()}
    raise ValueError(f"{recipe['ComponentName']}: no Linux Run step")


def merge(base: dict, override: dict) -> dict:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


@dataclass
class ComponentProcess:
    name: str
    command: list[str]
    env: dict
    cwd: str = ""  # {work:path}: a nucleus starts lifecycle scripts there
    state: str = "NEW"  # NEW, STARTING, RUNNING, ERRORED, BROKEN, FINISHED, STOPPED
    process: subprocess.Popen | None = None
    errors_in_a_row: int = 0
    restarts: int = 0
    started_at: float = 0.0
    log: deque = field(default_factory=lambda: deque(maxlen=LOG_LINES_KEPT))


class KioskRunner:
    def __init__(
        self,
        recipes_dir: Path,
        project_root: Path,
        work_root: Path,
        *,
        overrides: dict[str, dict] | None = None,
        thing_name: str = "local-kiosk",
        only: list[str] | None = None,
        extra_components: list[ComponentSpec] = (),
        on_log: Callable[[str, str], None] | None = None,
    ):
        self.project_root = Path(project_root).resolve()
        self.work_root = Path(work_root).resolve()
        self.on_log = on_log
        recipes = [load_recipe(p) for p in sorted(Path(recipes_dir).glob("*.yaml"))]
        if only:
            recipes = [r for r in recipes if r["ComponentName"] in only]
        if not recipes:
            raise ValueError(f"{recipes_dir}: no recipes to run")
        specs = []
        self.processes: dict[str, ComponentProcess] = {}
        for recipe in recipes:
            spec = ComponentSpec.from_recipe(recipe)
            spec.configuration = merge(spec.configuration, (overrides or {}).get(spec.name, {}))
            specs.append(spec)
        self.nucleus = LocalNucleus(thing_name=thing_name, components=[*specs, *extra_components])
        for recipe in recipes:
            name = recipe["ComponentName"]
            script, setenv = run_script(recipe)
            variables = self._variables(name)
            env = {
                **os.environ,
                **{k: substitute(v, variables) for k, v in setenv.items()},
                **self.nucleus.component_env(name),
                "PYTHONUNBUFFERED": "1",
            }
            self.processes[name] = ComponentProcess(
                name, shlex.split(substitute(script, variables)), env, variables["work:path"]
            )
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._supervisor = threading.Thread(target=self._supervise, name="supervisor", daemon=True)

    def _variables(self, name: str) -> dict[str, str]:
        """A local layout where the recipe's paths resolve to this checkout and its venv."""
        work = self.work_root / "work" / name
        artifacts = self.work_root / "artifacts-unarchived" / name
        work.mkdir(parents=True, exist_ok=True)
        artifacts.mkdir(parents=True, exist_ok=True)
        _symlink(work / "venv", Path(sys.prefix))  # what the Install step would have created
        _symlink(artifacts / ARTIFACT_DIR_NAME, self.project_root)
        return {
            "artifacts:decompressedPath": str(artifacts),
            "work:path": str(work),
            "iot:thingName": self.nucleus.thing_name,
        }

    # ---- lifecycle -------------------------------------------------------------------------
    def start(self) -> "KioskRunner":
        self.nucleus.start()
        for proc in self.processes.values():
            self._launch(proc)
        self._supervisor.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        with self._lock:
            procs = [p for p in self.processes.values() if p.process and p.process.poll() is None]
            for proc in procs:
                proc.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in procs:
            try:
                proc.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.process.kill()
                proc.process.wait()
            proc.state = "STOPPED"
        if self._supervisor.is_alive():
            self._supervisor.join(timeout)
        self.nucleus.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def kill(self, name: str) -> None:
        """Kill one component as a crash would (SIGKILL); the supervisor restarts it."""
        with self._lock:
            self.processes[name].process.kill()

    def states(self) -> dict[str, dict]:
        reported = self.nucleus.states
        with self._lock:
            return {
                name: {
                    "state": p.state,
                    "reported": reported.get(name, ""),
                    "pid": p.process.pid if p.process else None,
                    "restarts": p.restarts,
                }
                for name, p in self.processes.items()
            }

    def wait_until_running(self, timeout: float = 120.0) -> None:
        """Wait until every component has reported RUNNING over IPC; fail fast on BROKEN."""
        deadline = time.monotonic() + timeout
        while True:
            reported, states = self.nucleus.states, self.states()
            broken = [n for n, s in states.items() if s["state"] == "BROKEN"]
            if broken:
                raise RuntimeError(
                    f"{', '.join(broken)} BROKEN: " + " | ".join(list(self.processes[broken[0]].log)[-3:])
                )
            waiting = [n for n in self.processes if reported.get(n) != "RUNNING"]
            if not waiting:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{', '.join(waiting)} did not report RUNNING within {timeout:.0f}s")
            self._stop.wait(0.2)

    # ---- supervision -------------------------------------------------------------------------
    def _launch(self, proc: ComponentProcess) -> None:
        proc.process = subprocess.Popen(
            proc.command,
            env=proc.env,
            cwd=proc.cwd or self.project_root,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            start_new_session=True,
        )
        proc.state, proc.started_at = "RUNNING", time.monotonic()
        threading.Thread(target=self._pump, args=(proc, proc.process), daemon=True).start()

    def _pump(self, proc: ComponentProcess, process: subprocess.Popen) -> None:
        for line in process.stdout:
            line = line.rstrip()
            proc.log.append(line)
            if self.on_log:
                self.on_log(proc.name, line)

    def _supervise(self) -> None:
        while not self._stop.wait(0.2):
            with self._lock:
                for proc in self.processes.values():
                    if proc.state != "RUNNING" or proc.process.poll() is None:
                        continue
                    self._handle_exit(proc, proc.process.returncode)

    def _handle_exit(self, proc: ComponentProcess, code: int) -> None:
        if self._stop.is_set():
            return
        if code == 0:
            proc.state = "FINISHED"  # exit 0 is not restarted, as on a device
            log.info("%s finished", proc.name)
            return
        healthy = time.monotonic() - proc.started_at > HEALTHY_AFTER_S
        proc.errors_in_a_row = 1 if healthy else proc.errors_in_a_row + 1
        if proc.errors_in_a_row >= MAX_ERRORS_IN_A_ROW:
            proc.state = "BROKEN"
            log.error(
                "%s is BROKEN: exited with %s %d times in a row; last lines:\n  %s",
                proc.name,
                code,
                proc.errors_in_a_row,
                "\n  ".join(list(proc.log)[-10:]),
            )
            return
        proc.state = "ERRORED"
        log.warning(
            "%s exited with %s; restarting (%d error(s) in a row)", proc.name, code, proc.errors_in_a_row
        )
        proc.restarts += 1
        self._launch(proc)


def substitute(text: str, variables: dict[str, str]) -> str:
    """Replace recipe variables such as {work:path}; an unknown one is an error."""

    def replace(match: re.Match) -> str:
        key = match.group(1)
        if key not in variables:
            raise ValueError(f"recipe variable {{{key}}} is not supported by the local runner")
        return variables[key]

    return re.sub(r"\{([a-zA-Z]+:[^{}]+)\}", replace, text)


def _symlink(link: Path, target: Path) -> None:
    if link.is_symlink() and Path(os.readlink(link)) == target:
        return
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(target, target_is_directory=True)
