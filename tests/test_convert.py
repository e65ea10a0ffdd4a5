"""Import of StyleGAN2-ADA ``.pkl`` snapshots: exact weights, and no code from the file ever runs.

The snapshots here are built like real ones: networks pickle as calls to
``torch_utils.persistence._reconstruct_persistent_obj(meta)`` with ``meta = {type, version,
module_src, class_name, state}`` and ``state`` a module ``__dict__`` (``_parameters``, ``_buffers``,
``_modules``, ``_init_kwargs`` as ``dnnlib.util.EasyDict``, numpy ``weight_gain`` scalars…), holding
the reference tensors of the parity fixtures. Stand-ins for those two modules exist only while
pickling; the converter must then read the files without them.
"""

import collections
import contextlib
import json
import os
import pickle
import struct
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from fault_helpers import DISK_FULL, FullDisk, leftovers
from safetensors.torch import load_file

from cocktail.convert import convert_stylegan2_pkl, load_stylegan2_pkl
from cocktail.errors import CocktailError
from cocktail.union import UnionModel

FIXTURES = Path(__file__).parent / "fixtures" / "stylegan2_parity"
REPO = Path(__file__).parent.parent
TOLERANCE = 1e-4
BUFFER_NAMES = {"resample_filter", "noise_const", "w_avg"}
STAND_IN_MODULES = ("torch_utils", "torch_utils.persistence", "dnnlib", "dnnlib.util")


@contextlib.contextmanager
def stylegan2_ada_modules():
    """Stand-ins for the two modules real snapshots name, so that pickle writes the same globals."""
    persistence = types.ModuleType("torch_utils.persistence")
    util = types.ModuleType("dnnlib.util")

    def _reconstruct_persistent_obj(meta):
        raise AssertionError("the converter must never call the real persistence hook")

    _reconstruct_persistent_obj.__module__ = persistence.__name__
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    persistence._reconstruct_persistent_obj = _reconstruct_persistent_obj

    class EasyDict(dict):
        def __getattr__(self, name):
            try:
                return self[name]
            except KeyError:
                raise AttributeError(name) from None

        def __setattr__(self, name, value):
            self[name] = value

    EasyDict.__module__, EasyDict.__qualname__ = util.__name__, "EasyDict"
    util.EasyDict = EasyDict
    modules = {"torch_utils": types.ModuleType("torch_utils"), "torch_utils.persistence": persistence,
               "dnnlib": types.ModuleType("dnnlib"), "dnnlib.util": util}
    assert not set(modules) & set(sys.modules)
    sys.modules.update(modules)
    try:
        yield
    finally:
        for name in modules:
            del sys.modules[name]


class Persistent:
    """Pickles like a StyleGAN2-ADA persistent network: a call of the hook with the class metadata."""

    def __init__(self, class_name, state, module_src):
        self.meta = dict(type="class", version=6, module_src=module_src, class_name=class_name, state=state)

    def __reduce__(self):
        return sys.modules["torch_utils.persistence"]._reconstruct_persistent_obj, (self.meta,)


class Payload:
    """Pickles as a call of ``function(*args)``: what an attacker puts in a checkpoint."""

    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


def easydict(value):
    if isinstance(value, dict):
        return sys.modules["dnnlib.util"].EasyDict({k: easydict(v) for k, v in value.items()})
    return value


def persistent_module(class_name, tensors, init_kwargs=None, module_src="", extra_state=None):
    """A module tree from a flat state dict; a leaf named like a buffer becomes a buffer, else a Parameter."""
    parameters, buffers, children = collections.OrderedDict(), collections.OrderedDict(), {}
    for name, tensor in tensors.items():
        head, _, rest = name.partition(".")
        if rest:
            children.setdefault(head, {})[rest] = tensor
        elif head in BUFFER_NAMES:
            buffers[head] = tensor.clone()
        else:
            parameters[head] = torch.nn.Parameter(tensor.clone())
    state = {
        "training": False, "_parameters": parameters, "_buffers": buffers, "_non_persistent_buffers_set": set(),
        "_backward_hooks": collections.OrderedDict(), "_forward_hooks": collections.OrderedDict(),
        "_modules": collections.OrderedDict(
            (name, persistent_module("Layer", sub, module_src=module_src)) for name, sub in children.items()),
        "_init_args": (), "weight_gain": np.float64(0.125), "use_fp16": np.bool_(False),
    }
    if init_kwargs is not None:
        state["_init_kwargs"] = easydict(init_kwargs)
    state.update(extra_state or {})
    return Persistent(class_name, state, module_src)


def reference_kwargs(tag):
    """Fresh (G, D) constructor arguments of a parity configuration, D's as a training run records them."""
    config = json.loads((FIXTURES / f"{tag}_config.json").read_text())
    d_kwargs = {**config["discriminator_kwargs"], "architecture": "resnet", "block_kwargs": {},
                "mapping_kwargs": {}}
    return config["generator_kwargs"], d_kwargs


def snapshot(tag, g_kwargs=None, d_kwargs=None, module_src="", g_extra_state=None):
    """The dict a StyleGAN2-ADA training run pickles; G (not EMA) deliberately differs from G_ema."""
    g_tensors, d_tensors = load_file(FIXTURES / f"{tag}_G.safetensors"), load_file(FIXTURES / f"{tag}_D.safetensors")
    default_g, default_d = reference_kwargs(tag)
    g_kwargs = default_g if g_kwargs is None else g_kwargs
    d_kwargs = default_d if d_kwargs is None else d_kwargs
    return {
        "G": persistent_module("Generator", {k: v * 0.5 for k, v in g_tensors.items()}, g_kwargs, module_src),
        "D": persistent_module("Discriminator", d_tensors, d_kwargs, module_src),
        "G_ema": persistent_module("Generator", g_tensors, g_kwargs, module_src, g_extra_state),
        "augment_pipe": persistent_module("AugmentPipe", {"p": torch.zeros([])}, {"xflip": 1}, module_src),
        "training_set_kwargs": easydict({"class_name": "training.dataset.ImageFolderDataset",
                                         "path": "~/datasets/cats.zip", "use_labels": tag != "uncond"}),
    }


def write_snapshot(path, protocol=3, **kwargs):
    with stylegan2_ada_modules():
        data = snapshot(**kwargs)
        path.write_bytes(pickle.dumps(data, protocol=protocol))
    assert not set(STAND_IN_MODULES) & set(sys.modules)
    return path


@pytest.fixture(scope="module")
def snapshots(tmp_path_factory):
    """One file per parity configuration, with the two pickle protocols real snapshots use (3 and 4).

    The protocol-3 one names numpy scalars as numpy 1.x did (``numpy.core``), like snapshots of 2020-2022.
    """
    folder = tmp_path_factory.mktemp("snapshots")
    paths = {tag: write_snapshot(folder / f"{tag}.pkl", protocol=protocol, tag=tag)
             for tag, protocol in (("uncond", 3), ("cond3", 4))}
    data = paths["uncond"].read_bytes()
    numpy1 = data.replace(b"cnumpy._core.multiarray\nscalar\n", b"cnumpy.core.multiarray\nscalar\n")
    assert numpy1 != data
    paths["uncond"].write_bytes(numpy1)
    return paths


def assert_matches_reference(tag, G, D):
    io = load_file(FIXTURES / f"{tag}_io.safetensors")
    c = io["c"] if G.c_dim > 0 else None
    with torch.no_grad():
        outputs = {"ws_psi1": G.mapping(io["z"], c),
                   "img_psi1_noise_const": G.synthesis(io["ws_psi1"], noise_mode="const"),
                   "d_logits_on_img_psi1": D(io["img_psi1_noise_const"], c)}
    for name, value in outputs.items():
        error = (value - io[name]).abs().max().item()
        assert error <= TOLERANCE, f"{tag} {name}: max abs error {error}"


# -- faithful import -------------------------------------------------------------------------------


@pytest.mark.parametrize("tag", ["uncond", "cond3"])
def test_loaded_networks_reproduce_reference_outputs(snapshots, tag):
    networks = load_stylegan2_pkl(snapshots[tag])
    G_ema, D = networks["G_ema"], networks["D"]
    assert G_ema.config.conv_clamp == 256 and G_ema.c_dim == D.c_dim == (3 if tag == "cond3" else 0)
    assert_matches_reference(tag, G_ema, D)
    reference = load_file(FIXTURES / f"{tag}_G.safetensors")
    assert torch.equal(networks["G"].state_dict()["mapping.fc0.weight"], reference["mapping.fc0.weight"] * 0.5)


@pytest.mark.parametrize("tag", ["uncond", "cond3"])
def test_converted_folder_loads_and_reproduces_reference(snapshots, tmp_path, tag):
    folder = convert_stylegan2_pkl(snapshots[tag], tmp_path / "model", write_card=False)
    model = UnionModel.from_pretrained(folder)
    assert_matches_reference(tag, model.generator, model.discriminator)
    expected = [tag] if tag == "uncond" else ["class0", "class1", "class2"]
    assert model.class_names == expected
    source = model.provenance["sources"][0]
    assert source["spec"] == str(snapshots[tag]) and source["name"] == (tag if tag == "uncond" else "cond3")
    assert len(source["sha256"]) == 64


def test_checkpoint_with_fp16_layers_generates_in_float32_on_cpu(tmp_path):
    """Official models have num_fp16_res=4: the file keeps it (for CUDA), a CPU computes in float32."""
    g_kwargs, d_kwargs = reference_kwargs("uncond")
    g_kwargs["synthesis_kwargs"]["num_fp16_res"] = d_kwargs["num_fp16_res"] = 4
    path = write_snapshot(tmp_path / "fp16.pkl", tag="uncond", g_kwargs=g_kwargs, d_kwargs=d_kwargs)
    model = UnionModel.from_pretrained(convert_stylegan2_pkl(path, tmp_path / "model", write_card=False))
    G, D = model.generator, model.discriminator
    assert G.config.num_fp16_res == D.config.num_fp16_res == 4
    assert [b.use_low_precision for b in G.synthesis.blocks()] == [False, True, True, True]
    assert G.runs_float16("cuda") and D.runs_float16("cuda") and not G.runs_float16("cpu")
    seen = []
    hook = G.synthesis.b32.register_forward_hook(lambda module, args, out: seen.append(out[0].dtype))
    assert_matches_reference("uncond", G, D)  # the float32 reference, to 1e-4 (float16 blocks: ~1e-2)
    hook.remove()
    assert seen == [torch.float32]


def test_class_names_and_spec_are_recorded(snapshots, tmp_path):
    folder = convert_stylegan2_pkl(snapshots["uncond"], tmp_path / "cats", class_names=["cat"],
                                   spec="someone/cats@v1", write_card=False)
    index = json.loads((folder / "union.json").read_text())
    assert index["class_names"] == ["cat"]
    assert index["provenance"]["sources"][0]["name"] == "cat"
    assert index["provenance"]["sources"][0]["spec"] == "someone/cats@v1"
    with pytest.raises(CocktailError, match="uncond.pkl: 2 class names"):
        convert_stylegan2_pkl(snapshots["uncond"], tmp_path / "two", class_names=["cat", "dog"], write_card=False)


def test_config_falls_back_to_tensor_shapes(tmp_path):
    path = write_snapshot(tmp_path / "no_kwargs.pkl", tag="cond3", g_kwargs={}, d_kwargs={})
    networks = load_stylegan2_pkl(path)
    g, d = networks["G_ema"].config, networks["D"].config
    assert (g.z_dim, g.c_dim, g.w_dim, g.mapping_layers, g.img_resolution, g.channel_base, g.channel_max) == (
        32, 3, 32, 2, 32, 512, 64)
    assert (d.c_dim, d.img_resolution, d.channel_base, d.channel_max, d.cmap_dim, d.mapping_layers) == (
        3, 32, 512, 64, 64, 8)
    assert_matches_reference("cond3", networks["G_ema"], networks["D"])  # conv_clamp never binds here


def test_full_constructor_arguments_of_tensorflow_converted_snapshots_are_accepted(tmp_path):
    """Every option spelled out, as in snapshots converted from TensorFlow (unused D mapping: lr 0.1)."""
    g_kwargs, d_kwargs = reference_kwargs("uncond")
    g_kwargs["mapping_kwargs"].update(embed_features=None, layer_features=None, activation="lrelu",
                                      lr_multiplier=0.01, w_avg_beta=0.995)
    g_kwargs["synthesis_kwargs"].update(architecture="skip", resample_filter=[1, 3, 3, 1], use_noise=True,
                                        activation="lrelu")
    d_kwargs.update(cmap_dim=None, block_kwargs={"activation": "lrelu", "resample_filter": [1, 3, 3, 1],
                                                 "freeze_layers": 0},
                    mapping_kwargs={"num_layers": 0, "activation": "lrelu", "lr_multiplier": 0.1},
                    epilogue_kwargs={"mbstd_group_size": 4, "mbstd_num_channels": 1, "activation": "lrelu"})
    path = write_snapshot(tmp_path / "from_tf.pkl", tag="uncond", g_kwargs=g_kwargs, d_kwargs=d_kwargs)
    networks = load_stylegan2_pkl(path)
    assert_matches_reference("uncond", networks["G_ema"], networks["D"])


@pytest.mark.parametrize(("g_change", "d_change", "message"), [
    ({"synthesis_kwargs": {"architecture": "orig"}}, {}, r"G has synthesis_kwargs.architecture='orig'"),
    ({}, {"architecture": "skip"}, r"D has architecture='skip'; only .*'resnet'"),
    ({"synthesis_kwargs": {"channel_max": 32}}, {}, r"no_match.pkl: G does not match .* shape: "),
])
def test_unsupported_or_inconsistent_networks_are_refused(tmp_path, g_change, d_change, message):
    g_kwargs, d_kwargs = reference_kwargs("uncond")
    for kwargs, change in ((g_kwargs, g_change), (d_kwargs, d_change)):
        for key, value in change.items():
            kwargs[key] = {**kwargs[key], **value} if isinstance(value, dict) else value
    path = write_snapshot(tmp_path / "no_match.pkl", tag="uncond", g_kwargs=g_kwargs, d_kwargs=d_kwargs)
    with pytest.raises(CocktailError, match=message):
        load_stylegan2_pkl(path)


# -- nothing from the file runs ----------------------------------------------------------------------


def write_marker_code(marker):
    return f"open({str(marker)!r}, 'w').write('pwned')"


def test_embedded_module_source_is_never_run(tmp_path):
    marker = tmp_path / "marker"
    code = write_marker_code(marker)
    path = write_snapshot(tmp_path / "with_src.pkl", tag="uncond", module_src=code)
    networks = load_stylegan2_pkl(path)
    assert not marker.exists()
    assert_matches_reference("uncond", networks["G_ema"], networks["D"])
    exec(compile(code, "module_src", "exec"), {})  # the payload is live: running it would have left the marker
    assert marker.exists()


def test_global_os_system_is_refused(tmp_path):
    marker = tmp_path / "marker"
    command = f"touch {marker}".encode()
    # Protocol 2 header, GLOBAL 'os system', MARK, BINUNICODE command, TUPLE, REDUCE, STOP.
    payload = b"\x80\x02cos\nsystem\n(X" + struct.pack("<I", len(command)) + command + b"tR."
    path = tmp_path / "checkpoint.pkl"
    path.write_bytes(payload)
    with pytest.raises(CocktailError, match=r"checkpoint.pkl: refused to load global 'os.system' \(only"):
        load_stylegan2_pkl(path)
    assert not marker.exists()


@pytest.mark.parametrize("attack", ["eval", "storage"])
def test_payload_hidden_in_network_state_is_refused(tmp_path, attack):
    marker = tmp_path / "marker"
    if attack == "eval":
        evil, refused = Payload(eval, write_marker_code(marker)), "builtins.eval"
    else:  # tensor-storage bytes that are themselves a malicious pickle: torch.load must be weights-only
        storage_bytes = pickle.dumps(Payload(os.system, f"touch {marker}"), protocol=2)
        evil, refused = Payload(torch.storage._load_from_bytes, storage_bytes), "Weights only load failed"
    path = write_snapshot(tmp_path / "evil.pkl", tag="uncond", g_extra_state={"evil": evil})
    with pytest.raises(CocktailError, match=refused):
        load_stylegan2_pkl(path)
    assert not marker.exists()


@pytest.mark.parametrize(("content", "message"), [
    (None, "truncated"),
    (b"", "no pickle header"),
    (b"G_ema = 'a text file'\n", "no pickle header"),
    (b"PK\x03\x04rest of a zip", "zip archive"),
    (pickle.dumps([1, 2, 3]), "expected a dict with a 'G_ema' network"),
])
def test_damaged_or_foreign_files_give_clear_errors(snapshots, tmp_path, content, message):
    path = tmp_path / "bad.pkl"
    data = snapshots["uncond"].read_bytes()
    path.write_bytes(data[: len(data) // 2] if content is None else content)
    with pytest.raises(CocktailError, match=message) as error:
        load_stylegan2_pkl(path)
    assert str(error.value).startswith(str(path)) and "\n" not in str(error.value)
    with pytest.raises(CocktailError, match="not found"):
        load_stylegan2_pkl(tmp_path / "missing.pkl")


def test_a_full_disk_while_converting_is_one_line_and_leaves_no_half_model(snapshots, tmp_path, monkeypatch):
    out = tmp_path / "cat_model"
    disk = FullDisk("discriminator").install(monkeypatch)  # the generator fits, the discriminator does not
    with pytest.raises(CocktailError) as raised:
        convert_stylegan2_pkl(snapshots["uncond"], out, class_names=["cat"], write_card=False)
    assert str(raised.value).startswith(f"could not write the model folder {out} ({DISK_FULL}); ")
    assert str(raised.value).endswith(" free there; run the same command again") and "\n" not in str(raised.value)
    assert disk.failures == 1 and not out.exists() and leftovers(tmp_path) == []
    disk.free_space()
    model = UnionModel.from_pretrained(convert_stylegan2_pkl(snapshots["uncond"], out, class_names=["cat"],
                                                             write_card=False))
    assert_matches_reference("uncond", model.generator, model.discriminator)


# -- command line ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_convert_script(snapshots, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    script = [sys.executable, str(REPO / "scripts" / "convert.py")]
    bad = tmp_path / "bad.pkl"
    bad.write_text("not a checkpoint")
    failed = subprocess.run([*script, str(bad), "--output_dir", str(tmp_path / "bad")], capture_output=True,
                            text=True, env=env)
    assert failed.returncode == 2
    assert failed.stderr.strip().splitlines() == [f"error: {bad}: not a StyleGAN2-ADA network pickle "
                                                  "(no pickle header)"]

    out = tmp_path / "cat_model"
    done = subprocess.run([*script, str(snapshots["uncond"]), "--output_dir", str(out), "--class_name", "cat"],
                          capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert str(out) in done.stdout
    model = UnionModel.from_pretrained(out)
    assert model.class_names == ["cat"]
    assert (out / "samples.png").is_file() and (out / "README.md").is_file()
    assert_matches_reference("uncond", model.generator, model.discriminator)
