"""The learned motion dictionary: a style_dim × motion_dim weight orthogonalised by QR."""

from __future__ import annotations

import torch
from torch import nn


def qr_basis(weight: torch.Tensor) -> torch.Tensor:
    """Q of the reduced QR decomposition of ``weight + 1e-8`` (official convention), (D, M)."""
    w = weight + 1e-8
    if w.dtype in (torch.float16, torch.bfloat16):
        return torch.linalg.qr(w.float(), mode="reduced")[0].to(w.dtype)
    return torch.linalg.qr(w, mode="reduced")[0]


class Direction(nn.Module):
    """Turns motion magnitudes α (B, M) into a latent path α·Qᵀ (B, D).

    In training Q is recomputed every call (gradients flow through QR into ``weight``, as upstream).
    In eval mode Q is cached and recomputed only when the weight changes (new values, device or dtype).
    """

    def __init__(self, style_dim: int, motion_dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(style_dim, motion_dim))
        self._q_cache: torch.Tensor | None = None
        self._q_key: tuple | None = None

    def basis(self) -> torch.Tensor:
        """Q (D, M) with orthonormal columns."""
        if self.training and torch.is_grad_enabled():
            return qr_basis(self.weight)
        w = self.weight
        key = (w._version, w.data_ptr(), w.device, w.dtype)
        if self._q_cache is None or self._q_key != key:
            with torch.no_grad():
                self._q_cache = qr_basis(w.detach())
            self._q_key = key
        return self._q_cache

    def forward(self, alpha: torch.Tensor | None) -> torch.Tensor:
        q = self.basis()
        if alpha is None:
            return q
        return alpha @ q.t()  # (B, D)
