"""The training loop on tiny networks and toy sources: it learns, regularises, freezes, guards, resumes."""

import json
import math
import os
import re
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from fault_helpers import DISK_FULL, FullDisk, flip_byte, leftovers, truncate
from PIL import Image
from safetensors.torch import load_file
from script_loader import load_script
from training_helpers import RED, SignalOnIteration, SolidSource, resumable_config, tiny_pair

from cocktail.errors import CocktailError
from cocktail.training import STATE_FILE, TrainingConfig, latest_checkpoint, train

REPO = Path(__file__).resolve().parent.parent
# One thread per process: on a busy 2-core machine, OpenMP's spinning threads can make a tiny step 10x slower.
SINGLE_THREAD = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


pytestmark = pytest.mark.usefixtures("single_thread")


def quick(tmp_path, **changes) -> TrainingConfig:
    """A few iterations of batch 4, lazy regularisation due often enough to run."""
    defaults = dict(kimg=0.008, batch_size=4, r1_interval=2, pl_interval=2, ema_kimg=0.01,
                    output_dir=str(tmp_path / "run"), progress=False)
    return TrainingConfig(**{**defaults, **changes})


def distance_to_red(G) -> float:
    z = torch.randn([32, G.z_dim], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        images = G(z, noise_mode="const")
    return (images - torch.tensor(RED).view(1, 3, 1, 1)).square().mean().sqrt().item()


def states(*networks):
    return [{k: v.detach().clone() for k, v in n.state_dict().items()} for n in networks]


@pytest.mark.slow
def test_learns_a_toy_source_with_finite_regularisers(tmp_path):
    G, D = tiny_pair()
    before = distance_to_red(G)
    config = quick(tmp_path, kimg=0.08, batch_size=8, g_lr=0.005, d_lr=0.005, r1_interval=4, ema_kimg=0.02)
    result = train(G, D, SolidSource(), config)
    stats = result.stats
    assert result.kimg == pytest.approx(0.08) and stats["steps"] == 10
    # D separates reals from fakes (chance level is log 4), and G's images move towards the data.
    assert stats["loss/D"] < math.log(4) and stats["scores/real"] > stats["scores/fake"]
    assert distance_to_red(result.G_ema) < 0.7 * before
    assert all(p.is_contiguous() for p in [*result.G.parameters(), *result.D.parameters()])  # layout restored
    for name in ("loss/r1_penalty", "loss/pl_penalty", "pl_mean"):
        assert math.isfinite(stats[name]) and stats[name] > 0, name


def test_frozen_discriminator_parameters_do_not_move(tmp_path):
    G, D = tiny_pair()
    [d_before] = states(D)
    result = train(G, D, SolidSource(), quick(tmp_path), frozen_d_prefixes=("b32.", "b16.conv0."))
    after = result.D.state_dict()
    for name, value in d_before.items():
        frozen = name.startswith(("b32.", "b16.conv0."))
        if name.endswith(("weight", "bias")):
            assert torch.equal(after[name], value) == frozen, name
    assert not any(p.requires_grad for n, p in result.D.named_parameters() if n.startswith("b32."))


def test_g_penalty_enters_the_generator_update(tmp_path):
    anchor = {name: p.detach().clone() for name, p in tiny_pair()[0].named_parameters()}

    def pull_to_anchor(G):
        return 1e4 * sum((p - anchor[n]).square().sum() for n, p in G.named_parameters())

    def drift(G):
        return sum((p.detach() - anchor[n]).norm().item() for n, p in G.named_parameters())

    free = train(*tiny_pair(), SolidSource(), quick(tmp_path / "free", pl_weight=0))
    pulled = train(*tiny_pair(), SolidSource(), quick(tmp_path / "pulled", pl_weight=0),
                   g_penalty=pull_to_anchor)
    assert "loss/G_penalty" in pulled.stats
    assert drift(pulled.G) < 0.5 * drift(free.G)


class NaNAfter(SolidSource):
    """Good images, then NaN ones from the ``bad_from``-th image drawn (0-based) on."""

    def __init__(self, bad_from):
        super().__init__()
        self.bad_from = bad_from

    def sample(self, batch_size, device, generator=None):
        first = self.drawn
        images, labels = super().sample(batch_size, device, generator)
        bad = torch.arange(first, first + batch_size) >= self.bad_from
        return torch.where(bad[:, None, None, None], math.nan, images), labels


def test_non_finite_loss_stops_with_a_clear_error_and_no_checkpoint(tmp_path):
    config = quick(tmp_path, checkpointing_kimg=0.004)
    with pytest.raises(CocktailError, match=r"^training diverged at kimg 0: D loss is nan; "
                       r"last good checkpoint: none$"):
        train(*tiny_pair(), NaNAfter(1), config)
    assert latest_checkpoint(config.output_dir) is None
    # Two good iterations (a checkpoint after each), then NaN: the error names the last one, nothing after it.
    with pytest.raises(CocktailError, match=r"at kimg 0\.008: D loss is nan; last good checkpoint: "
                                            r".*checkpoint-0+8$"):
        train(*tiny_pair(), NaNAfter(8), replace(config, kimg=0.1))
    assert latest_checkpoint(config.output_dir).name == "checkpoint-0000000008"


def test_non_finite_penalty_is_caught_too(tmp_path):
    with pytest.raises(CocktailError, match="G loss is nan"):
        train(*tiny_pair(), SolidSource(), quick(tmp_path), g_penalty=lambda G: torch.tensor(math.nan))


def test_sample_grids_tensorboard_and_classes(tmp_path):
    from accelerate import Accelerator

    G, D = tiny_pair(c_dim=2)
    config = quick(tmp_path, sample_every_kimg=0.004, grid_seeds_per_class=3, pl_weight=0)
    accelerator = Accelerator(log_with="tensorboard", project_dir=config.output_dir)
    source = SolidSource(colours=(RED, (-1.0, -1.0, 1.0)))
    train(G, D, source, config, accelerator=accelerator, class_names=["red", "blue"], description="toy")
    grids = sorted((Path(config.output_dir) / "samples").glob("*.png"))
    assert [g.name for g in grids] == ["kimg000000.000.png", "kimg000000.004.png", "kimg000000.008.png"]
    assert Image.open(grids[-1]).size == (3 * 34 + 2, 2 * 34 + 2)  # 3 seeds x 2 classes of 32 px
    assert list((Path(config.output_dir) / "toy").rglob("events.out.tfevents.*"))
    assert not accelerator.trackers  # finished, so the next stage on this accelerator logs to its own run


def test_bf16_autocast_trains(tmp_path):
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    try:
        accelerator = Accelerator(mixed_precision="bf16", cpu=True)
        result = train(*tiny_pair(), SolidSource(), quick(tmp_path), accelerator=accelerator)
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)
    assert all(math.isfinite(v) for v in result.stats.values())
    assert all(torch.isfinite(p).all() for p in result.G.parameters())


class RecordingScaler(torch.amp.GradScaler):
    def update(self, new_scale=None):
        super().update(new_scale)
        self.history.append(self.get_scale())


def test_fp16_grad_scaler_skips_overflowing_steps_and_is_checkpointed(tmp_path):
    """The scaler path (as under fp16 on GPU): a scale near float32's limit makes some gradients overflow;
    those steps are skipped and the scale backs off, which is not divergence."""
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=True)
    accelerator.scaler = RecordingScaler("cpu", init_scale=2.0**126, growth_interval=1)
    accelerator.scaler.history = []
    config = quick(tmp_path, kimg=0.016, checkpointing_kimg=0.016)
    result = train(*tiny_pair(), SolidSource(), config, accelerator=accelerator)
    history = accelerator.scaler.history
    assert any(later < earlier for earlier, later in zip(history[:-1], history[1:], strict=True))  # skipped
    assert all(torch.isfinite(p).all() for p in [*result.G.parameters(), *result.D.parameters()])
    saved = torch.load(latest_checkpoint(config.output_dir) / "optimizers.pt", weights_only=True)
    assert saved["scaler"]["scale"] == history[-1]


@pytest.mark.parametrize("change, message", [
    (dict(batch_size=6), "multiple of the discriminator's minibatch-std group size"),
    (dict(style_mixing_prob=1.5), "style_mixing_prob"),
    (dict(checkpointing_kimg=0), "checkpointing_kimg must be positive"),
    (dict(resume_from_checkpoint="nowhere"), "nowhere: not a training checkpoint"),
])
def test_bad_settings_fail_before_training(tmp_path, change, message):
    with pytest.raises(CocktailError, match=message):
        train(*tiny_pair(), SolidSource(), quick(tmp_path, **change))


def test_mismatched_source_and_frozen_prefix_fail_clearly(tmp_path):
    class Wrong(SolidSource):
        resolution = 64

    with pytest.raises(CocktailError, match="source gives 64 px"):
        train(*tiny_pair(), Wrong(), quick(tmp_path))
    with pytest.raises(CocktailError, match="'b64.' matches no discriminator parameter"):
        train(*tiny_pair(), SolidSource(), quick(tmp_path), frozen_d_prefixes=("b64.",))
    with pytest.raises(CocktailError, match="source has 2 classes but the generator has 1"):
        train(*tiny_pair(), SolidSource(colours=(RED, RED)), quick(tmp_path))


def test_latest_ignores_what_a_kill_mid_write_leaves(tmp_path):
    config = quick(tmp_path, kimg=0.004, checkpointing_kimg=0.004)
    train(*tiny_pair(), SolidSource(), config)
    root = Path(config.output_dir) / "checkpoints"
    (root / ".tmp-checkpoint-abc").mkdir()  # a save killed before its rename
    (root / ".tmp-checkpoint-abc" / "G.safetensors").write_bytes(b"partial")
    (root / "checkpoint-0000009999").mkdir()  # no state.json: never completed
    assert latest_checkpoint(config.output_dir).name == "checkpoint-0000000004"
    result = train(*tiny_pair(), SolidSource(), replace(config, kimg=0.008, resume_from_checkpoint="latest"))
    assert result.images_seen == 8 and result.stats["steps"] == 2
    assert leftovers(root) == []  # cleaned at start


# -- damaged checkpoints and full disks: a one-line message, then the same weights as an uninterrupted run ---


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """The uninterrupted run the faulted ones must end up equal to: 4 iterations, checkpoints at 8 and 16."""
    output, threads = tmp_path_factory.mktemp("straight"), torch.get_num_threads()
    torch.set_num_threads(1)  # as in the tests (single_thread), which compare weights bit for bit
    try:
        result = train(*tiny_pair(), SolidSource(), resumable_config(output))
    finally:
        torch.set_num_threads(threads)
    return states(result.G, result.G_ema, result.D)


def assert_same_weights(result, expected):
    for network, saved in zip(states(result.G, result.G_ema, result.D), expected, strict=True):
        assert all(torch.equal(network[k], saved[k]) for k in saved)


@pytest.mark.parametrize("fault, file", [(truncate, "G.safetensors"), (flip_byte, "D.safetensors"),
                                         (flip_byte, "state.json")])
def test_a_damaged_newest_checkpoint_is_skipped_and_the_run_resumes_from_the_one_before(
        tmp_path, straight, caplog, capsys, fault, file):
    train(*tiny_pair(), SolidSource(), resumable_config(tmp_path))
    newest = tmp_path / "checkpoints" / "checkpoint-0000000016"
    fault(newest / file)
    capsys.readouterr()
    result = train(*tiny_pair(), SolidSource(), resumable_config(tmp_path, resume=True))
    [warning] = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warning.startswith(f"{newest}: damaged checkpoint ({file}: ") and warning.endswith("skipped and removed")
    assert f"resumed from {newest.parent / 'checkpoint-0000000008'} at kimg 0.008" in capsys.readouterr().out
    assert_same_weights(result, straight)
    assert sorted(p.name for p in newest.parent.iterdir()) == ["checkpoint-0000000008", "checkpoint-0000000016"]


def test_with_no_intact_checkpoint_the_run_starts_again(tmp_path, straight, caplog, capsys):
    train(*tiny_pair(), SolidSource(), resumable_config(tmp_path, kimg=0.008))
    truncate(tmp_path / "checkpoints" / "checkpoint-0000000008" / "G_ema.safetensors")
    capsys.readouterr()
    result = train(*tiny_pair(), SolidSource(), resumable_config(tmp_path, resume=True))
    assert f"no intact checkpoint under {tmp_path / 'checkpoints'}: starting the run again" in capsys.readouterr().out
    assert "checkpoint-0000000008: damaged checkpoint (G_ema.safetensors" in caplog.text
    assert_same_weights(result, straight)


def test_an_explicit_damaged_checkpoint_is_an_error_naming_the_file_before_any_work(tmp_path):
    train(*tiny_pair(), SolidSource(), resumable_config(tmp_path, kimg=0.008))
    checkpoint = tmp_path / "checkpoints" / "checkpoint-0000000008"
    flip_byte(checkpoint / "optimizers.pt")
    steps = []
    config = replace(resumable_config(tmp_path), resume_from_checkpoint=str(checkpoint))
    with pytest.raises(CocktailError, match=rf"^{checkpoint}: damaged checkpoint \(optimizers\.pt: its content "
                                            r"differs from the recorded SHA-256\); resume from an intact one, or "
                                            r"'latest'$"):
        train(*tiny_pair(), SolidSource(), config, g_penalty=lambda G: steps.append(1) or torch.zeros([]))
    assert not steps and checkpoint.is_dir()  # nothing trained, nothing removed


def test_a_checkpoint_from_before_records_listed_files_still_resumes(tmp_path, straight):
    train(*tiny_pair(), SolidSource(), resumable_config(tmp_path, kimg=0.008))
    state = tmp_path / "checkpoints" / "checkpoint-0000000008" / STATE_FILE
    recorded = json.loads(state.read_text())
    state.write_text(json.dumps({k: v for k, v in recorded.items() if k not in ("files", "record_sha256")}))
    assert_same_weights(train(*tiny_pair(), SolidSource(), resumable_config(tmp_path, resume=True)), straight)


def test_a_full_disk_while_checkpointing_is_one_line_and_the_run_resumes_exactly(tmp_path, straight, monkeypatch):
    disk = FullDisk("checkpoint-0000000016").install(monkeypatch)
    with pytest.raises(CocktailError) as raised:
        train(*tiny_pair(), SolidSource(), resumable_config(tmp_path))
    message = str(raised.value)
    assert disk.failures == 1 and "\n" not in message
    assert re.fullmatch(rf"could not write the checkpoint {tmp_path}/checkpoints/checkpoint-0000000016 "
                        rf"\({re.escape(DISK_FULL)}\); [0-9.]+ (bytes|KiB|MiB|GiB|TiB) free there; run it again "
                        r"with --resume_from_checkpoint latest to resume", message), message
    assert leftovers(tmp_path) == [] and latest_checkpoint(tmp_path).name == "checkpoint-0000000008"
    disk.free_space()
    assert_same_weights(train(*tiny_pair(), SolidSource(), resumable_config(tmp_path, resume=True)), straight)


def run_worker(output_dir, *args, expect):
    command = [sys.executable, str(REPO / "tests" / "train_worker.py"), str(output_dir), *args]
    done = subprocess.run(command, cwd=REPO, env=SINGLE_THREAD, capture_output=True, text=True, timeout=180)
    assert done.returncode == expect, done.stdout[-2000:] + done.stderr[-2000:]
    return done


@pytest.mark.slow
def test_sigterm_checkpoints_and_a_killed_run_resumes_exactly(tmp_path):
    """An uninterrupted run vs. one stopped by SIGTERM, resumed, SIGKILLed between checkpoints, resumed.

    Checkpoints every 2 iterations (8 images), 4 iterations in all; the signals are sent by the worker to
    its own process during a G step, i.e. in the middle of an iteration, and in the middle of the chunk of
    reals drawn ahead (so resuming must redraw it and skip what was used).
    """
    straight, broken = tmp_path / "straight", tmp_path / "broken"
    never = SignalOnIteration(0, signal.SIGTERM)  # the same zero penalty as the worker's, never signalling
    train(*tiny_pair(), SolidSource(), resumable_config(straight), g_penalty=never)
    # SIGTERM during the 1st iteration: it finishes, a checkpoint is written, the process exits 128+15.
    done = run_worker(broken, "--signal_at", "1", "TERM", expect=128 + signal.SIGTERM)
    assert "SIGTERM received at kimg 0.004" in done.stdout
    assert latest_checkpoint(broken).name == "checkpoint-0000000004"
    # Resume from it (iteration 2 ends at checkpoint 8), SIGKILL during iteration 4: before checkpoint 16.
    run_worker(broken, "--resume", "--signal_at", "3", "KILL", expect=-signal.SIGKILL)
    assert latest_checkpoint(broken).name == "checkpoint-0000000008"
    done = run_worker(broken, "--resume", expect=0)
    assert "resumed from" in done.stdout and "finished at kimg 0.016" in done.stdout
    for name in ("checkpoint-0000000008", "checkpoint-0000000016"):
        a, b = straight / "checkpoints" / name, broken / "checkpoints" / name
        steps = [json.loads((folder / "state.json").read_text())["step"] for folder in (a, b)]
        assert steps[0] == steps[1]
        for network in ("G", "G_ema", "D"):
            wa, wb = load_file(a / f"{network}.safetensors"), load_file(b / f"{network}.safetensors")
            assert all(torch.equal(wa[k], wb[k]) for k in wa), (name, network)


def write_toy_images(folder: Path, count=12):
    """Solid colours with a square, a stand-in for a user's image folder."""
    folder.mkdir(parents=True)
    generator = torch.Generator().manual_seed(0)
    for i in range(count):
        colour = tuple(int(c) for c in torch.randint(0, 256, [3], generator=generator))
        image = Image.new("RGB", (48, 48), colour)
        image.paste((255 - colour[0], 255 - colour[1], 255 - colour[2]), (8 + i, 8, 24 + i, 24))
        image.save(folder / f"{i:03d}.png")


@pytest.mark.slow
def test_train_source_script_writes_a_loadable_model(tmp_path):
    from cocktail.union import UnionModel

    write_toy_images(tmp_path / "shapes")
    out = tmp_path / "model"
    command = [sys.executable, "scripts/train_source.py", "--data_dir", str(tmp_path / "shapes"),
               "--output_dir", str(out), "--preset", "tiny", "--resolution", "32", "--kimg", "0.016",
               "--batch_size", "4", "--sample_every_kimg", "0.008", "--no_progress"]
    done = subprocess.run(command, cwd=REPO, env=SINGLE_THREAD, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    model = UnionModel.from_pretrained(out)
    assert model.class_names == ["shapes"] and model.discriminator is not None
    assert model.provenance["kimg"] == {"train": 0.016}
    recipe = model.provenance["recipe"]  # what decided the weights, not where samples and checkpoints went
    assert recipe["batch_size"] == 4 and recipe["seed"] == 0 and recipe["architecture"]["z_dim"] > 0
    assert not {"kimg", "output_dir", "sample_every_kimg", "checkpointing_kimg", "progress"} & recipe.keys()
    assert (out / "samples.png").is_file() and (out / "README.md").is_file()
    assert len(list((tmp_path / "model-training" / "samples").glob("*.png"))) == 3
    assert len(model.sample(0, seeds=[1, 2])) == 2

    missing = subprocess.run([*command[:3], str(tmp_path / "nothing"), *command[4:]], cwd=REPO,
                             env=SINGLE_THREAD, capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and missing.stderr.startswith("error: ") and "nothing" in missing.stderr


def test_a_full_disk_while_train_source_writes_its_model_says_how_to_go_on(tmp_path, monkeypatch):
    from cocktail.union import UnionModel

    write_toy_images(tmp_path / "shapes")
    out, script = tmp_path / "model", load_script("train_source")
    args = ["--data_dir", str(tmp_path / "shapes"), "--output_dir", str(out), "--preset", "tiny", "--resolution",
            "32", "--kimg", "0.008", "--batch_size", "4", "--checkpointing_kimg", "0.008", "--no_progress",
            "--cpu_threads", "1"]
    disk = FullDisk(".tmp-model-").install(monkeypatch)
    with pytest.raises(CocktailError, match=rf"^could not write the model folder {out} \({re.escape(DISK_FULL)}\); "
                                            r".+ free there; run it again with --resume_from_checkpoint latest to "
                                            r"go on from checkpoint-0000000008$"):
        script.main(args)
    assert not out.exists() and leftovers(tmp_path) == []
    disk.free_space()
    assert script.main([*args, "--resume_from_checkpoint", "latest"]) == 0
    trained = load_file(tmp_path / "model-training" / "checkpoints" / "checkpoint-0000000008" / "G_ema.safetensors")
    saved = UnionModel.from_pretrained(out).generator.state_dict()
    assert all(torch.equal(saved[k], trained[k]) for k in trained)
