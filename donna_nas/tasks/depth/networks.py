"""Depth decoder, pose network and the exported depth network.

The decoder adapts to any encoder exposing five taps (strides 2…32) and ``.channels``: ResNet
teachers and searched encoders share it. Its activation is selectable because ELU (the Monodepth2
default) quantizes poorly; ReLU gives clean INT8 later.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from donna_nas.nn.pad import reflect_pad1
from donna_nas.nn.resnet import ResNetEncoder, resnet18

__all__ = ["DepthDecoder", "PoseDecoder", "PoseNet", "DepthNet", "DECODER_CHANNELS"]

DECODER_CHANNELS = (16, 32, 64, 128, 256)


def _act(name: str) -> nn.Module:
    if name == "elu":
        return nn.ELU(inplace=True)
    if name == "relu":
        return nn.ReLU(inplace=True)
    raise ValueError(f"decoder activation must be 'elu' or 'relu', not {name!r}")


class Conv3x3(nn.Module):
    """Reflection pad 1 then a 3×3 conv with bias (no zero padding: avoids dark borders in disparity).

    A 1-pixel-high/wide map cannot be reflected; it is edge-replicated instead (tiny test inputs).
    """

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if min(x.shape[-2:]) < 2:
            return self.conv(F.pad(x, (1, 1, 1, 1), mode="replicate"))
        return self.conv(reflect_pad1(x))  # reflection pad 1 with a fast backward (donna_nas.nn.pad)


class ConvBlock(nn.Sequential):
    def __init__(self, cin: int, cout: int, act: str):
        super().__init__(Conv3x3(cin, cout), _act(act))


class DepthDecoder(nn.Module):
    """U-Net decoder: per stage conv → nearest ×2 upsample → concat skip → conv; sigmoid disparity at scales 0–3."""

    def __init__(self, enc_channels: list[int], scales: tuple[int, ...] = (0, 1, 2, 3), act: str = "elu"):
        super().__init__()
        if len(enc_channels) != 5:
            raise ValueError(f"encoder must expose 5 taps, got channels {enc_channels}")
        self.enc_channels, self.scales, self.act = list(enc_channels), tuple(scales), act
        dec = DECODER_CHANNELS
        self.upconv0 = nn.ModuleList()
        self.upconv1 = nn.ModuleList()
        for i in range(5):  # index i = stage i (stride 2^i at its end)
            cin = enc_channels[4] if i == 4 else dec[i + 1]
            self.upconv0.append(ConvBlock(cin, dec[i], act))
            cin1 = dec[i] + (enc_channels[i - 1] if i > 0 else 0)
            self.upconv1.append(ConvBlock(cin1, dec[i], act))
        self.dispconv = nn.ModuleList([Conv3x3(dec[s], 1) for s in range(4)])

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        """Returns disparities for scales 0..3 (index = scale); entries not in ``scales`` are None."""
        x = feats[4]
        out: list[torch.Tensor | None] = [None] * 4
        for i in range(4, -1, -1):
            x = self.upconv0[i](x)
            x = F.interpolate(x, scale_factor=2, mode="nearest")
            if i > 0:
                skip = feats[i - 1]
                if x.shape[-2:] != skip.shape[-2:]:  # encoders with odd intermediate sizes
                    x = F.interpolate(x, size=skip.shape[-2:], mode="nearest")
                x = torch.cat([x, skip], 1)
            x = self.upconv1[i](x)
            if i in self.scales and i < 4:
                out[i] = torch.sigmoid(self.dispconv[i](x))
        return out  # type: ignore[return-value]

    def forward_scale0(self, feats: list[torch.Tensor]) -> torch.Tensor:
        x = feats[4]
        for i in range(4, -1, -1):
            x = self.upconv0[i](x)
            x = F.interpolate(x, scale_factor=2, mode="nearest")
            if i > 0:
                skip = feats[i - 1]
                if x.shape[-2:] != skip.shape[-2:]:
                    x = F.interpolate(x, size=skip.shape[-2:], mode="nearest")
                x = torch.cat([x, skip], 1)
            x = self.upconv1[i](x)
        return torch.sigmoid(self.dispconv[0](x))


class DepthNet(nn.Module):
    """Encoder + decoder. ``forward`` gives the scale-0 disparity only (what is exported)."""

    def __init__(self, encoder: nn.Module, decoder: DepthDecoder):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder.forward_scale0(self.encoder(x))

    def multiscale(self, x: torch.Tensor) -> list[torch.Tensor]:
        """All four disparity scales (training)."""
        return self.decoder(self.encoder(x))


class PoseDecoder(nn.Module):
    """Stride-32 features → squeeze 1×1 → two 3×3 → 1×1 to 6·n, spatial mean, ×0.01 (small initial motions)."""

    def __init__(self, enc_last: int, num_frames: int = 2):
        super().__init__()
        self.num_frames = num_frames
        self.squeeze = nn.Conv2d(enc_last, 256, 1)
        self.conv1 = nn.Conv2d(256, 256, 3, padding=1)
        self.conv2 = nn.Conv2d(256, 256, 3, padding=1)
        self.out = nn.Conv2d(256, 6 * num_frames, 1)
        self.relu = nn.ReLU()

    def forward(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.relu(self.squeeze(f))
        x = self.relu(self.conv1(x))
        x = self.relu(self.conv2(x))
        x = 0.01 * self.out(x).mean((2, 3))
        x = x.view(-1, self.num_frames, 1, 6)
        return x[..., :3], x[..., 3:]


class PoseNet(nn.Module):
    """Separate ResNet18 on 2 stacked frames (6 channels) + pose decoder → first pose (B,1,3) each."""

    def __init__(self, encoder: ResNetEncoder | None = None):
        super().__init__()
        self.encoder = encoder if encoder is not None else resnet18(num_input_images=2)
        self.decoder = PoseDecoder(self.encoder.channels[-1], 2)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pose mapping camera ``a`` points into camera ``b`` (frames given in temporal order)."""
        feats = self.encoder(torch.cat([a, b], 1))
        axisangle, translation = self.decoder(feats[-1])
        return axisangle[:, 0], translation[:, 0]
