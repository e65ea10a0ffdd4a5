"""The identities a merge records and compares: of weights, and of JSON values (stage inputs, cache keys)."""

from __future__ import annotations

import hashlib
import json

import torch


def weights_digest(*modules: torch.nn.Module) -> str:
    """sha256 of every parameter and buffer (names and bytes): the identity of a model's weights."""
    digest = hashlib.sha256()
    for module in modules:
        if module is None:
            continue
        for name, tensor in module.state_dict().items():
            digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
            digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def json_digest(value) -> str:
    """sha256 of a JSON value, independent of key order."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()
