"""Two CPU processes under ``accelerate launch``: ranks stay identical, and 2 x B/2 = 1 x B.

Note: with accelerate 1.15, ``accelerate launch --cpu --num_processes 2`` starts *one* process (multi-CPU
needs mpirun there); ``--multi_gpu`` with ``ACCELERATE_USE_CPU=true`` starts two gloo processes.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from training_helpers import tiny_pair

pytestmark = pytest.mark.slow  # two processes under accelerate launch

REPO = Path(__file__).resolve().parent.parent
WORKER = REPO / "tests" / "dist_worker.py"


def run(command, out: Path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([*command, str(WORKER), str(out)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("dist")
    # The launcher of the Python running the tests, wherever its `accelerate` command is (or is not) on PATH.
    run([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
         "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"], root / "two")
    run([sys.executable], root / "one")
    return ([load_file(root / "two" / f"rank{r}.safetensors") for r in (0, 1)],
            load_file(root / "one" / "rank0.safetensors"))


def test_two_processes_really_ran_and_stay_bit_identical(results):
    (rank0, rank1), _ = results
    assert rank0["world"].item() == rank1["world"].item() == 2
    assert rank0.keys() == rank1.keys()
    different = [k for k in rank0 if not torch.equal(rank0[k], rank1[k])]
    assert not different, f"ranks diverged in {different[:5]}"


def test_two_half_batches_give_the_update_of_one_full_batch(results):
    (rank0, _), single = results
    assert single["world"].item() == 1
    G, D = tiny_pair(seed=0)  # rank 0's (and the single process's) starting weights
    start = {f"{name}.{k}": v for name, net in (("G", G), ("D", D)) for k, v in net.state_dict().items()}
    moved = max((single[k] - v).abs().max().item() for k, v in start.items())
    assert moved > 1e-3  # the comparison below is meaningful: training changed the weights a lot
    for key in single:
        if key == "world":
            continue
        assert torch.allclose(rank0[key], single[key], rtol=0, atol=2e-6), key
    assert single["pl_mean"].item() > 0  # the path-length step ran (and R1 ran in the same iterations)
