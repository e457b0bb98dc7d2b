"""Denoising autoencoder (Vincent et al. 2008): rebuild the clean input from a corrupted copy.

Images ``(B, C, H, W)``: ``view1`` gets Gaussian noise of std ``noise_std`` and, when
``mask_rate > 0``, a random ``mask_rate`` share of its pixels set to 0; the corrupted image is
encoded to ``(B, F)`` and the ``PixelDecoder`` rebuilds ``(B, C, H, W)``; the loss is the mean
squared error against the clean ``view1`` over all pixels.

Series ``(B, C, T)`` (signals, EHR grids; encoders with ``in_channels`` and ``mask_channels``):
the first ``V = C - mask_channels`` channels are values, the trailing ones observation masks.
Only the values are corrupted (masks kept), a ``SeriesDecoder`` rebuilds ``(B, V, T)`` and the MSE
counts observed entries only: value channel ``v`` weighted by mask channel ``v`` when there is
one mask per value channel (EHR), every entry when there are no masks (signals).
``view2`` is not used.

As an anomaly score, ``reconstruction_error(x)`` gives ``(B,)`` per-case error of the clean
case's reconstruction, and ``reconstruct_flat(shape)`` (images) a numpy ``(N, D) -> (N, D)``
callable to pass as ``reconstruct=`` to the ``reconstruction`` anomaly scorer
(``medssl.anomaly.reconstruction``). The decoder is not part of ``checkpoint.pt`` (encoder only).
"""

from __future__ import annotations

from typing import Callable, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medssl.errors import ConfigError, DataError
from medssl.methods.base import SSLMethod, register_method, require_sizes
from medssl.methods.pixel_decoder import PixelDecoder, image_channels


class SeriesDecoder(nn.Module):
    """``(B, F)`` embedding -> ``(B, channels, T)``: ``Linear(F -> D*8)`` -> two ``ConvTranspose1d``
    (x2 each: 8 -> 32 steps) -> ``Conv1d(3) -> channels``, then linear interpolation to ``T``."""

    def __init__(self, num_features: int, channels: int, dim: int = 64) -> None:
        super().__init__()
        half = max(dim // 2, 1)
        self.dim = dim
        self.fc = nn.Linear(num_features, dim * 8)
        self.up = nn.Sequential(
            nn.ConvTranspose1d(dim, half, kernel_size=4, stride=2, padding=1),  # 8 -> 16
            nn.ReLU(inplace=True),
            nn.ConvTranspose1d(half, half, kernel_size=4, stride=2, padding=1),  # 16 -> 32
            nn.ReLU(inplace=True),
            nn.Conv1d(half, channels, kernel_size=3, padding=1),
        )

    def forward(self, z: torch.Tensor, length: int) -> torch.Tensor:
        """``z (B, F)``, ``length = T`` -> ``(B, channels, T)``."""
        out = self.up(self.fc(z).view(z.shape[0], self.dim, 8))
        return out if out.shape[-1] == length else F.interpolate(out, size=length, mode="linear", align_corners=False)


def observed_mse(pred: torch.Tensor, values: torch.Tensor, masks: torch.Tensor | None) -> torch.Tensor:
    """``pred, values (B, V, T)``; ``masks (B, V, T)`` of 0/1 or ``None`` -> mean squared error over
    the entries whose mask is 1 (every entry when ``masks`` is ``None``)."""
    if masks is None:
        return F.mse_loss(pred, values)
    return ((pred - values).square() * masks).sum() / masks.sum().clamp_min(1.0)


@register_method("denoising_ae")
class DenoisingAE(SSLMethod):
    """``training_loss``: MSE between the decoder's output for the corrupted ``view1`` and ``view1``."""

    pairing: ClassVar[str] = "augment"
    family: ClassVar[str] = "autoassociative"
    summary: ClassVar[str] = "rebuilds the clean case from a noisy, partly blanked copy (reconstruction error doubles as an anomaly score)"
    lightly_parts: ClassVar[str] = ""
    supported_domains: ClassVar[tuple[str, ...]] = ("imaging", "signals", "ehr")

    def __init__(self, encoder: nn.Module, noise_std: float = 0.1, mask_rate: float = 0.0, decoder_dim: int = 64) -> None:
        super().__init__(encoder)
        if not noise_std >= 0.0:
            raise ConfigError(f"denoising_ae noise_std must be >= 0, got {noise_std}")
        if not 0.0 <= mask_rate < 1.0:
            raise ConfigError(f"denoising_ae mask_rate must be in [0, 1), got {mask_rate}")
        if noise_std == 0.0 and mask_rate == 0.0:
            raise ConfigError("denoising_ae needs noise_std > 0 or mask_rate > 0 (otherwise nothing is corrupted)")
        require_sizes("denoising_ae", decoder_dim=decoder_dim)
        self.noise_std, self.mask_rate = noise_std, mask_rate
        n = int(encoder.num_features)
        if hasattr(encoder, "in_channels") and hasattr(encoder, "mask_channels"):  # a series encoder
            self.mask_channels = int(encoder.mask_channels)
            self.value_channels = int(encoder.in_channels) - self.mask_channels
            self.decoder: nn.Module = SeriesDecoder(n, self.value_channels, decoder_dim)
            self.series = True
        else:
            self.mask_channels, self.series = 0, False
            self.decoder = PixelDecoder(n, image_channels("denoising_ae", encoder), decoder_dim)

    def _check(self, x: torch.Tensor) -> None:
        want = 3 if self.series else 4
        if x.ndim != want:
            kind = "series (B, C, T)" if self.series else "images (B, C, H, W)"
            raise DataError(f"denoising_ae with this encoder works on {kind}, got shape {tuple(x.shape)}")

    def _split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Series ``x (B, C, T)`` -> values ``(B, V, T)`` and the masks weighting them (or ``None``)."""
        values, masks = x[:, : self.value_channels], x[:, self.value_channels:]
        if self.mask_channels == 0:
            return values, None
        if self.mask_channels == self.value_channels:
            return values, masks
        return values, masks.amax(dim=1, keepdim=True).expand_as(values)  # observed steps

    def corrupt(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` + Gaussian noise, then a ``mask_rate`` share of pixels / time steps set to 0
        (series: the value channels only, the mask channels are kept)."""
        if self.series:
            values = self.corrupt_values(x[:, : self.value_channels])
            return torch.cat([values, x[:, self.value_channels:]], dim=1)
        return self.corrupt_values(x)

    def corrupt_values(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B, C, ...)`` + noise, then whole pixels / steps (all of ``C``) zeroed at ``mask_rate``."""
        out = x + self.noise_std * torch.randn_like(x) if self.noise_std > 0 else x
        if self.mask_rate > 0:
            out = out * (torch.rand_like(x[:, :1]) >= self.mask_rate).to(x.dtype)
        return out

    def _loss(self, corrupted: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
        """Scalar MSE of the reconstruction of ``corrupted`` against ``clean`` (observed entries for series)."""
        z = self.encoder(corrupted)
        if self.series:
            values, masks = self._split(clean)
            return observed_mse(self.decoder(z, clean.shape[-1]), values, masks)
        return F.mse_loss(self.decoder(z, tuple(clean.shape[-2:])), clean)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` -> its reconstruction without corruption: images ``(B, C, H, W)``, series ``(B, V, T)``."""
        z = self.encoder(x)
        return self.decoder(z, x.shape[-1]) if self.series else self.decoder(z, tuple(x.shape[-2:]))

    @torch.no_grad()
    def reconstruction_error(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (one batch) -> ``(B,)`` mean squared reconstruction error per case (eval mode;
        series: over observed value entries)."""
        was = self.training
        self.eval()
        try:
            pred = self.reconstruct(x)
            if not self.series:
                return (pred - x).square().flatten(1).mean(1)
            values, masks = self._split(x)
            w = torch.ones_like(values) if masks is None else masks
            return ((pred - values).square() * w).flatten(1).sum(1) / w.flatten(1).sum(1).clamp_min(1.0)
        finally:
            self.train(was)

    def reconstruct_flat(self, shape: tuple[int, ...]) -> Callable[[np.ndarray], np.ndarray]:
        """Images: a numpy ``(N, prod(shape)) -> (N, prod(shape))`` reconstruction of flattened
        images of ``shape = (C, H, W)``, for ``ReconstructionScorer(reconstruct=...)``."""
        if self.series:
            raise ConfigError("reconstruct_flat is for images; for series use reconstruction_error")

        @torch.no_grad()
        def run(flat: np.ndarray) -> np.ndarray:
            was = self.training
            self.eval()
            try:
                x = torch.as_tensor(np.asarray(flat, dtype=np.float32)).view(-1, *shape)
                return self.reconstruct(x).flatten(1).double().numpy()
            finally:
                self.train(was)

        return run

    def training_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Denoising MSE on ``batch["view1"]`` (images ``(B, C, H, W)`` or series ``(B, C, T)``)."""
        x = batch["view1"]
        self._check(x)
        return self._loss(self.corrupt(x), x)
