"""Camera geometry for view synthesis: disparity→depth, pose parameters→4×4, backproject, project, warp.

Pixel convention: pixel (u, v) has integer coordinates u = column 0…W−1, v = row 0…H−1 (no +0.5
centre offset), which is the convention of the KITTI intrinsics used here (cx = W/2).

grid_sample convention — a deliberate choice: projected pixel coordinates are normalised with
(W−1) and (H−1) (pixel 0 ↦ −1, pixel W−1 ↦ +1), and sampling uses ``align_corners=True``, the
matching convention. Then the identity pose reproduces the source image exactly. Monodepth2 was
written for PyTorch 0.4.1 whose grid_sample had these semantics; calling today's grid_sample
without ``align_corners`` (= False) with the same normalisation shifts samples by up to ±0.5 px
towards the image borders, which is a bug we do not reproduce.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "disp_to_depth",
    "rot_from_axisangle",
    "translation_matrix",
    "transformation_from_parameters",
    "BackprojectDepth",
    "Project3D",
    "warp",
]


def disp_to_depth(disp: torch.Tensor, min_depth: float = 0.1, max_depth: float = 100.0):
    """Sigmoid output d∈[0,1] → (scaled disparity in [1/max, 1/min], depth = 1/scaled)."""
    min_disp, max_disp = 1.0 / max_depth, 1.0 / min_depth
    scaled = min_disp + (max_disp - min_disp) * disp
    return scaled, 1.0 / scaled


def rot_from_axisangle(vec: torch.Tensor) -> torch.Tensor:
    """Axis-angle (B,1,3) → 4×4 rotation (B,4,4) by Rodrigues' formula R = cI + (1−c)aaᵀ + s[a]×."""
    angle = torch.linalg.norm(vec, dim=2, keepdim=True)  # B,1,1
    axis = vec / (angle + 1e-7)
    c, s = torch.cos(angle), torch.sin(angle)
    C = 1 - c
    x, y, z = axis[..., 0:1], axis[..., 1:2], axis[..., 2:3]  # B,1,1
    B = vec.shape[0]
    rot = torch.zeros(B, 4, 4, dtype=vec.dtype, device=vec.device)
    rot[:, 0, 0] = (c + C * x * x).view(B)
    rot[:, 0, 1] = (C * x * y - s * z).view(B)
    rot[:, 0, 2] = (C * x * z + s * y).view(B)
    rot[:, 1, 0] = (C * x * y + s * z).view(B)
    rot[:, 1, 1] = (c + C * y * y).view(B)
    rot[:, 1, 2] = (C * y * z - s * x).view(B)
    rot[:, 2, 0] = (C * x * z - s * y).view(B)
    rot[:, 2, 1] = (C * y * z + s * x).view(B)
    rot[:, 2, 2] = (c + C * z * z).view(B)
    rot[:, 3, 3] = 1
    return rot


def translation_matrix(t: torch.Tensor) -> torch.Tensor:
    """Translation (B,1,3) or (B,3) → 4×4 (B,4,4)."""
    t = t.reshape(t.shape[0], 3)
    T = torch.eye(4, dtype=t.dtype, device=t.device).repeat(t.shape[0], 1, 1)
    T[:, :3, 3] = t
    return T


def transformation_from_parameters(axisangle: torch.Tensor, translation: torch.Tensor, invert: bool = False):
    """Pose parameters → 4×4. ``invert=False``: x' = R x + t; ``invert=True``: the exact inverse, x' = Rᵀ(x − t)."""
    R = rot_from_axisangle(axisangle)
    t = translation.clone()
    if invert:
        return R.transpose(1, 2) @ translation_matrix(-t)
    return translation_matrix(t) @ R


def _pixel_grid(h: int, w: int, device, dtype) -> torch.Tensor:
    v, u = torch.meshgrid(
        torch.arange(h, device=device, dtype=dtype), torch.arange(w, device=device, dtype=dtype), indexing="ij"
    )
    return torch.stack([u.reshape(-1), v.reshape(-1), torch.ones(h * w, device=device, dtype=dtype)], 0)  # 3,HW


class BackprojectDepth(nn.Module):
    """Depth (B,1,H,W) + inv_K (B,4,4) → homogeneous camera points (B,4,H·W). Any batch size."""

    def __init__(self, height: int, width: int):
        super().__init__()
        self.height, self.width = height, width
        self.register_buffer("pix", _pixel_grid(height, width, "cpu", torch.float32), persistent=False)

    def forward(self, depth: torch.Tensor, inv_K: torch.Tensor) -> torch.Tensor:
        B = depth.shape[0]
        rays = inv_K[:, :3, :3] @ self.pix.to(depth.dtype).unsqueeze(0).expand(B, -1, -1)
        pts = depth.reshape(B, 1, -1) * rays
        return torch.cat([pts, torch.ones_like(pts[:, :1])], 1)


class Project3D(nn.Module):
    """Points (B,4,N) through K·T → grid (B,H,W,2) in [−1,1], (W−1)/(H−1) normalisation (align_corners=True)."""

    def __init__(self, height: int, width: int, eps: float = 1e-7):
        super().__init__()
        self.height, self.width, self.eps = height, width, eps

    def pixels(self, points: torch.Tensor, K: torch.Tensor, T: torch.Tensor) -> torch.Tensor:
        """Projected pixel coordinates (B,H,W,2), last axis (x, y) in pixels."""
        P = (K @ T)[:, :3, :]
        cam = P @ points
        xy = cam[:, :2] / (cam[:, 2:3] + self.eps)
        return xy.reshape(-1, 2, self.height, self.width).permute(0, 2, 3, 1)

    def forward(self, points: torch.Tensor, K: torch.Tensor, T: torch.Tensor) -> torch.Tensor:
        xy = self.pixels(points, K, T)
        scale = torch.tensor([self.width - 1, self.height - 1], dtype=xy.dtype, device=xy.device)
        return (xy / scale - 0.5) * 2


WARP_SAMPLING = ("exact", "monodepth2")
"""How ``warp`` reads the ``Project3D`` grid: ``exact`` samples where the pixel projects;
``monodepth2`` reads the same (align_corners=True normalised) grid with align_corners=False, as
Monodepth2's code does on PyTorch >= 1.3, which magnifies the sampled source by W/(W-1) and
H/(H-1) about the image centre (half a pixel at the borders), whatever the depth and pose."""


def warp(source: torch.Tensor, grid: torch.Tensor, sampling: str = "exact") -> torch.Tensor:
    """Bilinearly sample ``source`` at ``grid`` (border padding; ``sampling``: ``WARP_SAMPLING``)."""
    if sampling not in WARP_SAMPLING:
        raise ValueError(f"warp sampling must be one of {WARP_SAMPLING}, not {sampling!r}")
    return F.grid_sample(source, grid, mode="bilinear", padding_mode="border", align_corners=sampling == "exact")
