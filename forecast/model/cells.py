"""Recurrent cores of the lightning forecaster, chosen by name from :data:`CORES`.

A core reads the encoder's feature grids of every input step and returns the state that the
decoder turns into strike probabilities:

``core(z: (B, T, C_in, h, w)) -> (B, C_out, h, w)``  (``C_out = core.out_channels``)

Cores:

- ``convrnn``  plain convolutional tanh recurrence ``h_t = tanh(W_x * x_t + W_h * h_{t-1} + b)``
- ``convgru``  convolutional GRU (reset/update gates from one convolution)
- ``convlstm`` convolutional LSTM, all four gates from one fused convolution of ``cat(x, h)``
- ``flat``     the ablation: pooled, flattened features through ``torch.nn.RNN | GRU | LSTM``

The convolutional cores stack one cell per entry of ``cfg.hidden_channels``; layer ``l`` reads
the hidden sequence of layer ``l - 1``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from data_prep.errors import UserError
from forecast.config import ModelConfig

State = tuple[Tensor, ...]


class ConvRNNCell(nn.Module):
    """``h_t = tanh(W_x * x_t + W_h * h_{t-1} + b)``, both convolutions as one on cat(x, h)."""

    n_states = 1

    def __init__(self, in_channels: int, hidden: int, kernel_size: int = 3):
        super().__init__()
        self.hidden = hidden
        self.conv = nn.Conv2d(in_channels + hidden, hidden, kernel_size, padding=kernel_size // 2)

    def forward(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        """x (B, C_in, h, w), state (h,) -> hidden (B, hidden, h, w), new state."""
        h = torch.tanh(self.conv(torch.cat([x, state[0]], dim=1)))
        return h, (h,)


class ConvGRUCell(nn.Module):
    """Convolutional GRU: gates ``r, z`` from one conv of cat(x, h); candidate from cat(x, r*h)."""

    n_states = 1

    def __init__(self, in_channels: int, hidden: int, kernel_size: int = 3):
        super().__init__()
        self.hidden = hidden
        pad = kernel_size // 2
        self.gates = nn.Conv2d(in_channels + hidden, 2 * hidden, kernel_size, padding=pad)
        self.candidate = nn.Conv2d(in_channels + hidden, hidden, kernel_size, padding=pad)

    def forward(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        """x (B, C_in, h, w), state (h,) -> hidden (B, hidden, h, w), new state."""
        h = state[0]
        r, z = torch.sigmoid(self.gates(torch.cat([x, h], dim=1))).chunk(2, dim=1)
        n = torch.tanh(self.candidate(torch.cat([x, r * h], dim=1)))
        h = (1 - z) * h + z * n
        return h, (h,)


class ConvLSTMCell(nn.Module):
    """Convolutional LSTM; one fused convolution of cat(x, h) yields the gates i, f, o, g."""

    n_states = 2

    def __init__(self, in_channels: int, hidden: int, kernel_size: int = 3):
        super().__init__()
        self.hidden = hidden
        pad = kernel_size // 2
        self.conv = nn.Conv2d(in_channels + hidden, 4 * hidden, kernel_size, padding=pad)
        with torch.no_grad():  # forget-gate bias 1: remember by default early in training
            self.conv.bias[hidden : 2 * hidden].fill_(1.0)

    def forward(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        """x (B, C_in, h, w), state (h, c) -> hidden (B, hidden, h, w), new state."""
        h, c = state
        i, f, o, g = self.conv(torch.cat([x, h], dim=1)).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, (h, c)


CELLS: dict[str, type[nn.Module]] = {
    "convrnn": ConvRNNCell,
    "convgru": ConvGRUCell,
    "convlstm": ConvLSTMCell,
}


class ConvRecurrentCore(nn.Module):
    """Stacked convolutional cells run over the input steps; returns the top layer's last hidden."""

    def __init__(self, cell: type[nn.Module], in_channels: int, hidden: tuple[int, ...], k: int):
        super().__init__()
        widths = (in_channels, *hidden)
        pairs = zip(widths[:-1], widths[1:], strict=True)
        self.cells = nn.ModuleList(cell(a, b, k) for a, b in pairs)
        self.out_channels = hidden[-1]

    def forward(self, z: Tensor) -> Tensor:
        """z (B, T, C_in, h, w) -> (B, hidden[-1], h, w)."""
        steps = z.unbind(1)  # T x (B, C_in, h, w); unbind keeps backward linear in T
        for cell in self.cells:
            zero = steps[0].new_zeros(steps[0].shape[0], cell.hidden, *steps[0].shape[2:])
            state = (zero,) * cell.n_states
            outs = []
            for x in steps:
                h, state = cell(x, state)
                outs.append(h)
            steps = outs
        return steps[-1]


class FlatRecurrentCore(nn.Module):
    """The ablation: features pooled to ``flat_pool``, flattened, run through a torch.nn RNN.

    The last output goes through a linear layer back to a ``(hidden[-1], *flat_pool)`` grid that is
    upsampled to the encoder's grid, so the decoder is the same as for the convolutional cores.
    """

    RNNS: dict[str, type[nn.RNNBase]] = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}

    def __init__(self, cfg: ModelConfig, in_channels: int):
        super().__init__()
        if cfg.flat_rnn not in self.RNNS:
            valid = ", ".join(self.RNNS)
            msg = f"config: model.flat_rnn {cfg.flat_rnn!r} is unknown; use one of {valid}"
            raise UserError(msg)
        self.pool_size = tuple(cfg.flat_pool)
        n_pool = self.pool_size[0] * self.pool_size[1]
        self.out_channels = cfg.hidden_channels[-1]
        self.pool = nn.AdaptiveAvgPool2d(self.pool_size)
        rnn = self.RNNS[cfg.flat_rnn]
        n_layers = len(cfg.hidden_channels)
        self.rnn = rnn(in_channels * n_pool, cfg.flat_hidden, num_layers=n_layers, batch_first=True)
        self.proj = nn.Linear(cfg.flat_hidden, self.out_channels * n_pool)

    def forward(self, z: Tensor) -> Tensor:
        """z (B, T, C_in, h, w) -> (B, hidden[-1], h, w)."""
        B, T, C, h, w = z.shape
        v = self.pool(z.reshape(B * T, C, h, w)).reshape(B, T, -1)  # (B, T, C * ph * pw)
        out, _ = self.rnn(v)  # (B, T, flat_hidden)
        g = self.proj(out[:, -1]).reshape(B, self.out_channels, *self.pool_size)
        return F.interpolate(g, size=(h, w), mode="bilinear", align_corners=False)


def _conv_core(name: str) -> Callable[[ModelConfig, int], nn.Module]:
    def factory(cfg: ModelConfig, in_channels: int) -> nn.Module:
        hidden = tuple(cfg.hidden_channels)
        return ConvRecurrentCore(CELLS[name], in_channels, hidden, cfg.kernel_size)

    return factory


CORES: dict[str, Callable[[ModelConfig, int], nn.Module]] = {
    **{name: _conv_core(name) for name in CELLS},
    "flat": FlatRecurrentCore,
}


def build_core(cfg: ModelConfig, in_channels: int) -> nn.Module:
    """The recurrent core named by ``cfg.cell`` reading ``in_channels`` feature channels.

    Raises
    ------
    UserError
        When ``cfg.cell`` is not in :data:`CORES` (the message lists the valid names).
    """
    if cfg.cell not in CORES:
        valid = ", ".join(CORES)
        raise UserError(f"config: model.cell {cfg.cell!r} is unknown; use one of {valid}")
    if not cfg.hidden_channels:
        raise UserError("config: model.hidden_channels is empty; give at least one layer width")
    return CORES[cfg.cell](cfg, in_channels)
