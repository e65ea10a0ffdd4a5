"""Import StyleGAN2-ADA PyTorch checkpoints (``network-snapshot-*.pkl``) without running their code.

Such a pickle is a dict (``G``, ``D``, ``G_ema``, ``augment_pipe``, ``training_set_kwargs``) whose
networks are stored as calls to the persistence hook
``torch_utils.persistence._reconstruct_persistent_obj(meta)``; ``meta`` holds the Python source of the
network's module (``module_src``), the ``class_name`` and the module's pickled ``__dict__`` (``state``).
A plain ``pickle.load`` would import and run that source, and call any other global the file names.
Here a restricted unpickler resolves only an explicit allow-list of globals: the hook becomes a
record of ``class_name`` and ``state`` (``module_src`` is never read), ``EasyDict`` a ``dict``, tensor
storages are read with ``torch.load(weights_only=True)``, numpy scalars are decoded as plain numbers;
every other global is refused. Tensors are then collected from ``state['_parameters']``,
``['_buffers']`` and ``['_modules']`` under StyleGAN2-ADA's names, which are ours, and loaded with
``strict=True`` into networks configured from the pickled constructor arguments (``_init_kwargs``).
"""

from __future__ import annotations

import collections
import io
import logging
import pickle
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .card import write_model_card
from .errors import CocktailError, first_line
from .files import file_sha256, saving, staged_folder
from .folder import SEEDS_PER_CLASS, write_model_folder
from .networks import LOWPASS_TAPS, Discriminator, Generator
from .provenance import Provenance
from .specs import Origin, SourceRecord

logger = logging.getLogger(__name__)

SOURCE_FORMAT = "stylegan2-ada-pkl"


# ---------------------------------------------------------------------------------------
# What the restricted unpickler builds instead of the pickled objects
# ---------------------------------------------------------------------------------------


@dataclass
class PickledModule:
    """What is kept of a persisted network: its class name and pickled ``__dict__``, never its source."""

    class_name: str
    state: dict


def _persistent_object(meta):
    """Stands in for ``_reconstruct_persistent_obj``: keeps ``class_name`` and ``state`` only."""
    if not isinstance(meta, dict) or meta.get("type") != "class":
        raise pickle.UnpicklingError("persistent object without class metadata")
    class_name, state = meta.get("class_name"), meta.get("state")
    if not isinstance(class_name, str) or not isinstance(state, dict):
        raise pickle.UnpicklingError("persistent object without a class name and a state dict")
    return PickledModule(class_name, state)


def _load_storage(data):
    """``torch.storage._load_from_bytes`` would run a full ``torch.load``: read the bytes as weights only."""
    if not isinstance(data, bytes):
        raise pickle.UnpicklingError("tensor storage is not bytes")
    storage = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    if not isinstance(storage, torch.storage.TypedStorage):
        raise pickle.UnpicklingError(f"tensor storage decodes to {type(storage).__name__}")
    return storage


def _rebuild_tensor(storage, storage_offset, size, stride, *_grad_and_hooks):
    """``_rebuild_tensor_v2`` with checked arguments; pickled autograd hooks are dropped."""
    if not (isinstance(storage, torch.storage.TypedStorage) and isinstance(storage_offset, int)
            and _is_int_tuple(size) and _is_int_tuple(stride) and len(size) == len(stride)):
        raise pickle.UnpicklingError("malformed tensor")
    # torch would silently grow the storage to fit: a view must lie inside the stored values.
    last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
    if storage_offset < 0 or min(stride, default=0) < 0 or (0 not in size and last >= storage.size()):
        raise pickle.UnpicklingError("tensor view outside its storage")
    return torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride, False, collections.OrderedDict())


def _rebuild_parameter(data, *_grad_and_hooks):
    """A pickled ``nn.Parameter`` → its tensor (we only copy values out of it)."""
    if not isinstance(data, torch.Tensor):
        raise pickle.UnpicklingError("malformed parameter")
    return data


def _is_int_tuple(value):
    return isinstance(value, tuple) and all(isinstance(v, int) for v in value)


NUMPY_SCALAR_TYPES = {"b1", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8"}


class _NumpyDtype:
    """Stands in for ``numpy.dtype`` while unpickling: records the type code and byte order only."""

    def __init__(self, type_code, align=False, copy=False):
        if type_code not in NUMPY_SCALAR_TYPES:
            raise pickle.UnpicklingError(f"unsupported numpy type {type_code!r}")
        self.type_code = type_code
        self.byte_order = "="

    def __setstate__(self, state):
        if isinstance(state, tuple) and len(state) > 1 and state[1] in ("<", ">", "|", "="):
            self.byte_order = state[1]


def _numpy_scalar(dtype, data=None):
    """A pickled numpy number (e.g. a layer's ``weight_gain``) → a Python number."""
    if not isinstance(dtype, _NumpyDtype) or not isinstance(data, bytes):
        raise pickle.UnpicklingError("malformed numpy scalar")
    np_dtype = np.dtype(dtype.type_code).newbyteorder(dtype.byte_order)
    if len(data) != np_dtype.itemsize:
        raise pickle.UnpicklingError("malformed numpy scalar")
    return np.frombuffer(data, dtype=np_dtype)[0].item()


# (module, name) as written in the pickle → what we build instead. Nothing else is resolved.
ALLOWED_GLOBALS = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _persistent_object,
    ("dnnlib.util", "EasyDict"): dict,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _load_storage,
    ("numpy", "dtype"): _NumpyDtype,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,  # written by numpy 1.x
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,  # written by numpy 2.x
}


class StyleGAN2Unpickler(pickle.Unpickler):
    """Unpickles the data of a StyleGAN2-ADA snapshot and refuses every global not in ``ALLOWED_GLOBALS``."""

    def __init__(self, file, name: str):
        super().__init__(file)
        self.name = name

    def find_class(self, module, name):
        target = ALLOWED_GLOBALS.get((module, name))
        if target is None:
            raise CocktailError(f"{self.name}: refused to load global '{module}.{name}' "
                                "(only StyleGAN2-ADA network state is allowed)")
        return target


def read_snapshot(path: str | Path) -> dict:
    """The pickled snapshot dict, networks as ``PickledModule``; no code from the file runs."""
    path = Path(path)
    if not path.is_file():
        raise CocktailError(f"{path}: checkpoint file not found")
    with open(path, "rb") as file:
        head = file.read(2)
        if head == b"PK":
            raise CocktailError(f"{path}: is a zip archive (a torch.save checkpoint?), not a StyleGAN2-ADA "
                                "network pickle")
        if len(head) < 2 or head[0] != pickle.PROTO[0] or not 2 <= head[1] <= pickle.HIGHEST_PROTOCOL:
            raise CocktailError(f"{path}: not a StyleGAN2-ADA network pickle (no pickle header)")
        file.seek(0)
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="TypedStorage is deprecated")
                snapshot = StyleGAN2Unpickler(file, str(path)).load()
        except CocktailError:
            raise
        except Exception as err:  # any failure to parse untrusted bytes means a damaged file
            raise CocktailError(f"{path}: not a readable StyleGAN2-ADA pickle (corrupt, truncated or unsafe: "
                                f"{type(err).__name__}: {first_line(err, 'no details')})") from None
    if not isinstance(snapshot, dict) or not isinstance(snapshot.get("G_ema"), PickledModule):
        keys = sorted(map(str, snapshot)) if isinstance(snapshot, dict) else type(snapshot).__name__
        raise CocktailError(f"{path}: not a StyleGAN2-ADA network snapshot (expected a dict with a 'G_ema' "
                            f"network, found {keys})")
    return snapshot


# ---------------------------------------------------------------------------------------
# Pickled module state → our networks
# ---------------------------------------------------------------------------------------


def module_tensors(module: PickledModule, prefix: str = "") -> dict[str, torch.Tensor]:
    """Parameters and persistent buffers of a pickled module tree, by dotted name (like ``state_dict``)."""
    tensors = {}
    state = module.state
    non_persistent = state.get("_non_persistent_buffers_set") or set()
    if not isinstance(non_persistent, set):
        raise CocktailError(f"{prefix.rstrip('.') or 'the network'}: _non_persistent_buffers_set is not a set")
    for group in ("_parameters", "_buffers"):
        for name, value in _state_entry(state, group, prefix).items():
            if value is None or (group == "_buffers" and name in non_persistent):
                continue
            if not isinstance(value, torch.Tensor):
                raise CocktailError(f"{prefix}{name} is a {type(value).__name__}, not a tensor")
            tensors[f"{prefix}{name}"] = value.detach().clone()
    for name, child in _state_entry(state, "_modules", prefix).items():
        if child is None:
            continue
        if not isinstance(child, PickledModule):
            raise CocktailError(f"submodule {prefix}{name} is a {type(child).__name__}, not a network module")
        tensors.update(module_tensors(child, f"{prefix}{name}."))
    return tensors


def _state_entry(state: dict, key: str, prefix: str) -> dict:
    entry = state.get(key) or {}
    if not isinstance(entry, dict):
        raise CocktailError(f"{prefix.rstrip('.') or 'the network'}: {key} is a {type(entry).__name__}, not a dict")
    return entry


# Our constructor argument → where StyleGAN2-ADA keeps it in the network's ``_init_kwargs``.
GENERATOR_KWARGS = {
    "z_dim": ("z_dim",), "c_dim": ("c_dim",), "w_dim": ("w_dim",),
    "img_resolution": ("img_resolution",), "img_channels": ("img_channels",),
    "mapping_layers": ("mapping_kwargs", "num_layers"),
    "channel_base": ("synthesis_kwargs", "channel_base"), "channel_max": ("synthesis_kwargs", "channel_max"),
    "num_fp16_res": ("synthesis_kwargs", "num_fp16_res"), "conv_clamp": ("synthesis_kwargs", "conv_clamp"),
}
DISCRIMINATOR_KWARGS = {
    "c_dim": ("c_dim",), "img_resolution": ("img_resolution",), "img_channels": ("img_channels",),
    "channel_base": ("channel_base",), "channel_max": ("channel_max",), "num_fp16_res": ("num_fp16_res",),
    "conv_clamp": ("conv_clamp",), "cmap_dim": ("cmap_dim",),
    "mapping_layers": ("mapping_kwargs", "num_layers"),
    "mbstd_group_size": ("epilogue_kwargs", "mbstd_group_size"),
    "mbstd_num_channels": ("epilogue_kwargs", "mbstd_num_channels"),
}
# StyleGAN2-ADA's own constructor defaults, for arguments a pickle leaves out.
GENERATOR_DEFAULTS = {"mapping_layers": 8, "channel_base": 32768, "channel_max": 512, "num_fp16_res": 0,
                      "conv_clamp": None}
DISCRIMINATOR_DEFAULTS = {"channel_base": 32768, "channel_max": 512, "num_fp16_res": 0, "conv_clamp": None,
                          "cmap_dim": None, "mapping_layers": 8, "mbstd_group_size": 4, "mbstd_num_channels": 1}
# Options our networks implement in one way only: pickled value must equal this (when present).
GENERATOR_FIXED = {
    ("synthesis_kwargs", "architecture"): "skip",
    ("synthesis_kwargs", "activation"): "lrelu",
    ("synthesis_kwargs", "resample_filter"): list(LOWPASS_TAPS),
    ("synthesis_kwargs", "use_noise"): True,
    ("mapping_kwargs", "activation"): "lrelu",
    ("mapping_kwargs", "lr_multiplier"): 0.01,
}
DISCRIMINATOR_FIXED = {
    ("architecture",): "resnet",
    ("block_kwargs", "activation"): "lrelu",
    ("block_kwargs", "resample_filter"): list(LOWPASS_TAPS),
    ("epilogue_kwargs", "activation"): "lrelu",
}
# The discriminator's class-embedding mapping exists only when c_dim > 0; unconditional checkpoints
# converted from TensorFlow carry e.g. lr_multiplier=0.1 for this unused network.
DISCRIMINATOR_MAPPING_FIXED = {
    ("mapping_kwargs", "activation"): "lrelu",
    ("mapping_kwargs", "lr_multiplier"): 0.01,
}


def _lookup(kwargs: dict, keys: tuple[str, ...]):
    """``kwargs[k0][k1]…`` and whether it was there."""
    node = kwargs
    for key in keys:
        if not isinstance(node, dict) or key not in node:
            return False, None
        node = node[key]
    return True, node


def _check_fixed_options(kwargs: dict, fixed: dict, where: str):
    for keys, required in fixed.items():
        found, value = _lookup(kwargs, keys)
        value = list(value) if isinstance(value, tuple | list) else value
        if found and value != required:
            raise CocktailError(f"{where} has {'.'.join(keys)}={value!r}; only StyleGAN2-ADA's "
                                f"{'.'.join(keys)}={required!r} is supported")


def _pickled_config(kwargs: dict, names: dict) -> dict:
    config = {}
    for ours, keys in names.items():
        found, value = _lookup(kwargs, keys)
        if found:
            config[ours] = value
    return config


def _channel_settings(channels: dict[int, int]) -> dict:
    """channel_base / channel_max that give these per-resolution channel counts (min(base // res, max))."""
    channel_max = max(channels.values())
    return {"channel_max": channel_max, "channel_base": max(res * ch for res, ch in channels.items())}


def _resolutions(tensors: dict, pattern: str) -> list[int]:
    return sorted(int(m.group(1)) for name in tensors if (m := re.fullmatch(pattern, name)))


def _mapping_shapes(tensors: dict, prefix: str) -> dict:
    layers = len([n for n in tensors if re.fullmatch(rf"{re.escape(prefix)}fc\d+\.weight", n)])
    if not layers:
        return {}
    shapes = {"mapping_layers": layers, "out_dim": tensors[f"{prefix}fc{layers - 1}.weight"].shape[0],
              "in_dim": tensors[f"{prefix}fc0.weight"].shape[1], "c_dim": 0, "embed_dim": 0}
    if f"{prefix}embed.weight" in tensors:
        shapes["embed_dim"], shapes["c_dim"] = tensors[f"{prefix}embed.weight"].shape
    return shapes


def inferred_generator_config(tensors: dict) -> dict:
    """What the tensor shapes say about a generator's configuration (fallback for missing kwargs)."""
    config = {}
    mapping = _mapping_shapes(tensors, "mapping.")
    if mapping:
        config.update(mapping_layers=mapping["mapping_layers"], w_dim=mapping["out_dim"], c_dim=mapping["c_dim"],
                      z_dim=mapping["in_dim"] - mapping["embed_dim"])
    resolutions = _resolutions(tensors, r"synthesis\.b(\d+)\.conv1\.weight")
    if resolutions:
        top = resolutions[-1]
        config["img_resolution"] = top
        if f"synthesis.b{top}.torgb.weight" in tensors:
            config["img_channels"] = tensors[f"synthesis.b{top}.torgb.weight"].shape[0]
        config.update(_channel_settings({r: tensors[f"synthesis.b{r}.conv1.weight"].shape[0] for r in resolutions}))
    return config


def inferred_discriminator_config(tensors: dict) -> dict:
    """What the tensor shapes say about a discriminator's configuration (fallback for missing kwargs)."""
    config = {}
    mapping = _mapping_shapes(tensors, "mapping.")
    config["c_dim"] = mapping.get("c_dim", 0)
    if mapping:
        config.update(mapping_layers=mapping["mapping_layers"], cmap_dim=mapping["out_dim"])
    resolutions = _resolutions(tensors, r"b(\d+)\.conv0\.weight")
    if resolutions and "b4.conv.weight" in tensors:
        top = resolutions[-1]
        config["img_resolution"] = top
        if f"b{top}.fromrgb.weight" in tensors:
            config["img_channels"] = tensors[f"b{top}.fromrgb.weight"].shape[1]
        channels = {r: tensors[f"b{r}.conv0.weight"].shape[0] for r in resolutions}
        channels[4] = tensors["b4.conv.weight"].shape[0]
        config["mbstd_num_channels"] = tensors["b4.conv.weight"].shape[1] - channels[4]
        config.update(_channel_settings(channels))
    return config


@dataclass(frozen=True)
class NetworkFormat:
    """How one StyleGAN2-ADA network class maps onto ours."""

    network_cls: type
    class_name: str  # StyleGAN2-ADA's
    kwargs: dict  # our constructor argument → its place in ``_init_kwargs``
    defaults: dict
    fixed: dict  # options our networks implement one way only
    fixed_if_conditional: dict
    infer: Callable[[dict], dict]  # tensors → configuration


GENERATOR_FORMAT = NetworkFormat(Generator, "Generator", GENERATOR_KWARGS, GENERATOR_DEFAULTS, GENERATOR_FIXED, {},
                                 inferred_generator_config)
DISCRIMINATOR_FORMAT = NetworkFormat(Discriminator, "Discriminator", DISCRIMINATOR_KWARGS, DISCRIMINATOR_DEFAULTS,
                                     DISCRIMINATOR_FIXED, DISCRIMINATOR_MAPPING_FIXED, inferred_discriminator_config)
NETWORKS = {"G": GENERATOR_FORMAT, "G_ema": GENERATOR_FORMAT, "D": DISCRIMINATOR_FORMAT}  # keys in a snapshot


def build_network(module: PickledModule, key: str, where: str):
    """One pickled network → ours, configured from its ``_init_kwargs`` (shapes as fallback), strict load."""
    fmt = NETWORKS[key]
    where = f"{where}: {key}"
    if module.class_name != fmt.class_name:
        raise CocktailError(f"{where} is a '{module.class_name}', not StyleGAN2-ADA's '{fmt.class_name}'")
    try:
        tensors = module_tensors(module)
    except CocktailError as err:
        raise CocktailError(f"{where}: {err}") from None
    except RecursionError:
        raise CocktailError(f"{where}: module tree is nested too deeply") from None
    kwargs = module.state.get("_init_kwargs")
    if not isinstance(kwargs, dict):
        logger.warning("%s has no pickled constructor arguments; configuring it from tensor shapes", where)
        kwargs = {}
    try:
        inferred = fmt.infer(tensors)
    except (IndexError, ValueError):  # unexpected tensor ranks: leave it to the strict load to report
        inferred = {}
    config = {**fmt.defaults, **inferred, **_pickled_config(kwargs, fmt.kwargs)}
    _check_fixed_options(kwargs, {**fmt.fixed, **(fmt.fixed_if_conditional if config.get("c_dim") else {})}, where)
    try:
        network = fmt.network_cls(**config)
    except (TypeError, ValueError, ZeroDivisionError, RuntimeError) as err:
        raise CocktailError(f"{where}: cannot build a network from its configuration {config} "
                            f"({first_line(err, 'no details')})") from None
    _check_names_and_shapes(network, tensors, where, fmt.network_cls.__name__.lower())
    network.load_state_dict(tensors, strict=True)
    return network.eval().requires_grad_(False)


def _check_names_and_shapes(network, tensors: dict, where: str, kind: str):
    """A one-line description of what differs, instead of ``load_state_dict``'s multi-line report."""
    expected = network.state_dict()
    problems = []
    missing = [name for name in expected if name not in tensors]
    unexpected = [name for name in tensors if name not in expected]
    mismatched = [f"{name} {list(tensors[name].shape)} != {list(value.shape)}" for name, value in expected.items()
                  if name in tensors and tensors[name].shape != value.shape]
    for label, names in (("missing", missing), ("unexpected", unexpected), ("shape", mismatched)):
        if names:
            more = f" and {len(names) - 3} more" if len(names) > 3 else ""
            problems.append(f"{label}: {', '.join(names[:3])}{more}")
    if problems:
        hint = " (a StyleGAN3 checkpoint?)" if any(n.startswith("synthesis.input.") for n in unexpected) else ""
        raise CocktailError(f"{where} does not match a StyleGAN2-ADA {kind} of its own configuration{hint}: "
                            f"{'; '.join(problems)}")


def load_stylegan2_pkl(path: str | Path) -> dict:
    """``{"G", "G_ema", "D"}`` as our networks (eval, on CPU); ``G``/``D`` are None if the file lacks them."""
    snapshot = read_snapshot(path)
    networks = {}
    for key in NETWORKS:
        module = snapshot.get(key)
        if module is None and key != "G_ema":
            networks[key] = None
            continue
        if not isinstance(module, PickledModule):
            raise CocktailError(f"{path}: '{key}' is a {type(module).__name__}, not a network")
        networks[key] = build_network(module, key, str(path))
    return networks


# ---------------------------------------------------------------------------------------
# A checkpoint → a model folder
# ---------------------------------------------------------------------------------------


def convert_stylegan2_pkl(pkl_path: str | Path, output_dir: str | Path, class_names=None, spec: str | None = None,
                          write_card: bool = True, origin: Origin | None = None, file: str | None = None) -> Path:
    """Write a model folder (G_ema as generator, D as discriminator, union.json) from a ``.pkl``.

    Default class names: the file stem for an unconditional checkpoint, ``class0…`` for a conditional one.
    ``spec`` is how the user named the source (e.g. a Hub id), ``origin`` the Hub repo and commit it came
    from and ``file`` its path there (default: a local file, by its name), all recorded in the provenance.
    """
    pkl_path, output_dir = Path(pkl_path), Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise CocktailError(f"{output_dir}: exists and is not a folder")
    networks = load_stylegan2_pkl(pkl_path)
    generator = networks["G_ema"]
    if class_names is None:
        class_names = [pkl_path.stem] if generator.c_dim == 0 else [f"class{i}" for i in range(generator.c_dim)]
    class_names = [class_names] if isinstance(class_names, str) else list(class_names)
    source = SourceRecord(spec or str(pkl_path), name=class_names[0] if len(class_names) == 1 else pkl_path.stem,
                          origin=origin or Origin(), format=SOURCE_FORMAT, file=file or pkl_path.name,
                          sha256=file_sha256(pkl_path))
    provenance = Provenance(sources=[source], metrics={}).to_dict()
    # Written beside the folder first: a failed or killed conversion leaves no half model behind.
    with saving(f"the model folder {output_dir}", output_dir, then="run the same command again"):
        with staged_folder(output_dir) as staged:
            try:
                write_model_folder(staged, generator, networks["D"], class_names, provenance,
                                   seeds_per_class=SEEDS_PER_CLASS if write_card else None)
            except CocktailError as err:
                raise CocktailError(f"{pkl_path}: {err}") from None
            if write_card:
                write_model_card(staged, name=output_dir.resolve().name)
    return output_dir
