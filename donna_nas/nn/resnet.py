"""ResNet18 / ResNet50 encoders with torchvision parameter names and five feature taps.

Written here (not imported from torchvision) so the depth task and the blockwise-distillation
teacher share one definition whose state-dict keys match torchvision files (``conv1``, ``bn1``,
``layer1``..``layer4``, optional ``fc``). ``forward`` returns the taps at strides 2, 4, 8, 16, 32
that the depth decoder consumes; input is an image in [0, 1], normalised inside.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from donna_nas.errors import UserError
from donna_nas.nn.small_map_conv import SmallMapConv2d

__all__ = [
    "BasicBlock",
    "Bottleneck",
    "ResNetEncoder",
    "resnet18",
    "resnet50",
    "load_torchvision_state_dict",
]


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    # trains through one GEMM on the last stage's tiny maps (donna_nas/nn/small_map_conv.py)
    return SmallMapConv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


def _conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3×3 convs with an identity (or 1×1 projected) shortcut; ResNet18/34."""

    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = _conv3x3(cin, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        idt = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + idt)


class Bottleneck(nn.Module):
    """1×1 reduce, 3×3 (stride here, as torchvision v1.5), 1×1 expand ×4; ResNet50+."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = _conv1x1(cin, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * 4)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        idt = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + idt)


class ResNetEncoder(nn.Module):
    """ResNet trunk returning 5 taps; ``channels`` lists their channel counts.

    ``num_input_images`` > 1 widens conv1 to 3·n input channels (pose network on stacked frames).
    ``with_fc`` keeps an ImageNet classifier head so full torchvision files round-trip; the head is
    never used by ``forward``.
    """

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: list[int],
        num_input_images: int = 1,
        with_fc: bool = False,
        num_classes: int = 1000,
    ):
        super().__init__()
        self.block_type = block.__name__
        self.layers_spec = list(layers)
        self.num_input_images = int(num_input_images)
        self.register_buffer("mean", torch.tensor(0.45), persistent=False)
        self.register_buffer("std", torch.tensor(0.225), persistent=False)
        self.conv1 = nn.Conv2d(3 * num_input_images, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self._cin = 64
        self.layer1 = self._make_layer(block, 64, layers[0], 1)
        self.layer2 = self._make_layer(block, 128, layers[1], 2)
        self.layer3 = self._make_layer(block, 256, layers[2], 2)
        self.layer4 = self._make_layer(block, 512, layers[3], 2)
        e = block.expansion
        self.channels = [64, 64 * e, 128 * e, 256 * e, 512 * e]
        self.fc = nn.Linear(512 * e, num_classes) if with_fc else None
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(self, block, planes: int, n: int, stride: int) -> nn.Sequential:
        down = None
        if stride != 1 or self._cin != planes * block.expansion:
            down = nn.Sequential(
                _conv1x1(self._cin, planes * block.expansion, stride),
                nn.BatchNorm2d(planes * block.expansion),
            )
        blocks = [block(self._cin, planes, stride, down)]
        self._cin = planes * block.expansion
        blocks += [block(self._cin, planes) for _ in range(1, n)]
        return nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = (x - self.mean) / self.std
        f0 = self.relu(self.bn1(self.conv1(x)))
        f1 = self.layer1(self.maxpool(f0))
        f2 = self.layer2(f1)
        f3 = self.layer3(f2)
        f4 = self.layer4(f3)
        return [f0, f1, f2, f3, f4]


def resnet18(num_input_images: int = 1, with_fc: bool = False) -> ResNetEncoder:
    return ResNetEncoder(BasicBlock, [2, 2, 2, 2], num_input_images, with_fc)


def resnet50(num_input_images: int = 1, with_fc: bool = False) -> ResNetEncoder:
    return ResNetEncoder(Bottleneck, [3, 4, 6, 3], num_input_images, with_fc)


def _summarise(keys: list[str], n: int = 5) -> str:
    head = ", ".join(keys[:n])
    return f"{head}{', ...' if len(keys) > n else ''} ({len(keys)} in all)"


def load_torchvision_state_dict(model: ResNetEncoder, path: str | Path) -> None:
    """Load a torchvision-format ResNet state dict (``fc.*`` ignored) into ``model``.

    For a multi-image encoder (``num_input_images`` = n) a 3-channel ``conv1.weight`` is repeated
    n times along the input axis and divided by n, so n identical frames give the single-image
    response of the original network.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: ResNet weights file not found; pass a torchvision-format .pth file")
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle / zip errors: one line for the user
        first = (str(exc).strip().splitlines() or [""])[0]
        raise UserError(f"{path}: cannot read as a torch state dict ({type(exc).__name__}: {first}); pass a "
                        "torchvision-format .pth file of tensors only") from exc
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise UserError(f"{path}: expected a state dict (name → tensor), got {type(sd).__name__}")
    sd = {k.removeprefix("module."): v for k, v in sd.items() if not k.removeprefix("module.").startswith("fc.")}
    own = {k: v for k, v in model.state_dict().items() if not k.startswith("fc.")}
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys {_summarise(missing)}")
        if unexpected:
            parts.append(f"unexpected keys {_summarise(unexpected)}")
        raise UserError(
            f"{path}: not a {model.block_type} ResNet{_depth_name(model)} torchvision state dict: "
            + "; ".join(parts)
        )
    n = model.num_input_images
    w = sd["conv1.weight"]
    if n > 1 and w.shape[1] == 3:
        sd["conv1.weight"] = torch.cat([w] * n, dim=1) / n
    bad = [k for k, v in own.items() if tuple(sd[k].shape) != tuple(v.shape)]
    if bad:
        k = bad[0]
        raise UserError(
            f"{path}: shape mismatch for {_summarise(bad)}; e.g. {k} is {tuple(sd[k].shape)} in the file, "
            f"{tuple(own[k].shape)} in the model (wrong ResNet depth?)"
        )
    model.load_state_dict(sd, strict=False)


def _depth_name(model: ResNetEncoder) -> str:
    per = 2 if model.block_type == "BasicBlock" else 3
    return str(sum(model.layers_spec) * per + 2)
