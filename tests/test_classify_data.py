"""ImageFolder reading and its errors; the shipped digits dataset writer; classifier train/resume."""

import numpy as np
import pytest
import torch
from PIL import Image

from donna_nas.data.imagefolder import ImageFolder, load_split, write_digits_imagefolder
from donna_nas.errors import UserError


@pytest.fixture(autouse=True)
def _one_thread():  # small convolutions: one thread is faster and unaffected by a loaded machine
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)


def _img(path, value=128, size=(6, 5), mode="L"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value).save(path)


def test_imagefolder_reads_classes_in_sorted_order_resized_to_rgb(tmp_path):
    _img(tmp_path / "cat" / "a.png", 255)
    _img(tmp_path / "ant" / "b.jpg", 0, mode="RGB")
    _img(tmp_path / "ant" / "c.png", 51)
    (tmp_path / "ant" / "notes.txt").write_text("not an image")
    ds = ImageFolder(tmp_path, size=(4, 8))
    assert ds.classes == ["ant", "cat"] and len(ds) == 3
    x, y = ds.tensors()
    assert x.shape == (3, 3, 4, 8) and y.tolist() == [0, 0, 1]
    assert torch.allclose(x[1], torch.full((3, 4, 8), 0.2), atol=1 / 255)
    assert torch.allclose(x[2], torch.ones(3, 4, 8))


def test_imagefolder_errors_name_the_folder_or_file(tmp_path):
    with pytest.raises(UserError, match="image folder not found"):
        ImageFolder(tmp_path / "missing")
    (tmp_path / "empty_root").mkdir()
    with pytest.raises(UserError, match="no class folders"):
        ImageFolder(tmp_path / "empty_root")
    _img(tmp_path / "r" / "one" / "a.png")
    (tmp_path / "r" / "two").mkdir()
    with pytest.raises(UserError, match=r"r/two: class folder holds no images"):
        ImageFolder(tmp_path / "r")
    _img(tmp_path / "r" / "two" / "b.png")
    (tmp_path / "r" / "two" / "broken.png").write_bytes(b"\x89PNG not really")
    ds = ImageFolder(tmp_path / "r", size=(4, 4))
    with pytest.raises(UserError, match=r"broken\.png: cannot read the image"):
        ds.tensors()
    with pytest.raises(UserError, match="missing \\['three'\\]"):
        ImageFolder(tmp_path / "r", classes=["one", "three", "two"])


def test_split_layout_errors(tmp_path):
    _img(tmp_path / "train" / "a" / "x.png")
    with pytest.raises(UserError, match="val: split folder not found"):
        load_split(tmp_path, "val", (4, 4))
    _img(tmp_path / "val" / "b" / "y.png")
    with pytest.raises(UserError, match="class folders differ"):
        load_split(tmp_path, "val", (4, 4))


def test_digits_writer_is_a_stratified_deterministic_copy_of_sklearn_digits(tmp_path):
    from sklearn.datasets import load_digits

    counts = write_digits_imagefolder(tmp_path / "d", size=8, seed=3)
    assert sum(counts.values()) == 1797 and counts["train"] > counts["val"] > 0 and counts["test"] > 0
    names = {s: {p.name for p in (tmp_path / "d" / s).rglob("*.png")} for s in counts}
    assert not (names["train"] & names["val"]) and not (names["train"] & names["test"])
    digits = load_digits()
    x, y, classes = load_split(tmp_path / "d", "val", (8, 8))
    assert classes == [str(c) for c in range(10)] and len(set(y.tolist())) == 10
    ds = ImageFolder(tmp_path / "d" / "val", size=(8, 8))
    for (path, label), img in list(zip(ds.samples, x))[:20]:
        i = int(path.stem)  # files are named by their index in load_digits
        assert digits.target[i] == label
        want = np.round(digits.images[i] / 16 * 255)
        assert np.abs(img[0].numpy() * 255 - want).max() <= 1
    write_digits_imagefolder(tmp_path / "e", size=8, seed=3)
    a = sorted((tmp_path / "d").rglob("*.png"))
    b = sorted((tmp_path / "e").rglob("*.png"))
    assert [p.relative_to(tmp_path / "d") for p in a] == [p.relative_to(tmp_path / "e") for p in b]
    assert all(p.read_bytes() == q.read_bytes() for p, q in zip(a[:50], b[:50]))
    with pytest.raises(UserError, match="not empty"):
        write_digits_imagefolder(tmp_path / "d", size=8)


def test_resumed_training_matches_an_uninterrupted_run(tmp_path, monkeypatch):
    from safetensors.torch import load_file

    import donna_nas.tasks.depth.run as run_mod
    from donna_nas.tasks.classify.train import ClassifyConfig, train_classifier

    write_digits_imagefolder(tmp_path / "d", size=32, seed=0)
    data = load_split(tmp_path / "d", "train", (32, 32), limit=256)
    arch = "b1:ir_d1_k3_e2_c8_relu|b2:ir_d1_k3_e2_c16_relu|b3:ir_d1_k3_e2_c16_relu|b4:ir_d1_k3_e2_c24_relu|b5:ir_d1_k3_e2_c32_relu"
    cfg = dict(data=str(tmp_path / "d"), backbone=arch, space="tiny", epochs=2, batch=32, checkpoint_every=3,
               max_steps=10)
    train_classifier(ClassifyConfig(**cfg), tmp_path / "full", progress=False, data=data)
    real = run_mod.save_checkpoint

    def save_then_die(*a, **k):  # a kill right after the first checkpoint (step 3)
        real(*a, **k)
        raise KeyboardInterrupt

    monkeypatch.setattr(run_mod, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train_classifier(ClassifyConfig(**cfg), tmp_path / "cut", progress=False, data=data)
    monkeypatch.setattr(run_mod, "save_checkpoint", real)
    assert not (tmp_path / "cut" / "model.safetensors").exists()
    with pytest.raises(UserError, match="already holds a run"):
        train_classifier(ClassifyConfig(**cfg), tmp_path / "cut", progress=False, data=data)
    train_classifier(None, tmp_path / "cut", resume=True, progress=False, data=data)
    a = load_file(str(tmp_path / "full" / "model.safetensors"))
    b = load_file(str(tmp_path / "cut" / "model.safetensors"))
    assert a.keys() == b.keys()
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a)
