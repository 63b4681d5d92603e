"""Backends that run a training job (pre-training, then probes, then optionally the model audit's out-of-sample
scores) outside the app: a local process group or Slurm.

Place in the flow: export -> (this module starts) ``python -m training.pretrain`` / ``training.probe`` -> a run
directory that ``curation.runs`` imports. Nothing here touches the database: ``curation.runs`` records what
these functions return (command line, environment, backend id) and asks them for a job's state.

Local jobs run a driver script (``RUN_DIR/job.sh``) in a new session, so the job is its own process group
(cancel ends the whole group) and the chain "train, then every probe" goes on when the app stops. The driver
writes ``RUN_DIR/job_exit.json`` when the chain ends; a job that vanished without it died (killed, machine
restart). Slurm jobs run ``RUN_DIR/job.sbatch`` (torchrun on every node, c10d rendezvous on the first node).

Example::

    job = JobSpec(export_dir="/data/exports/k800", run_dir=Path("runs/r1"), objective="mtc", size="tiny", steps=50)
    handle = start_local(job)                 # returns at once; the job runs on
    job_state(handle.backend, handle.backend_id, handle.meta, job.run_dir)   # ("running", "")
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
import threading
from dataclasses import dataclass, field
from pathlib import Path

from curation.errors import UtsError

# The choices the trainer accepts, from the trainer itself (training/config.py is plain Python: no torch import).
from training.config import OBJECTIVES, SIZES

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEVICES = ("cpu", "cuda")
BACKENDS = ("local", "slurm")
DRIVER_NAME = "job.sh"
SBATCH_NAME = "job.sbatch"
EXIT_NAME = "job_exit.json"
LOG_NAME = "train.log"
KILL_GRACE_S = 10.0  # SIGTERM first; whatever of the group is left after this gets SIGKILL


class LaunchError(UtsError):
    """A job could not be started, submitted, polled or cancelled."""


def audit_folds_problem(folds: int) -> str | None:
    """Why ``folds`` cannot be a job's model-audit folds, or None (0 = off; k-fold needs k >= 2)."""
    if folds and folds < 2:
        return (f"model-audit folds {folds}: expected 0 (off) or at least 2 (each clip is scored by a head fitted "
                "without it)")
    return None


@dataclass(frozen=True)
class JobSpec:
    """Everything that decides one job's command lines."""

    export_dir: str  # the export folder (label_K.json, cuts.jsonl.gz, export.json)
    run_dir: Path  # RUN_DIR; its name is the run_id
    objective: str = "mtc"  # mtc | par | mtc+par
    size: str = "tiny"  # tiny | small | base
    steps: int = 100
    device: str = "cpu"  # cpu | cuda
    gpus: int = 1  # processes (GPUs) per node; > 1 runs torchrun
    nodes: int = 1  # Slurm nodes (local jobs always use one)
    batch_seconds: float | None = None  # audio seconds per batch per process: --set max_batch_s=...
    lr: float | None = None  # --set lr=...
    extra_set: tuple[str, ...] = ()  # further key=value overrides of the training config
    probe_tasks: tuple[str, ...] = ()  # task CSV paths probed after training, in order
    # k >= 2: after the probes, score every clip of the export out of sample with k folds on the job's device
    # (``training.oos_scores``, the model audit's settings), so that ``model-audit`` on the finished run reuses
    # the scores instead of encoding the corpus again on the app's machine; 0: not part of the job.
    audit_folds: int = 0
    env: dict = field(default_factory=dict)  # environment overrides (strings)
    python: str = sys.executable  # interpreter of the job (the app's own by default)
    workdir: Path = PROJECT_ROOT  # folder the job runs in (holds the training package)
    partition: str | None = None  # Slurm --partition
    time_limit: str | None = None  # Slurm --time, e.g. "24:00:00"

    def check(self) -> None:
        problems = []
        if self.objective not in OBJECTIVES:
            problems.append(f"objective {self.objective!r}: expected one of {', '.join(OBJECTIVES)}")
        if self.size not in SIZES:
            problems.append(f"size {self.size!r}: expected one of {', '.join(SIZES)}")
        if self.device not in DEVICES:
            problems.append(f"device {self.device!r}: expected cpu or cuda")
        if self.steps < 1:
            problems.append(f"steps {self.steps}: expected at least 1")
        if self.gpus < 1 or self.nodes < 1:
            problems.append(f"{self.nodes} nodes x {self.gpus} processes: expected at least 1 of each")
        if problem := audit_folds_problem(self.audit_folds):
            problems.append(problem)
        for item in self.extra_set:
            if "=" not in item:
                problems.append(f"--set {item!r}: expected key=value")
        for key in self.env:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(key)):
                problems.append(f"environment variable name {key!r}: expected letters, digits and _")
        if problems:
            raise LaunchError("; ".join(problems))

    @property
    def run_id(self) -> str:
        return self.run_dir.name


@dataclass(frozen=True)
class JobHandle:
    backend: str  # local | slurm
    backend_id: str | None  # pid, or the Slurm job id (None when sbatch was not found)
    meta: dict  # what re-attaching needs: pid, pgid, start ticks, script
    command: str  # the training command line as run
    state: str  # queued | running
    message: str = ""


def _set_args(job: JobSpec) -> list[str]:
    args: list[str] = []
    if job.batch_seconds is not None:
        args += ["--set", f"max_batch_s={job.batch_seconds:g}"]
    if job.lr is not None:
        args += ["--set", f"lr={job.lr:g}"]
    for item in job.extra_set:
        args += ["--set", item]
    return args


def pretrain_args(job: JobSpec) -> list[str]:
    """The arguments after ``-m training.pretrain`` (the run directory contract)."""
    return ["--export", str(job.export_dir), "--out", str(Path(job.run_dir).resolve()), "--objective", job.objective,
            "--size", job.size, "--steps", str(job.steps), "--device", job.device, *_set_args(job)]


def _torchrun(job: JobSpec) -> str:
    beside = Path(job.python).with_name("torchrun")
    return str(beside) if beside.exists() else "torchrun"


def train_argv(job: JobSpec) -> list[str]:
    """The local training command: plain python for one process, torchrun --standalone for several."""
    if job.gpus > 1:
        return [_torchrun(job), "--standalone", f"--nproc_per_node={job.gpus}", "-m", "training.pretrain",
                *pretrain_args(job)]
    return [job.python, "-m", "training.pretrain", *pretrain_args(job)]


def probe_argv(job: JobSpec, task: str) -> list[str]:
    run_dir = str(Path(job.run_dir).resolve())
    return [job.python, "-m", "training.probe", "--checkpoint", run_dir, "--task", str(task), "--out", run_dir]


def audit_scores_argv(job: JobSpec) -> list[str]:
    """The model audit's scoring step with its default features, so that ``model-audit --folds k`` finds the
    scores current and reuses them."""
    return [job.python, "-m", "training.oos_scores", "--run", str(Path(job.run_dir).resolve()), "--folds",
            str(job.audit_folds), "--device", job.device]


def _env_lines(job: JobSpec) -> list[str]:
    env = {"PYTHONUNBUFFERED": "1", **{str(k): str(v) for k, v in job.env.items()}}
    return [f"export {key}={shlex.quote(value)}" for key, value in env.items()]


def _exit_writer(run_dir: Path) -> list[str]:
    """A shell function that records how the chain ended, atomically (tmp + rename)."""
    target = shlex.quote(str(run_dir / EXIT_NAME))
    return [
        "write_exit() {",
        f'  printf \'{{"stage": "%s", "rc": %d, "ended_at": "%s"}}\\n\' "$1" "$2" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" '
        f"> {target}.tmp && mv {target}.tmp {target}",
        "}",
    ]


def _probe_lines(job: JobSpec, log: str) -> list[str]:
    lines = []
    for task in job.probe_tasks:
        command = shlex.join(probe_argv(job, task))
        lines += [f"printf '[job] %s probe: %s\\n' \"$(date -u +%H:%M:%S)\" {shlex.quote(str(task))} >> {log}",
                  f"{command} >> {log} 2>&1",
                  "rc=$?",
                  f'if [ "$rc" -ne 0 ]; then write_exit {shlex.quote("probe " + Path(task).stem)} "$rc"; exit "$rc"; fi']
    return lines


def _audit_lines(job: JobSpec, log: str) -> list[str]:
    if not job.audit_folds:
        return []
    command = shlex.join(audit_scores_argv(job))
    return [f"printf '[job] %s model-audit scores: %s\\n' \"$(date -u +%H:%M:%S)\" {shlex.quote(command)} >> {log}",
            f"{command} >> {log} 2>&1",
            "rc=$?",
            'if [ "$rc" -ne 0 ]; then write_exit "model-audit scores" "$rc"; exit "$rc"; fi']


def _stages(job: JobSpec) -> str:
    return (f"{len(job.probe_tasks)} probe task(s)"
            + (f", model-audit scores ({job.audit_folds} folds)" if job.audit_folds else ""))


def driver_script(job: JobSpec) -> str:
    """RUN_DIR/job.sh: train, then each probe, then the model-audit scores if asked; output appended to train.log;
    job_exit.json at the end."""
    run_dir = Path(job.run_dir).resolve()
    log = shlex.quote(str(run_dir / LOG_NAME))
    command = shlex.join(train_argv(job))
    return "\n".join([
        "#!/usr/bin/env bash",
        f"# UTS Studio job {job.run_id}: pre-training, then {_stages(job)}.",
        "set -u",
        f"cd {shlex.quote(str(Path(job.workdir).resolve()))}",
        *_env_lines(job),
        *_exit_writer(run_dir),
        f"printf '[job] %s training: %s\\n' \"$(date -u +%H:%M:%S)\" {shlex.quote(command)} >> {log}",
        f"{command} >> {log} 2>&1",
        "rc=$?",
        'if [ "$rc" -ne 0 ]; then write_exit train "$rc"; exit "$rc"; fi',
        *_probe_lines(job, log),
        *_audit_lines(job, log),
        "write_exit done 0",
        "",
    ])


def sbatch_script(job: JobSpec, *, port_base: int = 20000) -> str:
    """RUN_DIR/job.sbatch: one task per node, torchrun on each with c10d rendezvous on the first node.

    ``--node_rank=$SLURM_NODEID`` must be expanded on each node, not in the batch shell (which runs on the
    first node only and would give every node rank 0): the torchrun line is therefore single-quoted for srun.
    The rendezvous port is derived from the job id so that two jobs sharing a first node do not collide.
    """
    run_dir = Path(job.run_dir).resolve()
    log = shlex.quote(str(run_dir / LOG_NAME))
    header = ["#!/bin/bash", f"#SBATCH --job-name=uts-{job.run_id}", f"#SBATCH --nodes={job.nodes}",
              "#SBATCH --ntasks-per-node=1"]
    if job.device == "cuda":
        header.append(f"#SBATCH --gpus-per-node={job.gpus}")
    header += [f"#SBATCH --output={run_dir / LOG_NAME}", "#SBATCH --open-mode=append"]
    if job.partition:
        header.append(f"#SBATCH --partition={job.partition}")
    if job.time_limit:
        header.append(f"#SBATCH --time={job.time_limit}")
    torchrun = shlex.join([_torchrun(job), f"--nnodes={job.nodes}", f"--nproc_per_node={job.gpus}"])
    rest = shlex.join(["-m", "training.pretrain", *pretrain_args(job)])
    per_node = (f"{torchrun} --node_rank=$SLURM_NODEID --rdzv_id=$SLURM_JOB_ID --rdzv_backend=c10d "
                f"--rdzv_endpoint=$MASTER_ADDR:$MASTER_PORT {rest}")
    return "\n".join([
        *header,
        f"# UTS Studio job {job.run_id}: {job.nodes} node(s) x {job.gpus} process(es), then "
        f"{_stages(job)} on the first node.",
        "set -u",
        f"cd {shlex.quote(str(Path(job.workdir).resolve()))}",
        *_env_lines(job),
        *_exit_writer(run_dir),
        'MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n1)',
        f"MASTER_PORT=$(( {port_base} + SLURM_JOB_ID % 20000 ))",
        "export MASTER_ADDR MASTER_PORT",
        f"echo \"[job] $(date -u +%H:%M:%S) training on $SLURM_JOB_NUM_NODES node(s), rendezvous "
        f"$MASTER_ADDR:$MASTER_PORT\" >> {log}",
        f"srun --kill-on-bad-exit=1 bash -c {shlex.quote(per_node)}",
        "rc=$?",
        'if [ "$rc" -ne 0 ]; then write_exit train "$rc"; exit "$rc"; fi',
        *_probe_lines(job, log),
        *_audit_lines(job, log),
        "write_exit done 0",
        "",
    ])


# ---------------------------------------------------------------------------------------------- local backend

# Popen objects of jobs this process started: polling them reaps the child (no zombie that looks alive).
_children: dict[int, subprocess.Popen] = {}


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks since boot) of a process, or None when there is none."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = text[text.rfind(")") + 2:].split()  # the command name may hold spaces and parentheses
    return fields[0], int(fields[19])


def _proc_cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return ""


def _write_script(job: JobSpec, name: str, render) -> Path:
    """Check the job, create its run directory and write its executable script there."""
    job.check()
    Path(job.run_dir).mkdir(parents=True, exist_ok=True)
    script = Path(job.run_dir) / name
    script.write_text(render(job), encoding="utf-8")
    script.chmod(0o755)
    return script


def start_local(job: JobSpec) -> JobHandle:
    """Write RUN_DIR/job.sh and start it in a new session (its own process group); returns at once."""
    run_dir = Path(job.run_dir)
    script = _write_script(job, DRIVER_NAME, driver_script)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **{str(k): str(v) for k, v in job.env.items()}}
    with open(run_dir / LOG_NAME, "ab") as log:
        try:
            process = subprocess.Popen(["bash", str(script.resolve())], cwd=str(job.workdir), env=env,
                                       stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        except OSError as exc:
            raise LaunchError(f"{script}: could not start the job: {exc}") from None
    _children[process.pid] = process
    stat = _proc_stat(process.pid)
    meta = {"pid": process.pid, "pgid": process.pid, "start_ticks": stat[1] if stat else None,
            "script": str(script.resolve())}
    return JobHandle(backend="local", backend_id=str(process.pid), meta=meta, command=shlex.join(train_argv(job)),
                     state="running")


def local_alive(meta: dict) -> bool:
    """Is the job's driver still running? The pid must exist, not be a zombie, have the recorded start time
    and run the recorded script (a pid reused by another process after a reboot does not count)."""
    pid = int(meta["pid"])
    child = _children.get(pid)
    if child is not None and child.poll() is not None:
        del _children[pid]
        return False
    stat = _proc_stat(pid)
    if stat is None:
        return False
    if stat[0] in ("Z", "X"):
        try:  # our own child that nobody waited for: reap it
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        return False
    if meta.get("start_ticks") is not None and stat[1] != int(meta["start_ticks"]):
        return False
    return meta.get("script", "") in _proc_cmdline(pid)


def _kill_group(pgid: int, sig: int) -> bool:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    return True


def cancel_local(meta: dict) -> bool:
    """SIGTERM to the job's process group now, SIGKILL to what is left of it after KILL_GRACE_S (in a
    background timer: the caller never waits). False when the job had already ended."""
    if not local_alive(meta):
        return False
    pgid = int(meta.get("pgid") or meta["pid"])
    sent = _kill_group(pgid, signal.SIGTERM)
    timer = threading.Timer(KILL_GRACE_S, _kill_group, args=(pgid, signal.SIGKILL))
    timer.daemon = True
    timer.start()
    child = _children.get(int(meta["pid"]))
    if child is not None:  # reap the driver as soon as it exits
        threading.Thread(target=child.wait, daemon=True).start()
    return sent


def read_exit(run_dir: Path) -> dict | None:
    path = Path(run_dir) / EXIT_NAME
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except ValueError:
        return None  # written atomically; a broken file is treated as absent and named by the caller's message


# ---------------------------------------------------------------------------------------------- Slurm backend

_SLURM_STATES = {
    "PENDING": "queued", "REQUEUED": "queued", "REQUEUE_HOLD": "queued", "REQUEUE_FED": "queued",
    "SUSPENDED": "queued", "CONFIGURING": "running", "RUNNING": "running", "COMPLETING": "running",
    "STAGE_OUT": "running", "SIGNALING": "running", "RESIZING": "running",
    "COMPLETED": "finished", "CANCELLED": "cancelled", "FAILED": "failed", "TIMEOUT": "failed",
    "NODE_FAIL": "failed", "OUT_OF_MEMORY": "failed", "BOOT_FAIL": "failed", "DEADLINE": "failed",
    "PREEMPTED": "failed", "REVOKED": "failed",
}


def _run_tool(argv: list[str], timeout_s: float = 30) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise LaunchError(f"`{shlex.join(argv)}` did not answer within {timeout_s:.0f} s; is Slurm reachable?") from None
    except OSError as exc:
        raise LaunchError(f"`{shlex.join(argv)}` could not run: {exc}") from None


def parse_sbatch_job_id(stdout: str) -> str:
    """``sbatch --parsable`` prints ``ID`` or ``ID;cluster``; plain sbatch prints ``Submitted batch job ID``."""
    text = stdout.strip()
    match = re.search(r"Submitted batch job (\d+)", text) or re.match(r"^(\d+)(?:;\S+)?$", text.splitlines()[-1]
                                                                      if text else "")
    if not match:
        raise LaunchError(f"sbatch printed {text!r}: expected a job id (`ID`, `ID;cluster` or "
                          "`Submitted batch job ID`)")
    return match.group(1)


def submit_slurm(job: JobSpec) -> JobHandle:
    """Write RUN_DIR/job.sbatch and submit it when sbatch is on PATH (else say how to submit it)."""
    script = _write_script(job, SBATCH_NAME, sbatch_script)
    command = f"sbatch --parsable {script.resolve()}"
    if shutil.which("sbatch") is None:
        return JobHandle(backend="slurm", backend_id=None, meta={"script": str(script.resolve())}, command=command,
                         state="queued",
                         message=f"sbatch is not on PATH here: the script is written; submit it on the cluster with "
                                 f"`sbatch {script.resolve()}`, then import the run directory")
    result = _run_tool(["sbatch", "--parsable", str(script.resolve())], timeout_s=60)
    if result.returncode != 0:
        raise LaunchError(f"sbatch {script}: exit {result.returncode}: {result.stderr.strip() or result.stdout.strip()}")
    job_id = parse_sbatch_job_id(result.stdout)
    return JobHandle(backend="slurm", backend_id=job_id, meta={"script": str(script.resolve())}, command=command,
                     state="queued")


def slurm_state(job_id: str, run_dir: Path) -> tuple[str, str]:
    """(state, detail) from squeue while the job is queued or running, then from sacct; when neither knows the
    job (sacct absent or accounting off), from the job's own job_exit.json."""
    if shutil.which("squeue"):
        result = _run_tool(["squeue", "-h", "-j", str(job_id), "-o", "%T"])
        words = result.stdout.split()
        if result.returncode == 0 and words:
            return _SLURM_STATES.get(words[0].upper(), "running"), f"Slurm: {words[0]}"
    if shutil.which("sacct"):
        result = _run_tool(["sacct", "-n", "-X", "-P", "-j", str(job_id), "-o", "State,ExitCode"])
        lines = [line for line in result.stdout.splitlines() if line.strip()]
        if result.returncode == 0 and lines:
            raw_state, _, exit_code = lines[0].partition("|")
            word = raw_state.split()[0].rstrip("+").upper() if raw_state.split() else "UNKNOWN"
            return _SLURM_STATES.get(word, "failed"), f"Slurm: {raw_state.strip()} (exit {exit_code.strip() or '?'})"
    ended = read_exit(run_dir)
    if ended is not None:
        return ("finished" if ended.get("rc") == 0 else "failed"), f"job_exit.json: {ended.get('stage')} rc {ended.get('rc')}"
    return "unknown", f"Slurm does not know job {job_id} (neither squeue nor sacct lists it)"


def cancel_slurm(job_id: str) -> None:
    if shutil.which("scancel") is None:
        raise LaunchError(f"scancel is not on PATH: cancel Slurm job {job_id} on the cluster (`scancel {job_id}`)")
    result = _run_tool(["scancel", str(job_id)])
    if result.returncode != 0:
        raise LaunchError(f"scancel {job_id}: exit {result.returncode}: {result.stderr.strip()}")


def job_state(backend: str, backend_id: str | None, meta: dict, run_dir: Path) -> tuple[str, str]:
    """The state the backend reports now: queued | running | finished | failed | cancelled | unknown."""
    if backend == "local":
        if not meta.get("pid"):
            return "queued", ""  # recorded, not started yet
        if local_alive(meta):
            return "running", ""
        ended = read_exit(run_dir)
        if ended is None:
            return "failed", "the job's process ended without writing job_exit.json (killed, or the machine restarted)"
        if ended.get("rc") == 0:
            return "finished", ""
        return "failed", f"{ended.get('stage')} exited with status {ended.get('rc')}"
    if backend == "slurm":
        if not backend_id:
            return "queued", ""
        return slurm_state(backend_id, run_dir)
    return "unknown", f"backend {backend!r} is not polled"


def log_tail(run_dir: Path, lines: int = 40, max_bytes: int = 64_000) -> str:
    """The last lines of RUN_DIR/train.log (reads only the end of the file)."""
    path = Path(run_dir) / LOG_NAME
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - max_bytes))
            data = handle.read()
    except FileNotFoundError:
        return ""
    return "\n".join(data.decode("utf-8", errors="replace").splitlines()[-lines:])


def job_script(run_dir: Path) -> str:
    """The script a job runs (RUN_DIR/job.sbatch or job.sh), or "" for a run not launched from here."""
    for name in (SBATCH_NAME, DRIVER_NAME):
        try:
            return (Path(run_dir) / name).read_text(encoding="utf-8")
        except FileNotFoundError:
            continue
    return ""
