"""Faults over one small merge, as a user meets them: does it always end in the weights of an uninterrupted run?

    python benchmarks/faults.py --kills 10                      # 10 SIGKILLs at random moments, damage between
    python benchmarks/faults.py --kills 10 --full_disks 3       # and 3 runs on a disk that fills up midway
    python benchmarks/faults.py --kills 6 --full_disks 4 --no_checkpoints   # the disk fills on model folders

One uninterrupted ``scripts/merge.py`` (two shipped example sources, short stages, a checkpoint every few
iterations) gives the reference union. Then the same command is run again and again into another folder:

* each run is SIGKILLed once it has reached its stages, at a random moment within twice its share of what is
  left (the reference's time for the work not yet on disk, over the kills still to come), so that the kills
  spread over the whole merge; a run that finishes first is not counted as a kill;
* before each rerun, one random fault of the files on disk: the newest checkpoint of an unfinished stage cut
  to a third (``G.safetensors``) or with a byte flipped in one of its files, a byte flipped in a finished
  stage's model, or nothing;
* ``--full_disks``: the folder is a tmpfs in a private mount namespace (``unshare``, which needs unprivileged
  user namespaces), shrunk before such a run to what it holds plus 2-30 % of what the reference left on disk,
  so the disk fills at a random point; the run must end in one ``error:`` line, status 2, and the next run gets
  the space back.

Then the command runs to its end. Passed when no run printed a traceback, every failed run printed exactly
one ``error:`` line, every damage was named in a warning, no ``.tmp-*`` is left, and the union's tensors equal
the reference's bit for bit.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parent.parent

SOURCES = ("example:trouser", "example:sneaker")
STAGE_IMAGES = 128  # every stage: --root_kimg and --merge_kimg
SETTINGS = ["--root_kimg", "0.128", "--merge_kimg", "0.128", "--batch_size", "8", "--cpu_threads", "1"]
CHECKPOINTING = ["--checkpointing_kimg", "0.032"]
INSIDE_NAMESPACE = "COCKTAIL_FAULTS_NAMESPACE"  # set when this script has re-run itself under unshare


def merge_command(output: Path, settings: list[str]) -> list[str]:
    return [sys.executable, str(ROOT / "scripts" / "merge.py"), *SOURCES, *settings, "--output_dir", str(output)]


class Run:
    """One merge process; its output is read as it comes."""

    def __init__(self, output: Path, settings: list[str]):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"}
        self.started = time.perf_counter()
        self.first_stage: float | None = None
        self.stdout, self.stderr = [], []
        self.process = subprocess.Popen(merge_command(output, settings), cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True, errors="replace")
        self.readers = [threading.Thread(target=self._read, args=(self.process.stdout, self.stdout, True)),
                        threading.Thread(target=self._read, args=(self.process.stderr, self.stderr, False))]
        for reader in self.readers:
            reader.start()

    def _read(self, stream, lines: list, watch: bool) -> None:
        for line in stream:
            if watch and self.first_stage is None and line.startswith("stage "):
                self.first_stage = time.perf_counter() - self.started
            lines.append(line)

    def reach_stages(self) -> bool:
        """Wait until the run prints its first stage line (imports and sources loaded); False if it ended first."""
        while self.first_stage is None and self.process.poll() is None:
            time.sleep(0.02)
        return self.first_stage is not None

    def wait(self, timeout: float | None = None) -> int | None:
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        for reader in self.readers:
            reader.join()
        return self.process.returncode

    def kill(self) -> None:
        self.process.kill()
        self.wait()

    def verdict(self) -> dict:
        """What this run showed: status, its error line(s), tracebacks, warnings about damage, resumes."""
        err = "".join(self.stderr)
        lines = [line.strip() for line in err.splitlines()]
        return {"status": self.process.returncode, "seconds": round(time.perf_counter() - self.started, 1),
                "errors": [line for line in lines if line.startswith("error:")],
                "traceback": "Traceback" in err,
                "warnings": [line for line in lines if "damaged" in line],
                "resumed": [line.strip() for line in self.stdout if line.startswith("resumed from")]}


class SmallDisk:
    """A tmpfs mounted on ``folder`` (inside this process's private mount namespace), resized at will."""

    ROOMY = 4 << 30

    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir(parents=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={self.ROOMY >> 10}k", "tmpfs", str(folder)], check=True)

    def fill_up_within(self, extra: int) -> None:
        """Leave ``extra`` bytes free."""
        stat = os.statvfs(self.folder)
        self._resize((stat.f_blocks - stat.f_bfree) * stat.f_frsize + extra)

    def free_space(self) -> None:
        self._resize(self.ROOMY)

    def _resize(self, size: int) -> None:
        subprocess.run(["mount", "-o", f"remount,size={size >> 10}k", str(self.folder)], check=True)


def damage_files(output: Path, rng: random.Random) -> tuple[str, str | None]:
    """One random fault of what the last run left: the newest checkpoint of an unfinished stage cut or altered, a
    finished stage's model altered, or nothing. Returns what was done and what a warning about it must name."""
    stages = sorted(p for p in output.glob("stages/*/*") if p.is_dir())
    finished = [stage for stage in stages if (stage / "stage.json").is_file()]
    unfinished = [stage for stage in stages if stage not in finished]
    checkpoints = sorted((c for stage in unfinished for c in stage.glob("checkpoints/checkpoint-*")),
                         key=lambda p: p.stat().st_mtime)
    choice = rng.choice(["none"] + (["truncate", "flip"] if checkpoints else []) + (["stage"] if finished else []))
    if choice == "truncate":
        path = checkpoints[-1] / "G.safetensors"
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 3])
    elif choice in ("flip", "stage"):
        if choice == "flip":
            path = checkpoints[-1] / rng.choice(["G.safetensors", "G_ema.safetensors", "D.safetensors",
                                                 "optimizers.pt", "rng.safetensors", "state.json"])
        else:
            path = next((rng.choice(finished) / "model" / "generator").glob("*.safetensors"))
        data = bytearray(path.read_bytes())
        data[rng.randrange(len(data))] ^= 0xFF
        path.write_bytes(bytes(data))
    else:
        return "none", None
    named = f"stage {path.parents[2].name.rsplit('-', 1)[0]}: its saved model is damaged" if choice == "stage" \
        else f"{path.parent}: damaged checkpoint"
    return f"{choice} {path.relative_to(output)}", named


def left_to_do(output: Path, stages: list[str]) -> float:
    """The share of the merge still to train, from what is on disk: finished stages, the newest checkpoint of
    the others (damaged or not)."""
    done = 0.0
    for name in stages:
        folder = next(output.glob(f"stages/*/{name}"), None)
        if folder is not None and (folder / "stage.json").is_file():
            done += 1
        elif folder is not None and (checkpoints := sorted(folder.glob("checkpoints/checkpoint-*"))):
            done += int(checkpoints[-1].name.split("-")[1]) / STAGE_IMAGES
    return 1 - done / len(stages)


def union_tensors(output: Path) -> dict[str, torch.Tensor]:
    return {f"{part}/{name}": tensor for part in ("generator", "discriminator")
            for file in sorted((output / "union" / part).glob("*.safetensors"))
            for name, tensor in load_file(file).items()}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kills", type=int, default=10, help="SIGKILLs that land before the run ends")
    p.add_argument("--full_disks", type=int, default=0, help="runs on a disk that fills at a random point")
    p.add_argument("--no_checkpoints", action="store_true",
                   help="stages without checkpoints: a kill restarts the stage, a full disk hits models and the union")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work_dir", help="default: a temporary folder, removed at the end")
    p.add_argument("--json", help="write the runs and the result here")
    args = p.parse_args(argv)
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="cocktail-faults-"))
    try:
        if args.full_disks and INSIDE_NAMESPACE not in os.environ:
            # A disk of our own to fill: this user may mount a tmpfs in a mount namespace of its own.
            command = ["unshare", "--user", "--map-root-user", "--mount", sys.executable, __file__, *argv,
                       "--work_dir", str(work)]
            return subprocess.run(command, env={**os.environ, INSIDE_NAMESPACE: "1"}).returncode
        return run_faults(args, work)
    finally:
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)


def run_faults(args, work: Path) -> int:
    """The reference run, the faulted runs, the final run; prints each and the result; 0 when passed."""
    rng = random.Random(args.seed)
    settings = SETTINGS + ([] if args.no_checkpoints else CHECKPOINTING)
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, torch {torch.__version__}, "
          f"one thread per run; {' '.join(SOURCES)} {' '.join(settings)}", flush=True)
    reference = Run(work / "reference", settings)
    assert reference.wait() == 0, "".join(reference.stderr)[-3000:]
    total, start = time.perf_counter() - reference.started, reference.first_stage
    print(f"reference: {total:.1f} s, first stage line after {start:.1f} s", flush=True)

    stages = sorted(p.name for p in (work / "reference").glob("stages/*/*"))
    written = sum(p.stat().st_size for p in (work / "reference").rglob("*") if p.is_file())
    output, runs, damaged = work / "faulted", [], []
    disk = SmallDisk(output) if args.full_disks else None
    kills = full_disks = 0
    status = None
    while (kills < args.kills or full_disks < args.full_disks) and status != 0:
        fault, named = damage_files(output, rng) if runs else ("none", None)
        if named is not None:
            damaged.append(named)
        if full_disks < args.full_disks and (kills >= args.kills or rng.random() < 0.3):
            disk.fill_up_within(int(rng.uniform(0.02, 0.3) * written))
            run = Run(output, settings)
            status = run.wait()
            disk.free_space()
            kind, full_disks = ("full disk", full_disks + 1) if status == 2 else ("finished", full_disks)
        else:
            run = Run(output, settings)
            share = left_to_do(output, stages) * (total - start) / (args.kills - kills + 1)
            if run.reach_stages() and run.wait(timeout=rng.uniform(0, 2 * share)) is None:
                run.kill()
                kind, kills = "killed", kills + 1
            else:
                kind = "finished"
            status = run.wait()
        runs.append({"run": kind, "fault before": fault, **run.verdict()})
        print(json.dumps(runs[-1]), flush=True)
    if status != 0:
        final = Run(output, settings)
        status = final.wait()
        runs.append({"run": "final", "fault before": "none", **final.verdict()})
        print(json.dumps(runs[-1]), flush=True)

    expected, got = union_tensors(work / "reference"), union_tensors(output) if status == 0 else {}
    identical = bool(got) and got.keys() == expected.keys() and all(torch.equal(got[k], expected[k]) for k in expected)
    leftovers = sorted(str(p.relative_to(work)) for p in work.rglob(".tmp-*"))
    failed = [r for r in runs if r["status"] not in (0, -signal.SIGKILL)]
    result = {
        "kills": kills, "full_disks": full_disks, "runs": len(runs),
        "damage_injected": len(damaged),
        "damage_named_in_a_warning": sum(any(name in w for r in runs for w in r["warnings"]) for name in damaged),
        "tracebacks": sum(r["traceback"] for r in runs),
        "failed_runs_with_one_error_line": f"{sum(len(r['errors']) == 1 for r in failed)}/{len(failed)}",
        "leftovers": leftovers, "union_bit_identical": identical, "reference_seconds": round(total, 1),
        "total_seconds": round(sum(r["seconds"] for r in runs), 1),
    }
    print(json.dumps(result, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps({"result": result, "runs": runs}, indent=1) + "\n")
    passed = (identical and not leftovers and not result["tracebacks"]
              and result["damage_named_in_a_warning"] == len(damaged)
              and all(len(r["errors"]) == 1 and r["status"] == 2 for r in failed))
    print("PASSED" if passed else "FAILED")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
