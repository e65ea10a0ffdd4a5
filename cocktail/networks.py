"""StyleGAN2 generator and discriminator, weight-compatible with StyleGAN2-ADA (PyTorch).

Written from the StyleGAN2 / StyleGAN2-ADA papers' equations. Parameter and buffer names,
shapes and storage conventions follow the StyleGAN2-ADA checkpoint format so that real
checkpoints load with ``strict=True`` (see ``tests/test_parity.py``):

* weights are stored unscaled; the equalized-learning-rate gain is applied at run time
  (fully connected: ``lr_multiplier / sqrt(in)``, conv: ``1 / sqrt(in * k * k)``);
* resampling uses the separable [1, 3, 3, 1] low-pass filter kept as ``resample_filter``;
* the generator is the 'skip' architecture, the discriminator the 'resnet' one with a
  minibatch-standard-deviation epilogue and projection conditioning.

Both networks are diffusers ``ModelMixin`` + ``ConfigMixin`` so they save/load with
``save_pretrained`` / ``from_pretrained`` (safetensors, subfolders, Hub revisions).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)
LOW_PRECISION_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}
LOWPASS_TAPS = (1, 3, 3, 1)  # StyleGAN2's resampling filter, the only one the format uses
# Generator architectures by name (the discriminator takes channel_base and channel_max): the paper's
# 256 px networks, and smaller ones that train on a CPU (the shipped examples are "tiny").
PRESETS = {
    "paper": dict(z_dim=512, w_dim=512, mapping_layers=8, channel_base=32768, channel_max=512),
    "small": dict(z_dim=128, w_dim=128, mapping_layers=4, channel_base=4096, channel_max=128),
    "tiny": dict(z_dim=32, w_dim=32, mapping_layers=2, channel_base=512, channel_max=64),
}


# ---------------------------------------------------------------------------------------
# Primitive operations
# ---------------------------------------------------------------------------------------


def lowpass_filter(taps=LOWPASS_TAPS) -> torch.Tensor:
    """The 2-D separable low-pass filter used for up/down-sampling, normalised to sum 1."""
    f = torch.as_tensor(taps, dtype=torch.float32)
    f = f.ger(f)
    return f / f.sum()


def normalize_2nd_moment(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


def bias_act(x, bias=None, lrelu=False, gain=1.0, clamp=None):
    """Add a per-channel bias, apply (leaky ReLU), scale by ``gain``, clamp to ±``clamp``."""
    if bias is not None:
        x = x + bias.to(x.dtype).reshape([1, -1] + [1] * (x.ndim - 2))
    if lrelu:
        x = F.leaky_relu(x, LRELU_SLOPE)
    if gain != 1:
        x = x * gain
    if clamp is not None:
        x = F.hardtanh(x, -clamp, clamp)  # = clamp, with a one-kernel backward (clamp's takes several)
    return x


def upfirdn2d(x, f, up=1, down=1, pad=(0, 0, 0, 0), gain=1.0):
    """Upsample by zero insertion, pad (x0, x1, y0, y1; negative crops), FIR filter, decimate.

    ``f`` is a symmetric 2-D filter, so correlation and convolution coincide.
    """
    batch, channels, height, width = x.shape
    if up > 1:
        x = x.reshape(batch, channels, height, 1, width, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(batch, channels, height * up, width * up)
    px0, px1, py0, py1 = pad
    same = px0 == px1 == py0 == py1 and px0 >= 0
    if not same:
        x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
        x = x[:, :, max(-py0, 0) : x.shape[2] - max(-py1, 0), max(-px0, 0) : x.shape[3] - max(-px1, 0)]
    f = (f * gain).to(x.dtype)
    # The same zero border on every side is the convolution's own padding: no padded copy of x to make.
    # Decimating is the convolution's stride: only the kept outputs are computed.
    return F.conv2d(x, f[None, None].expand(channels, 1, *f.shape), padding=px0 if same else 0, stride=down,
                    groups=channels)


def upsample2d(x, f, up=2):
    taps = f.shape[-1]
    return upfirdn2d(x, f, up=up, pad=((taps + up - 1) // 2, (taps - up) // 2) * 2, gain=up * up)


def conv2d_resample(x, w, f, up=1, down=1, padding=0, groups=1):
    """Convolution with optional 2x up- or down-sampling around it, anti-aliased by ``f``.

    Up-sampling runs as a strided transposed convolution followed by the FIR filter;
    down-sampling as the FIR filter followed by a strided convolution (1x1 kernels
    filter-and-decimate first). Padding arithmetic matches the reference format so that
    outputs align pixel for pixel.
    """
    if up == 1 and down == 1:
        return F.conv2d(x, w, padding=padding, groups=groups)
    if up > 1 and down > 1:
        raise ValueError("conv2d_resample does either up- or down-sampling, not both")
    kernel = w.shape[-1]
    taps = f.shape[-1]
    if down > 1:
        p0 = padding + (taps - down + 1) // 2
        p1 = padding + (taps - down) // 2
        if kernel == 1:
            x = upfirdn2d(x, f, down=down, pad=(p0, p1, p0, p1))
            return F.conv2d(x, w, groups=groups)
        x = upfirdn2d(x, f, pad=(p0, p1, p0, p1))
        return F.conv2d(x, w, stride=down, groups=groups)
    # Transposed convolution wants [in, out/groups, k, k] per group.
    out_channels, in_per_group = w.shape[:2]
    w = w.reshape(groups, out_channels // groups, in_per_group, kernel, kernel)
    w = w.transpose(1, 2).reshape(groups * in_per_group, out_channels // groups, kernel, kernel)
    p0 = padding + (taps + up - 1) // 2 - (kernel - 1)
    p1 = padding + (taps - up) // 2 - (kernel - up)
    pt = max(min(-p0, -p1), 0)
    x = F.conv_transpose2d(x, w, stride=up, padding=pt, groups=groups)
    return upfirdn2d(x, f, pad=(p0 + pt, p1 + pt, p0 + pt, p1 + pt), gain=up * up)


def modulated_conv2d(x, weight, styles, up=1, padding=0, resample_filter=None, demodulate=True, fused=True,
                     gain=1.0):
    """StyleGAN2 weight (de)modulation, the output scaled by ``gain``.

    ``fused``: one grouped convolution with per-sample weights (fast for small batches and
    inference); otherwise scale activations before and after a shared-weight convolution
    (mathematically the same, and much faster to train with on CPU). ``gain`` rides on the
    per-sample coefficients, so it costs no pass over the activations.
    """
    batch = x.shape[0]
    out_channels, in_channels, kh, kw = weight.shape
    if x.dtype == torch.float16 and demodulate:
        # Pre-normalise so the fp16 products below cannot overflow; demodulation undoes it.
        weight = weight * (1 / math.sqrt(in_channels * kh * kw) / weight.norm(float("inf"), dim=[1, 2, 3],
                                                                               keepdim=True))
        styles = styles / styles.norm(float("inf"), dim=1, keepdim=True)
    if not demodulate and gain != 1:
        styles = styles * gain
    if not fused:
        x = x * styles.to(x.dtype).reshape(batch, -1, 1, 1)
        x = conv2d_resample(x, weight.to(x.dtype), resample_filter, up=up, padding=padding)
        if demodulate:
            dcoefs = (styles.square() @ weight.square().sum(dim=[2, 3]).t() + 1e-8).rsqrt() * gain
            x = x * dcoefs.to(x.dtype).reshape(batch, -1, 1, 1)
        return x
    w = weight.unsqueeze(0) * styles.reshape(batch, 1, -1, 1, 1)
    if demodulate:
        dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt() * gain
        w = w * dcoefs.reshape(batch, -1, 1, 1, 1)
    x = x.reshape(1, -1, *x.shape[2:])
    w = w.reshape(-1, in_channels, kh, kw).to(x.dtype)
    x = conv2d_resample(x, w, resample_filter, up=up, padding=padding, groups=batch)
    return x.reshape(batch, -1, *x.shape[2:])


# ---------------------------------------------------------------------------------------
# Layers
# ---------------------------------------------------------------------------------------


class FullyConnectedLayer(nn.Module):
    def __init__(self, in_features, out_features, lrelu=False, lr_multiplier=1.0, bias_init=0.0):
        super().__init__()
        self.lrelu = lrelu
        self.weight = nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init)))
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x):
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias.to(x.dtype) * self.bias_gain
        if not self.lrelu:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return bias_act(x.matmul(w.t()), b, lrelu=True, gain=LRELU_GAIN)


class Conv2dLayer(nn.Module):
    def __init__(self, in_channels, out_channels, kernel_size, bias=True, lrelu=False, down=1, conv_clamp=None):
        super().__init__()
        self.lrelu = lrelu
        self.down = down
        self.conv_clamp = conv_clamp
        self.padding = kernel_size // 2
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)
        self.register_buffer("resample_filter", lowpass_filter())
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels])) if bias else None

    def forward(self, x, gain=1.0):
        # lrelu(v) * g = lrelu(v * g) for g > 0: the gain rides on the weight and bias, not on the activations.
        act_gain = (LRELU_GAIN if self.lrelu else 1.0) * gain
        w = (self.weight * (self.weight_gain * act_gain)).to(x.dtype)
        x = conv2d_resample(x, w, self.resample_filter, down=self.down, padding=self.padding)
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        bias = self.bias * act_gain if self.bias is not None else None
        return bias_act(x, bias, lrelu=self.lrelu, clamp=clamp)


class MappingNetwork(nn.Module):
    """z (and class c) → w. With ``z_dim == 0`` it is the discriminator's class embedding."""

    def __init__(self, z_dim, c_dim, w_dim, num_ws, num_layers=8, lr_multiplier=0.01, track_w_avg=True):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.num_ws, self.num_layers = z_dim, c_dim, w_dim, num_ws, num_layers
        embed_features = w_dim if c_dim > 0 else 0
        features = [z_dim + embed_features] + [w_dim] * num_layers
        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        for idx in range(num_layers):
            layer = FullyConnectedLayer(features[idx], features[idx + 1], lrelu=True, lr_multiplier=lr_multiplier)
            setattr(self, f"fc{idx}", layer)
        if track_w_avg:
            self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(self, z, c, truncation_psi=1.0, truncation_cutoff=None, update_emas=False, w_avg_beta=0.995):
        parts = []
        if self.z_dim > 0:
            parts.append(normalize_2nd_moment(z.to(torch.float32)))
        if self.c_dim > 0:
            parts.append(normalize_2nd_moment(self.embed(c.to(torch.float32))))
        x = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)
        if self.num_ws is None:
            return x
        if update_emas:
            self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, w_avg_beta))
        x = x.unsqueeze(1).repeat(1, self.num_ws, 1)
        if truncation_psi != 1:
            cutoff = self.num_ws if truncation_cutoff is None else truncation_cutoff
            x[:, :cutoff] = self.w_avg.lerp(x[:, :cutoff], truncation_psi)
        return x


class SynthesisLayer(nn.Module):
    """Modulated 3x3 convolution + per-pixel noise + bias + leaky ReLU."""

    def __init__(self, in_channels, out_channels, w_dim, resolution, up=1, conv_clamp=None):
        super().__init__()
        self.resolution = resolution
        self.up = up
        self.conv_clamp = conv_clamp
        self.register_buffer("resample_filter", lowpass_filter())
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, 3, 3]))
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.register_buffer("noise_const", torch.randn([resolution, resolution]))

    def forward(self, x, w, noise_mode="random", fused_modconv=True, gain=1.0):
        # lrelu(v) * g = lrelu(v * g) for g > 0: the activation gain scales the convolution's per-sample
        # coefficients, the noise strength and the bias instead of every activation.
        act_gain = LRELU_GAIN * gain
        styles = self.affine(w)
        x = modulated_conv2d(x, self.weight, styles, up=self.up, padding=1, resample_filter=self.resample_filter,
                             fused=fused_modconv, gain=act_gain)
        strength = self.noise_strength * act_gain
        if noise_mode == "random":
            noise = torch.randn([x.shape[0], 1, self.resolution, self.resolution], device=x.device, dtype=x.dtype)
            x = x + noise * strength.to(x.dtype)
        elif noise_mode == "const":
            x = x + (self.noise_const * strength).to(x.dtype)
        elif noise_mode != "none":
            raise ValueError(f"noise_mode must be 'random', 'const' or 'none', got {noise_mode!r}")
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, self.bias * act_gain, lrelu=True, clamp=clamp)


class ToRGBLayer(nn.Module):
    """Modulated (not demodulated) 1x1 convolution to image channels."""

    def __init__(self, in_channels, out_channels, w_dim, conv_clamp=None):
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, 1, 1]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels)

    def forward(self, x, w, fused_modconv=True):
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False, fused=fused_modconv)
        return bias_act(x, self.bias, clamp=self.conv_clamp)


class SynthesisBlock(nn.Module):
    """One resolution of the 'skip' generator: (up-)conv, conv, and an RGB output added to the image."""

    def __init__(self, in_channels, out_channels, w_dim, resolution, img_channels, conv_clamp, use_low_precision):
        super().__init__()
        self.in_channels = in_channels
        self.use_low_precision = use_low_precision
        self.register_buffer("resample_filter", lowpass_filter())
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, up=2, conv_clamp=conv_clamp)
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution, conv_clamp=conv_clamp)
        self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, conv_clamp=conv_clamp)
        self.num_conv = 1 if in_channels == 0 else 2

    def forward(self, x, img, ws, noise_mode="random", fused_modconv=True, dtype=torch.float32):
        w_iter = iter(ws.unbind(dim=1))
        if self.in_channels == 0:
            x = self.const.to(dtype).unsqueeze(0).repeat(ws.shape[0], 1, 1, 1)
        else:
            x = self.conv0(x.to(dtype), next(w_iter), noise_mode=noise_mode, fused_modconv=fused_modconv)
        x = self.conv1(x, next(w_iter), noise_mode=noise_mode, fused_modconv=fused_modconv)
        if img is not None:
            img = upsample2d(img, self.resample_filter)
        y = self.torgb(x, next(w_iter), fused_modconv=fused_modconv).to(torch.float32)
        return x, (img + y if img is not None else y)


def _channels(channel_base, channel_max, resolutions):
    return {res: min(channel_base // res, channel_max) for res in resolutions}


def _is_low_precision(resolution, img_resolution, num_fp16_res):
    """Blocks at the ``num_fp16_res`` highest resolutions (never below 8) may run in low precision."""
    threshold = max(2 ** (int(np.log2(img_resolution)) + 1 - num_fp16_res), 8)
    return num_fp16_res > 0 and resolution >= threshold


class LowPrecisionBlocks:
    """Where a network's low-precision blocks (``num_fp16_res``) compute in low precision: a property of
    the device it runs on, not of its file.

    ``low_precision`` maps a device type to the dtype of those blocks there; by default only CUDA, in the
    config's ``low_precision_dtype``, as StyleGAN2-ADA intends: on a CPU, float16 is many times slower than
    float32 (no fast kernels) and less exact. Ask for it elsewhere with e.g.
    ``G.low_precision["cpu"] = torch.bfloat16``. Every other block, and every block with ``force_fp32``
    (regularisers with a double backward), computes in float32.
    """

    low_precision: dict[str, torch.dtype]

    def block_dtype(self, block, device: torch.device, force_fp32: bool = False) -> torch.dtype:
        if force_fp32 or not block.use_low_precision:
            return torch.float32
        return self.low_precision.get(device.type, torch.float32)

    def runs_float16(self, device) -> bool:
        """Whether some block computes in float16 on ``device`` (its gradients then want loss scaling)."""
        device = torch.device(device)
        return any(self.block_dtype(block, device) == torch.float16 for block in self.blocks())


class SynthesisNetwork(LowPrecisionBlocks, nn.Module):
    def __init__(self, w_dim, img_resolution, img_channels, channel_base, channel_max, num_fp16_res,
                 conv_clamp, low_precision_dtype):
        super().__init__()
        self.low_precision = {"cuda": LOW_PRECISION_DTYPES[low_precision_dtype]}
        log2 = int(np.log2(img_resolution))
        self.img_resolution = img_resolution
        self.block_resolutions = [2**i for i in range(2, log2 + 1)]
        channels = _channels(channel_base, channel_max, self.block_resolutions)
        self.num_ws = 0
        for res in self.block_resolutions:
            block = SynthesisBlock(
                in_channels=channels[res // 2] if res > 4 else 0,
                out_channels=channels[res],
                w_dim=w_dim,
                resolution=res,
                img_channels=img_channels,
                conv_clamp=conv_clamp,
                use_low_precision=_is_low_precision(res, img_resolution, num_fp16_res),
            )
            self.num_ws += block.num_conv
            setattr(self, f"b{res}", block)
        self.num_ws += 1  # the last block's ToRGB

    def blocks(self):
        return [getattr(self, f"b{res}") for res in self.block_resolutions]

    def forward(self, ws, noise_mode="random", fused_modconv=None, force_fp32=False):
        """``fused_modconv``: None picks the faster (de)modulation path for the batch (same result)."""
        if fused_modconv is None:
            fused_modconv = ws.shape[0] == 1
        x = img = None
        w_idx = 0
        for block in self.blocks():
            # A block's ToRGB shares its w with the next block's first convolution.
            x, img = block(x, img, ws.narrow(1, w_idx, block.num_conv + 1), noise_mode=noise_mode,
                           fused_modconv=fused_modconv, dtype=self.block_dtype(block, ws.device, force_fp32))
            w_idx += block.num_conv
        return img


class Generator(ModelMixin, ConfigMixin):
    """StyleGAN2 generator: ``G(z, c) -> images`` in about [-1, 1], NCHW float32.

    ``c`` is a one-hot class matrix [N, c_dim] (``None`` for unconditional models).
    """

    config_name = "config.json"

    @register_to_config
    def __init__(
        self,
        z_dim: int = 512,
        c_dim: int = 0,
        w_dim: int = 512,
        img_resolution: int = 256,
        img_channels: int = 3,
        mapping_layers: int = 8,
        channel_base: int = 32768,
        channel_max: int = 512,
        num_fp16_res: int = 0,
        conv_clamp: float | None = 256,
        low_precision_dtype: str = "float16",
    ):
        super().__init__()
        _check_resolution(img_resolution)
        if low_precision_dtype not in LOW_PRECISION_DTYPES:
            raise ValueError(f"low_precision_dtype must be one of {sorted(LOW_PRECISION_DTYPES)}")
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.synthesis = SynthesisNetwork(w_dim, img_resolution, img_channels, channel_base, channel_max,
                                          num_fp16_res, conv_clamp, low_precision_dtype)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim, c_dim, w_dim, self.num_ws, num_layers=mapping_layers)

    @property
    def low_precision(self) -> dict[str, torch.dtype]:
        """Device type → dtype of the low-precision synthesis blocks there (see ``LowPrecisionBlocks``)."""
        return self.synthesis.low_precision

    def runs_float16(self, device) -> bool:
        return self.synthesis.runs_float16(device)

    def forward(self, z, c=None, truncation_psi=1.0, truncation_cutoff=None, noise_mode="random",
                update_emas=False, fused_modconv=None, force_fp32=False):
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
                          update_emas=update_emas)
        return self.synthesis(ws, noise_mode=noise_mode, fused_modconv=fused_modconv, force_fp32=force_fp32)


class DiscriminatorBlock(nn.Module):
    """One resolution of the 'resnet' discriminator: conv, strided conv, and a 1x1 skip path."""

    def __init__(self, in_channels, tmp_channels, out_channels, img_channels, conv_clamp, use_low_precision):
        super().__init__()
        self.in_channels = in_channels
        self.use_low_precision = use_low_precision
        self.register_buffer("resample_filter", lowpass_filter())
        if in_channels == 0:
            self.fromrgb = Conv2dLayer(img_channels, tmp_channels, 1, lrelu=True, conv_clamp=conv_clamp)
        self.conv0 = Conv2dLayer(tmp_channels, tmp_channels, 3, lrelu=True, conv_clamp=conv_clamp)
        self.conv1 = Conv2dLayer(tmp_channels, out_channels, 3, lrelu=True, down=2, conv_clamp=conv_clamp)
        self.skip = Conv2dLayer(tmp_channels, out_channels, 1, bias=False, down=2)

    def forward(self, x, img, dtype=torch.float32):
        if self.in_channels == 0:
            x = self.fromrgb(img.to(dtype))
        else:
            x = x.to(dtype)
        y = self.skip(x, gain=math.sqrt(0.5))
        x = self.conv1(self.conv0(x), gain=math.sqrt(0.5))
        return y + x


class MinibatchStdLayer(nn.Module):
    """Appends the std-dev of features across groups of samples (sample i is in group i mod n)."""

    def __init__(self, group_size, num_channels=1):
        super().__init__()
        self.group_size = group_size
        self.num_channels = num_channels

    def forward(self, x):
        n, c, h, w = x.shape
        g = min(self.group_size, n) if self.group_size is not None else n
        f = self.num_channels
        y = x.reshape(g, -1, f, c // f, h, w)
        y = (y - y.mean(dim=0)).square().mean(dim=0)
        y = (y + 1e-8).sqrt().mean(dim=[2, 3, 4])
        y = y.reshape(-1, f, 1, 1).repeat(g, 1, h, w)
        return torch.cat([x, y], dim=1)


class DiscriminatorEpilogue(nn.Module):
    def __init__(self, in_channels, cmap_dim, resolution, mbstd_group_size, mbstd_num_channels, conv_clamp):
        super().__init__()
        self.cmap_dim = cmap_dim
        self.mbstd = MinibatchStdLayer(mbstd_group_size, mbstd_num_channels) if mbstd_num_channels > 0 else None
        self.conv = Conv2dLayer(in_channels + mbstd_num_channels, in_channels, 3, lrelu=True,
                                conv_clamp=conv_clamp)
        self.fc = FullyConnectedLayer(in_channels * resolution**2, in_channels, lrelu=True)
        self.out = FullyConnectedLayer(in_channels, cmap_dim if cmap_dim > 0 else 1)

    def forward(self, x, cmap=None):
        x = x.to(torch.float32)
        if self.mbstd is not None:
            x = self.mbstd(x)
        x = self.out(self.fc(self.conv(x).flatten(1)))
        if cmap is not None:
            # Projection discriminator: the logit is the score's projection on the class embedding.
            x = (x * cmap).sum(dim=1, keepdim=True) / math.sqrt(self.cmap_dim)
        return x


class Discriminator(LowPrecisionBlocks, ModelMixin, ConfigMixin):
    """StyleGAN2 'resnet' discriminator: ``D(img, c) -> logits [N, 1]``."""

    config_name = "config.json"

    @register_to_config
    def __init__(
        self,
        c_dim: int = 0,
        img_resolution: int = 256,
        img_channels: int = 3,
        channel_base: int = 32768,
        channel_max: int = 512,
        num_fp16_res: int = 0,
        conv_clamp: float | None = 256,
        cmap_dim: int | None = None,
        mapping_layers: int = 8,
        mbstd_group_size: int | None = 4,
        mbstd_num_channels: int = 1,
        low_precision_dtype: str = "float16",
    ):
        super().__init__()
        _check_resolution(img_resolution)
        if low_precision_dtype not in LOW_PRECISION_DTYPES:
            raise ValueError(f"low_precision_dtype must be one of {sorted(LOW_PRECISION_DTYPES)}")
        self.c_dim, self.img_resolution, self.img_channels = c_dim, img_resolution, img_channels
        self.low_precision = {"cuda": LOW_PRECISION_DTYPES[low_precision_dtype]}
        log2 = int(np.log2(img_resolution))
        self.block_resolutions = [2**i for i in range(log2, 2, -1)]
        channels = _channels(channel_base, channel_max, self.block_resolutions + [4])
        if cmap_dim is None:
            cmap_dim = channels[4]
        self.cmap_dim = cmap_dim if c_dim > 0 else 0
        for res in self.block_resolutions:
            block = DiscriminatorBlock(
                in_channels=channels[res] if res < img_resolution else 0,
                tmp_channels=channels[res],
                out_channels=channels[res // 2],
                img_channels=img_channels,
                conv_clamp=conv_clamp,
                use_low_precision=_is_low_precision(res, img_resolution, num_fp16_res),
            )
            setattr(self, f"b{res}", block)
        if c_dim > 0:
            self.mapping = MappingNetwork(0, c_dim, self.cmap_dim, None, num_layers=mapping_layers,
                                          track_w_avg=False)
        self.b4 = DiscriminatorEpilogue(channels[4], self.cmap_dim, 4, mbstd_group_size, mbstd_num_channels,
                                        conv_clamp)

    def blocks(self):
        return [getattr(self, f"b{res}") for res in self.block_resolutions]

    def forward(self, img, c=None, force_fp32=False):
        x = None
        for block in self.blocks():
            x = block(x, img, dtype=self.block_dtype(block, img.device, force_fp32))
        cmap = self.mapping(None, c) if self.c_dim > 0 else None
        return self.b4(x, cmap)


def _check_resolution(resolution):
    if resolution < 4 or resolution & (resolution - 1):
        raise ValueError(f"img_resolution must be a power of two >= 4, got {resolution}")


def network_kwargs(network: Generator | Discriminator, **changes) -> dict:
    """The constructor arguments of a network (its config without diffusers' bookkeeping)."""
    return {**{k: v for k, v in network.config.items() if not k.startswith("_")}, **changes}
