"""Weight compatibility with StyleGAN2-ADA: the reference's own weights and outputs, reproduced."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cocktail.networks import Discriminator, Generator, network_kwargs

FIXTURES = Path(__file__).parent / "fixtures" / "stylegan2_parity"
TOLERANCE = 1e-4


def reference_networks(tag):
    config = json.loads((FIXTURES / f"{tag}_config.json").read_text())
    g, d = config["generator_kwargs"], config["discriminator_kwargs"]
    synthesis = g["synthesis_kwargs"]
    G = Generator(z_dim=g["z_dim"], c_dim=g["c_dim"], w_dim=g["w_dim"], img_resolution=g["img_resolution"],
                  img_channels=g["img_channels"], mapping_layers=g["mapping_kwargs"]["num_layers"],
                  channel_base=synthesis["channel_base"], channel_max=synthesis["channel_max"],
                  num_fp16_res=synthesis["num_fp16_res"], conv_clamp=synthesis["conv_clamp"])
    D = Discriminator(c_dim=d["c_dim"], img_resolution=d["img_resolution"], img_channels=d["img_channels"],
                      channel_base=d["channel_base"], channel_max=d["channel_max"],
                      num_fp16_res=d["num_fp16_res"], conv_clamp=d["conv_clamp"],
                      mbstd_group_size=d["epilogue_kwargs"]["mbstd_group_size"])
    G.load_state_dict(load_file(FIXTURES / f"{tag}_G.safetensors"), strict=True)
    D.load_state_dict(load_file(FIXTURES / f"{tag}_D.safetensors"), strict=True)
    return G.eval(), D.eval()


@pytest.mark.parametrize("tag", ["uncond", "cond3"])
def test_state_dict_names_and_shapes_match_reference(tag):
    G, D = reference_networks(tag)
    expected = []
    for line in (FIXTURES / f"{tag}_names.txt").read_text().splitlines():
        net, name, rest = line.split(" ", 2)
        shape = json.loads(rest[: rest.index("]") + 1])
        expected.append((net, name, shape))
    ours = [("G", k, list(v.shape)) for k, v in G.state_dict().items()]
    ours += [("D", k, list(v.shape)) for k, v in D.state_dict().items()]
    assert sorted(ours) == sorted(expected)


@pytest.mark.parametrize("fused_modconv", [True, False], ids=["fused", "unfused"])
@pytest.mark.parametrize("tag", ["uncond", "cond3"])
def test_outputs_match_reference(tag, fused_modconv):
    G, D = reference_networks(tag)
    io = load_file(FIXTURES / f"{tag}_io.safetensors")
    c = io["c"] if G.c_dim > 0 else None
    with torch.no_grad():
        outputs = {
            "ws_psi1": G.mapping(io["z"], c, truncation_psi=1.0),
            "ws_psi07": G.mapping(io["z"], c, truncation_psi=0.7),
            "img_psi1_noise_const": G.synthesis(io["ws_psi1"], noise_mode="const", fused_modconv=fused_modconv),
            "img_psi07_noise_none": G.synthesis(io["ws_psi07"], noise_mode="none", fused_modconv=fused_modconv),
            "d_logits_on_img_psi1": D(io["img_psi1_noise_const"], c),
        }
    for name, value in outputs.items():
        assert value.shape == io[name].shape, name
        error = (value - io[name]).abs().max().item()
        assert error <= TOLERANCE, f"{tag} {name}: max abs error {error}"


def test_full_forward_chains_mapping_and_synthesis():
    G, _ = reference_networks("cond3")
    io = load_file(FIXTURES / "cond3_io.safetensors")
    with torch.no_grad():
        img = G(io["z"], io["c"], truncation_psi=0.7, noise_mode="none")
    assert (img - io["img_psi07_noise_none"]).abs().max().item() <= TOLERANCE


def test_random_noise_changes_images_and_const_noise_does_not():
    G, _ = reference_networks("uncond")
    z = torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        const = [G(z, noise_mode="const") for _ in range(2)]
        random = [G(z, noise_mode="random") for _ in range(2)]
    assert torch.equal(const[0], const[1])
    assert not torch.equal(random[0], random[1])


def low_precision_copy(G, **changes):
    """The same weights in a generator whose top blocks are marked low precision (``num_fp16_res``)."""
    G16 = Generator(**network_kwargs(G, num_fp16_res=2, **changes))
    G16.load_state_dict(G.state_dict())
    return G16.eval()


def block_dtypes(network, run):
    """The dtype each block of ``network`` computes in while ``run()`` runs."""
    seen = {}

    def record(name):
        def hook(module, args, out):
            seen[name] = (out[0] if isinstance(out, tuple) else out).dtype
        return hook

    hooks = [block.register_forward_hook(record(name)) for name, block in network.named_children()
             if hasattr(block, "use_low_precision")]
    try:
        run()
    finally:
        for hook in hooks:
            hook.remove()
    return seen


def test_low_precision_blocks_compute_in_float32_on_cpu_unless_asked():
    """A file's num_fp16_res says which blocks may use float16; on a CPU they do not (slow and inexact)."""
    G, D = reference_networks("uncond")
    G16 = low_precision_copy(G)
    D16 = Discriminator(**network_kwargs(D, num_fp16_res=2))
    D16.load_state_dict(D.state_dict())
    io = load_file(FIXTURES / "uncond_io.safetensors")
    with torch.no_grad():
        dtypes = block_dtypes(G16.synthesis, lambda: G16.synthesis(io["ws_psi1"], noise_mode="const"))
        assert set(dtypes.values()) == {torch.float32}
        assert torch.equal(G16.synthesis(io["ws_psi1"], noise_mode="const"),
                           G.synthesis(io["ws_psi1"], noise_mode="const"))
        assert torch.equal(D16.eval()(io["img_psi1_noise_const"]), D(io["img_psi1_noise_const"]))
    assert G16.low_precision == {"cuda": torch.float16} and not G16.runs_float16("cpu")
    assert G16.runs_float16("cuda") and not G.runs_float16("cuda") and D16.runs_float16("cuda")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_asked_for_on_cpu_stays_close_to_float32(dtype):
    G, _ = reference_networks("uncond")
    G16 = low_precision_copy(G, low_precision_dtype=str(dtype).removeprefix("torch."))
    G16.low_precision["cpu"] = dtype
    io = load_file(FIXTURES / "uncond_io.safetensors")
    with torch.no_grad():
        dtypes = block_dtypes(G16.synthesis, lambda: G16.synthesis(io["ws_psi1"], noise_mode="const"))
        img = G16.synthesis(io["ws_psi1"], noise_mode="const")
        forced = G16.synthesis(io["ws_psi1"], noise_mode="const", force_fp32=True)
    assert [dtypes[f"b{res}"] for res in (4, 8, 16, 32)] == [torch.float32, torch.float32, dtype, dtype]
    assert img.dtype == torch.float32 and G16.runs_float16("cpu") == (dtype == torch.float16)
    reference = io["img_psi1_noise_const"]
    error = (img - reference).abs().max().item()
    assert 1e-4 < error and (img - reference).abs().mean() < 0.05 * reference.abs().mean()
    assert (forced - reference).abs().max().item() <= TOLERANCE  # what the regularisers use
