"""KITTI raw loader on a fabricated tree with real Eigen split names and real KITTI file naming."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from donna_nas.data.kitti import (
    KittiRawDataset, _hsv_to_rgb, _rgb_to_hsv, builtin_split_path, color_jitter, read_split,
)
from donna_nas.data.synth import calib_texts
from donna_nas.errors import UserError

NATIVE = (30, 100)  # tiny native images keep the test fast; the loader resizes to SIZE
SIZE = (16, 48)


def test_builtin_splits_are_the_published_lists():
    eigen = read_split("eigen")
    assert len(eigen) == 697 and eigen[0].folder.startswith("2011_")
    assert len(read_split("eigen_benchmark")) == 652
    train = read_split("eigen_zhou/train")  # gzip-compressed in the package
    assert len(train) == 39810 and {e.side for e in train} == {"l", "r"}
    assert len(read_split("eigen_zhou/val")) == 4424
    assert builtin_split_path("eigen").is_file()
    with pytest.raises(UserError, match="line 2|:2:"):
        read_split(["2011_09_26/2011_09_26_drive_0002_sync 69 l", "bad line"])


def _image(frame: int, side: int) -> np.ndarray:
    """Colour encodes (frame, side); a horizontal ramp in green makes flips visible."""
    h, w = NATIVE
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = (frame * 7) % 256
    img[..., 1] = np.linspace(0, 255, w).astype(np.uint8)[None]
    img[..., 2] = 40 if side == 2 else 200
    return img


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """Real Eigen-Zhou lines (first 3 of one drive) plus an Eigen test line at frame 0 of its drive."""
    root = tmp_path_factory.mktemp("kitti")
    lines = [e for e in read_split("eigen_zhou/train") if e.side == "l"][:3]
    test0 = next(e for e in read_split("eigen") if e.frame == 0)
    for e in lines + [test0]:
        for side in (2, 3):
            for f in (e.frame - 1, e.frame, e.frame + 1):
                if f < 0:
                    continue
                d = root / e.folder / f"image_0{side}" / "data"
                d.mkdir(parents=True, exist_ok=True)
                Image.fromarray(_image(f, side)).save(d / f"{f:010d}.png")
                s = root / "semantics" / e.folder / f"image_0{side}" / "data"
                s.mkdir(parents=True, exist_ok=True)
                lab = np.zeros(NATIVE, np.uint8)
                lab[:, : NATIVE[1] // 4] = 13  # car on the left quarter
                Image.fromarray(lab).save(s / f"{f:010d}.png")
        cam, velo = calib_texts(*NATIVE)
        (root / e.date / "calib_cam_to_cam.txt").write_text(cam)
        (root / e.date / "calib_velo_to_cam.txt").write_text(velo)
    return root, [e.line() for e in lines], test0.line()


def test_triplets_in_frame_id_order_with_kitti_intrinsics(tree):
    root, lines, _ = tree
    ds = KittiRawDataset(root, lines, size=SIZE, train=False)
    assert len(ds) == 3
    s = ds[1]
    folder, frame, side = ds.drive_and_frame(1)
    assert side == "l" and frame == int(lines[1].split()[1])
    assert s["images"].shape == (3, 3, *SIZE) and s["images"].dtype == torch.float32
    red = (s["images"][:, 0].mean((-1, -2)) * 255).round().tolist()
    assert red == [(frame * 7) % 256, ((frame - 1) * 7) % 256, ((frame + 1) * 7) % 256]
    assert torch.equal(s["images_aug"], s["images"])
    H, W = SIZE
    assert torch.allclose(s["K"][:3, :3], torch.tensor([[0.58 * W, 0, W / 2], [0, 1.92 * H, H / 2], [0, 0, 1]]))
    assert torch.allclose(s["K"] @ s["inv_K"], torch.eye(4), atol=1e-5)
    assert s["index"].dtype == torch.int64 and int(s["index"]) == 1


def test_augmentation_is_reproducible_per_seed_index_epoch(tree):
    root, lines, _ = tree
    ds = KittiRawDataset(root, lines, size=SIZE, train=True, semantics=True, seed=3)
    draws = []
    for epoch in range(8):
        ds.set_epoch(epoch)
        a, b = ds[0], ds[0]
        assert torch.equal(a["images_aug"], b["images_aug"])
        flipped = bool(a["images"][0, 1, :, 0].mean() > a["images"][0, 1, :, -1].mean())  # ramp reversed
        draws.append((flipped, not torch.equal(a["images_aug"], a["images"])))
        car_left = bool((a["semantics"][:, : SIZE[1] // 4] == 13).all())
        assert car_left != flipped  # labels flip with the image
        assert a["semantics"].dtype == torch.int64
    assert {d[0] for d in draws} == {True, False} and {d[1] for d in draws} == {True, False}


def test_frame_zero_line_is_skipped_only_when_neighbours_are_needed(tree):
    root, lines, test0 = tree
    ds = KittiRawDataset(root, lines + [test0], size=SIZE, frame_ids=(0, -1, 1), train=False)
    assert len(ds) == 3 and [e.line() for e in ds.skipped] == [" ".join(test0.split()[:1] + ["0", "l"])]
    assert len(KittiRawDataset(root, [test0], size=SIZE, frame_ids=(0,), train=False)) == 1


def test_missing_files_error_names_paths_and_count(tree, tmp_path):
    root, lines, _ = tree
    with pytest.raises(UserError, match=r"^9 of 9 files.*2011_.*image_02/data/\d{10}\.png"):
        KittiRawDataset(tmp_path, lines, size=SIZE)
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    date = lines[0].split("/")[0]
    (copy / date / "calib_cam_to_cam.txt").unlink()
    with pytest.raises(UserError, match=rf"^1 of \d+ files.*{date}/calib_cam_to_cam\.txt"):
        KittiRawDataset(copy, lines, size=SIZE, frame_ids=(0,), intrinsics="calib")


def test_calib_intrinsics_and_stereo(tree):
    root, lines, _ = tree
    ds = KittiRawDataset(root, lines[:1], size=SIZE, frame_ids=(0,), train=False, stereo=True, intrinsics="calib")
    s = ds[0]
    assert s["images"].shape[0] == 2  # frame 0 then the other camera
    assert s["images"][0, 2].mean() < 0.3 < s["images"][1, 2].mean()  # blue channel encodes the camera
    H, W = SIZE
    assert torch.allclose(s["K"][:3, :3], torch.tensor([[0.58 * W, 0, W / 2], [0, 1.92 * H, H / 2], [0, 0, 1]]))
    assert float(s["stereo_T"][0, 3]) == pytest.approx(-0.1)


def test_colour_jitter_identity_and_hsv_round_trip():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 5, 7, generator=g)
    assert torch.allclose(_hsv_to_rgb(_rgb_to_hsv(x)), x, atol=1e-5)
    assert torch.allclose(color_jitter(x, 1.0, 1.0, 1.0, 0.0, [0, 1, 2, 3]), x, atol=1e-5)
    y = color_jitter(x, 1.2, 1.0, 1.0, 0.0, [0])
    assert torch.allclose(y, (x * 1.2).clamp(0, 1))
    gray = color_jitter(x, 1.0, 1.0, 0.0, 0.0, [2])
    assert torch.allclose(gray[:, 0], gray[:, 1]) and torch.allclose(gray[:, 1], gray[:, 2])


def test_loader_reads_the_synthetic_world_with_labels(synth_world):
    root = synth_world
    ds = KittiRawDataset(root, "train", size=(32, 96), train=True, semantics=True, intrinsics="calib")
    kitti = KittiRawDataset(root, "train", size=(32, 96), train=False)
    assert len(ds) == len(kitti) > 0
    s = ds[0]
    assert s["images"].shape == (3, 3, 32, 96) and s["semantics"].shape == (32, 96)
    assert set(s["semantics"].unique().tolist()) <= set(range(19))
    # calibration written by the synthetic world = KITTI's normalised K at any size
    assert torch.allclose(kitti[0]["K"], KittiRawDataset(root, "train", size=(32, 96), train=False,
                                                         intrinsics="calib")[0]["K"], atol=1e-4)


def test_calib_intrinsics_follow_a_flip(tree):
    root, lines, _ = tree
    ds = KittiRawDataset(root, lines[:1], size=SIZE, frame_ids=(0,), train=True, intrinsics="calib", seed=0)
    seen = set()
    for epoch in range(10):
        ds.set_epoch(epoch)
        s = ds[0]
        flipped = bool(s["images"][0, 1, :, 0].mean() > s["images"][0, 1, :, -1].mean())
        cx = float(s["K"][0, 2])
        assert cx == pytest.approx((SIZE[1] - 1) - SIZE[1] / 2 if flipped else SIZE[1] / 2)
        seen.add(flipped)
    assert seen == {True, False}
