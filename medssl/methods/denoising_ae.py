"""Denoising autoencoder (Vincent et al. 2008): rebuild the clean image from a corrupted copy.

``view1`` (B, C, H, W) is corrupted with Gaussian noise of std ``noise_std`` and, when
``mask_rate > 0``, a random ``mask_rate`` share of its pixels set to 0; the corrupted image is
encoded to ``(B, F)`` and the ``PixelDecoder`` rebuilds ``(B, C, H, W)``; the loss is the mean
squared error against the clean ``view1`` over all pixels. ``view2`` is not used. Images only.

As an anomaly score, ``reconstruction_error(x)`` gives ``(B,)`` per-image MSE of the clean image's
reconstruction, and ``reconstruct_flat(shape)`` a numpy ``(N, D) -> (N, D)`` callable to pass as
``reconstruct=`` to the ``reconstruction`` anomaly scorer (``medssl.anomaly.reconstruction``).
"""

from __future__ import annotations

from typing import Callable, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medssl.errors import ConfigError
from medssl.methods.base import SSLMethod, register_method, require_sizes
from medssl.methods.pixel_decoder import PixelDecoder, image_channels, require_images


@register_method("denoising_ae")
class DenoisingAE(SSLMethod):
    """``training_loss``: MSE between the decoder's output for the corrupted ``view1`` and ``view1``."""

    pairing: ClassVar[str] = "augment"
    family: ClassVar[str] = "autoassociative"
    summary: ClassVar[str] = "rebuilds the clean image from a noisy, partly blanked copy (reconstruction error doubles as an anomaly score)"
    lightly_parts: ClassVar[str] = ""
    supported_domains: ClassVar[tuple[str, ...]] = ("imaging",)

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
        self.decoder = PixelDecoder(int(encoder.num_features), image_channels("denoising_ae", encoder), decoder_dim)

    def corrupt(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B, C, H, W)`` + Gaussian noise, then a ``mask_rate`` share of pixels (all channels) set to 0."""
        out = x + self.noise_std * torch.randn_like(x)
        if self.mask_rate > 0:
            keep = (torch.rand_like(x[:, :1]) >= self.mask_rate).to(x.dtype)
            out = out * keep
        return out

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B, C, H, W)`` -> its reconstruction ``(B, C, H, W)`` (no corruption)."""
        return self.decoder(self.encoder(x), tuple(x.shape[-2:]))

    @torch.no_grad()
    def reconstruction_error(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B, C, H, W)`` -> ``(B,)`` mean squared reconstruction error per image (eval mode)."""
        was = self.training
        self.eval()
        try:
            return (self.reconstruct(x) - x).square().flatten(1).mean(1)
        finally:
            self.train(was)

    def reconstruct_flat(self, shape: tuple[int, ...]) -> Callable[[np.ndarray], np.ndarray]:
        """A numpy ``(N, prod(shape)) -> (N, prod(shape))`` reconstruction of flattened images of
        ``shape = (C, H, W)``, for ``ReconstructionScorer(reconstruct=...)``."""

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
        """MSE on ``batch["view1"]`` ``(B, C, H, W)``."""
        x = batch["view1"]
        require_images("denoising_ae", x)
        return F.mse_loss(self.decoder(self.encoder(self.corrupt(x)), tuple(x.shape[-2:])), x)
