"""The lightning forecaster: CNN encoder -> recurrent core -> decoder with skip connections.

``build_model(cfg, in_channels, n_out)`` returns a module whose forward maps input maps
``x (B, T, C, H, W)`` to logits ``(B, n_out, n_thr, H, W)`` of P(count >= threshold) for lead
times 1..n_out and every threshold in ``cfg.thresholds``. The forward returns logits only; losses
live in :mod:`forecast.model.losses`.

Data flow (``d = len(cfg.encoder_channels)`` strided stages, grid padded to a multiple of 2**d):

1. encoder: every input step separately, stage ``l`` halves the grid -> features at ``/2**l``
2. core (:mod:`forecast.model.cells`): runs over the steps at ``/2**d`` -> last state ``(B, hid, .)``
3. decoder: upsample x2, concatenate the LAST input step's encoder features of that scale (at
   full resolution: the last input maps themselves), convolve; a 1x1 head gives every lead's
   logits. Thresholds above the first are the first logit minus a cumulative softplus, so
   P(>=1) >= P(>=10) >= P(>=100) holds by construction.
4. ``cfg.clim_offset``: ``logit(clip(x[:, -1, cfg.clim_channel]))`` is added to every logit and
   the head starts at zero, so an untrained model forecasts climatology. With sub-daily maps the
   climatology changes from lead to lead (the diurnal cycle): ``forward(x, clim=...)`` with
   ``clim (B, n_out, H, W)``, each lead's climatology at its own valid time, replaces the last
   input step's. Daily models are called without it and behave as before.
5. guidance (``guide_channels > 0``): ``forward(x, guide)`` with ``guide (B, n_out, G, H, W)`` the
   NWP fields valid at each lead (:mod:`forecast.training.guided`); :class:`LeadFusion` embeds lead
   k's guidance, mixes it with the decoder output at half resolution and adds logits to lead
   k's, starting at zero.
   Built last, so a model without guidance has the same parameters and initial weights as before.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from data_prep.errors import UserError
from forecast.config import ModelConfig
from forecast.model.cells import build_core

ACTIVATIONS: dict[str, type[nn.Module]] = {"gelu": nn.GELU, "silu": nn.SiLU}

# Initial gap between the logits of consecutive thresholds: softplus(b) = 2, i.e. P(>=10) starts
# near e**-2 times P(>=1).
_THRESHOLD_GAP_BIAS = math.log(math.expm1(2.0))


def conv_block(cin: int, cout: int, cfg: ModelConfig, stride: int = 1) -> nn.Sequential:
    """3x3 convolution (stride 1 or 2) -> GroupNorm -> activation."""
    groups = math.gcd(cfg.norm_groups, cout)
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.GroupNorm(groups, cout),
        ACTIVATIONS[cfg.activation](),
    )


class Encoder(nn.Module):
    """Strided CNN applied to each map separately: one stage per ``cfg.encoder_channels`` entry."""

    def __init__(self, cfg: ModelConfig, in_channels: int):
        super().__init__()
        widths = (in_channels, *cfg.encoder_channels)
        self.stages = nn.ModuleList(
            nn.Sequential(conv_block(a, b, cfg, stride=2), conv_block(b, b, cfg))
            for a, b in zip(widths[:-1], widths[1:], strict=True)
        )

    def forward(self, x: Tensor) -> list[Tensor]:
        """x (N, C, H, W) -> features of every stage, [(N, c_l, H / 2**l, W / 2**l)], l = 1..d."""
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats


class Decoder(nn.Module):
    """Upsampling path: at each scale, nearest x2 upsample, concat the skip, conv block."""

    def __init__(self, cfg: ModelConfig, in_channels: int, core_channels: int):
        super().__init__()
        enc = tuple(cfg.encoder_channels)
        skips = (in_channels, *enc[:-1])  # skip width at scales /1, /2, ... /2**(d-1)
        outs = (enc[0], *enc[:-1])  # decoder width at those scales
        blocks, width = [], core_channels
        for skip, out in reversed(list(zip(skips, outs, strict=True))):
            blocks.append(conv_block(width + skip, out, cfg))
            width = out
        self.blocks = nn.ModuleList(blocks)
        self.out_channels = width

    def forward(self, y: Tensor, skips: list[Tensor]) -> Tensor:
        """y (B, c, H / 2**d, W / 2**d), skips finest first -> (B, out_channels, H, W)."""
        for block, skip in zip(self.blocks, reversed(skips), strict=True):
            y = F.interpolate(y, scale_factor=2.0, mode="nearest")
            y = block(torch.cat([y, skip], dim=1))
        return y


class LeadFusion(nn.Module):
    """Guidance valid at a lead -> logit increments for that lead (one module for all leads).

    Works at half resolution: NWP fields are smooth at the grid scale, and at full resolution
    this module cost as much as the rest of the network (a training step at conus-0.25 took
    1.48 s against 0.82 s without guidance; at half resolution 0.94 s). ``embed``: stride-2
    3x3 conv block of the guidance channels; ``mix``: 3x3 conv block of the 2x2-averaged decoder
    output beside that embedding; ``out``: 1x1 to the thresholds, zero at first, upsampled
    bilinearly to the grid; ``direct``: 1x1 of the guidance at full resolution, so detail at
    the grid scale (a regridded convection-allowing model) still reaches each cell. Both outputs
    start at zero.
    """

    def __init__(self, cfg: ModelConfig, guide_channels: int, dec_channels: int, n_thr: int):
        super().__init__()
        width = cfg.encoder_channels[0]
        self.embed = conv_block(guide_channels, width, cfg, stride=2)
        self.mix = conv_block(dec_channels + width, width, cfg)
        self.out = nn.Conv2d(width, n_thr, 1)
        self.direct = nn.Conv2d(guide_channels, n_thr, 1, bias=False)
        for conv in (self.out, self.direct):
            nn.init.zeros_(conv.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, dec: Tensor, guide: Tensor) -> Tensor:
        """dec (B, c, H, W), guide (B, K, G, H, W), H and W even -> (B, K * n_thr, H, W),
        lead-major."""
        B, K = guide.shape[:2]
        g = guide.flatten(0, 1)  # (B*K, G, H, W)
        e = self.embed(g)  # (B*K, w, H/2, W/2)
        d = F.avg_pool2d(dec, 2)
        d = d.unsqueeze(1).expand(B, K, *d.shape[1:]).flatten(0, 1)  # (B*K, c, H/2, W/2)
        a = self.out(self.mix(torch.cat([d, e], dim=1)))  # (B*K, n_thr, H/2, W/2)
        a = F.interpolate(a, scale_factor=2.0, mode="bilinear", align_corners=False)
        a = a + self.direct(g)
        return a.reshape(B, K * a.shape[1], *a.shape[2:])


class LightningForecaster(nn.Module):
    """Encoder -> recurrent core -> decoder; forward ``(B, T, C, H, W) -> (B, n_out, n_thr, H, W)``.

    Attributes ``in_channels``, ``n_out``, ``thresholds``, ``guide_channels`` record what the model
    was built for.
    """

    def __init__(self, cfg: ModelConfig, in_channels: int, n_out: int, guide_channels: int = 0):
        super().__init__()
        self.cfg, self.in_channels, self.n_out = cfg, in_channels, n_out
        self.guide_channels = int(guide_channels)
        self.thresholds = tuple(cfg.thresholds)
        self.multiple = 2 ** len(cfg.encoder_channels)
        self.encoder = Encoder(cfg, in_channels)
        self.core = build_core(cfg, cfg.encoder_channels[-1])
        self.dropout = nn.Dropout2d(cfg.dropout) if cfg.dropout > 0 else nn.Identity()
        self.decoder = Decoder(cfg, in_channels, self.core.out_channels)
        self.head = nn.Conv2d(self.decoder.out_channels, n_out * len(self.thresholds), 1)
        self._init_head()
        self.fusion = None  # built after everything else: the same init draws without guidance
        if self.guide_channels:
            n_thr, width = len(self.thresholds), self.decoder.out_channels
            self.fusion = LeadFusion(cfg, self.guide_channels, width, n_thr)

    def _init_head(self) -> None:
        """Zero weights: the untrained forecast is the offset (climatology) for every lead."""
        nn.init.zeros_(self.head.weight)
        bias = self.head.bias.detach().view(self.n_out, len(self.thresholds))
        bias.zero_()
        bias[:, 1:] = _THRESHOLD_GAP_BIAS

    def forward(self, x: Tensor, guide: Tensor | None = None, clim: Tensor | None = None) -> Tensor:
        """x (B, T, C, H, W) float (and guide (B, n_out, G, H, W) with guidance; clim
        (B, n_out, H, W), each lead's climatology, for sub-daily maps) -> logits
        (B, n_out, n_thr, H, W) float32."""
        self._check_input(x, guide, clim)
        B, T, C, H, W = x.shape
        frames = self._pad(x.reshape(B * T, C, H, W))  # (B*T, C, H', W'), H', W' multiples
        feats = self.encoder(frames)
        deep = feats[-1]
        z = deep.reshape(B, T, *deep.shape[1:])  # (B, T, c_d, H'/2**d, W'/2**d)
        y = self.dropout(self.core(z))
        last = [f.reshape(B, T, *f.shape[1:])[:, -1] for f in [frames, *feats[:-1]]]
        dec = self.decoder(y, last)  # (B, c, H', W')
        a = self.head(dec)  # (B, n_out*n_thr, H', W')
        if self.fusion is not None:
            a = a + self.fusion(dec, self._pad(guide.flatten(0, 1)).unflatten(0, guide.shape[:2]))
        a = a[..., :H, :W].float()  # (B, n_out*n_thr, H, W)
        logits = self._monotone(a.reshape(B, self.n_out, len(self.thresholds), H, W))
        if self.cfg.clim_offset:
            logits = logits + self._clim_logit(x, clim)
        return logits

    def _pad(self, frames: Tensor) -> Tensor:
        """Replicate-pad (N, C, H, W) at the bottom/right to a multiple of 2**depth."""
        H, W = frames.shape[-2:]
        ph, pw = -H % self.multiple, -W % self.multiple
        if ph == 0 and pw == 0:
            return frames
        return F.pad(frames, (0, pw, 0, ph), mode="replicate")

    @staticmethod
    def _monotone(a: Tensor) -> Tensor:
        """(B, n_out, n_thr, H, W): logit_k = a_0 - sum_{j<=k} softplus(a_j); decreasing in k."""
        if a.shape[2] == 1:
            return a
        gaps = F.softplus(a[:, :, 1:]).cumsum(dim=2)
        return torch.cat([a[:, :, :1], a[:, :, :1] - gaps], dim=2)

    def _clim_logit(self, x: Tensor, clim: Tensor | None) -> Tensor:
        """logit(clip(climatology)) float32: of each lead, (B, n_out, 1, H, W), when ``clim`` is
        given, else of the last input step, (B, 1, 1, H, W)."""
        eps = self.cfg.clim_eps
        if clim is not None:
            return torch.logit(clim.float().clamp(eps, 1 - eps))[:, :, None]
        last = x[:, -1, self.cfg.clim_channel].float().clamp(eps, 1 - eps)
        return torch.logit(last)[:, None, None]

    def _check_input(self, x: Tensor, guide: Tensor | None, clim: Tensor | None = None) -> None:
        if x.dim() != 5 or x.shape[2] != self.in_channels:
            expected = f"(B, T, {self.in_channels}, H, W)"
            raise UserError(f"model input: x has shape {tuple(x.shape)}; expected {expected}")
        want_clim = (x.shape[0], self.n_out, *x.shape[-2:])
        if clim is not None and tuple(clim.shape) != want_clim:
            raise UserError(
                f"model input: clim has shape {tuple(clim.shape)}; expected {want_clim}"
            )
        if self.fusion is None and guide is not None:
            raise UserError("model input: guidance given to a model built without guidance")
        if self.fusion is None:
            return
        want = (x.shape[0], self.n_out, self.guide_channels, *x.shape[-2:])
        if guide is None or tuple(guide.shape) != want:
            got = "none" if guide is None else tuple(guide.shape)
            raise UserError(f"model input: guidance of shape {got}; expected {want}")


def _check_config(cfg: ModelConfig, in_channels: int, n_out: int) -> None:
    """Reject configs that would fail deep inside torch, naming the key."""
    problems = []
    if not cfg.encoder_channels or min(cfg.encoder_channels) < 1:
        problems.append("model.encoder_channels must be one or more positive widths")
    if not cfg.thresholds or list(cfg.thresholds) != sorted(set(cfg.thresholds)):
        problems.append(f"model.thresholds {list(cfg.thresholds)} must be strictly increasing")
    if cfg.activation not in ACTIVATIONS:
        valid = ", ".join(ACTIVATIONS)
        problems.append(f"model.activation {cfg.activation!r} must be one of {valid}")
    if cfg.kernel_size % 2 != 1:
        problems.append(f"model.kernel_size {cfg.kernel_size} must be odd")
    if cfg.clim_offset and not 0 <= cfg.clim_channel < in_channels:
        problems.append(f"model.clim_channel {cfg.clim_channel} is not below {in_channels}")
    if n_out < 1:
        problems.append(f"n_out {n_out} must be >= 1")
    if problems:
        raise UserError("config: " + "; ".join(problems))


def build_model(
    cfg: ModelConfig, in_channels: int, n_out: int, guide_channels: int = 0
) -> nn.Module:
    """The forecaster described by ``cfg`` for ``in_channels`` input channels and ``n_out`` leads.

    Parameters
    ----------
    cfg : ModelConfig
        Architecture; ``cfg.cell`` names the recurrent core (see :data:`forecast.model.cells.CORES`).
    in_channels : int
        Channels C of the input maps ``x (B, T, C, H, W)`` (``forecast.training.features.N_CHANNELS``).
    n_out : int
        Lead times 1..n_out forecast at once.
    guide_channels : int
        Guidance channels G per lead (0: no guidance; the forward then takes ``x`` only).

    Returns
    -------
    nn.Module
        ``forward(x (B, T, C, H, W)) -> logits (B, n_out, len(cfg.thresholds), H, W)`` float32.

    Raises
    ------
    UserError
        On an unknown cell, activation or flat_rnn name, or inconsistent widths and thresholds.
    """
    _check_config(cfg, in_channels, n_out)
    return LightningForecaster(cfg, in_channels, n_out, guide_channels)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
