"""Replica creation on real images: the astronaut, a crop, scaled and mirrored copies, and bad inputs."""

import json
import pathlib

import cv2
import numpy as np
import pytest

from cvi_lab.stages.avatar.replica_builder import (
    ReplicaBuildError,
    ReplicaLimits,
    build_replica,
    is_complete,
)


def _save(path: pathlib.Path, rgb: np.ndarray) -> pathlib.Path:
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


def test_astronaut_artifacts(astronaut_replica):
    assert is_complete(astronaut_replica)
    meta = json.loads((astronaut_replica / "replica.json").read_text())
    portrait = cv2.imread(str(astronaut_replica / "portrait.png"))
    mask = cv2.imread(str(astronaut_replica / "mask.png"), cv2.IMREAD_GRAYSCALE)
    assert portrait.shape[:2] == mask.shape == (meta["size"], meta["size"])
    assert set(np.unique(mask)) <= {0, 255}
    fx, fy, fw, fh = meta["face"]
    # the face is person, the top corners are background
    assert mask[int(fy + fh / 2), int(fx + fw / 2)] == 255
    assert mask[2, 2] == 0 and mask[2, -3] == 0
    assert 0.2 < meta["person_fraction"] < 0.85
    (le, re) = meta["eyes"]
    assert le[0] < meta["mouth"]["cx"] < re[0]
    assert le[1] < meta["mouth"]["cy"] < fy + fh * 1.05
    assert meta["mouth"]["method"] == "lip-colour"


def _landmarks(out: pathlib.Path) -> dict:
    return json.loads((out / "replica.json").read_text())


def test_crop_scaled_mirrored(tmp_path, astronaut_rgb, astronaut_replica):
    ref = _landmarks(astronaut_replica)
    progress: list[int] = []
    crop = astronaut_rgb[20:300, 110:370]
    build_replica(_save(tmp_path / "crop.png", crop), tmp_path / "crop", progress.append)
    assert progress[0] == 0 and progress[-1] == 100 and progress == sorted(progress)
    big = cv2.resize(astronaut_rgb, None, fx=1.5, fy=1.5, interpolation=cv2.INTER_CUBIC)
    build_replica(_save(tmp_path / "big.jpg", big), tmp_path / "big")
    mirrored = np.ascontiguousarray(astronaut_rgb[:, ::-1])
    build_replica(_save(tmp_path / "mirror.webp", mirrored), tmp_path / "mirror")
    for name in ("crop", "big", "mirror"):
        m = _landmarks(tmp_path / name)
        assert is_complete(tmp_path / name)
        # landmarks in face-relative units agree with the original within 8 % of the face width
        for meta in (m,):
            fx, fy, fw, _ = meta["face"]
            rx, ry, rw, _ = ref["face"]
            mouth_rel = ((meta["mouth"]["cx"] - fx) / fw, (meta["mouth"]["cy"] - fy) / fw)
            ref_rel = ((ref["mouth"]["cx"] - rx) / rw, (ref["mouth"]["cy"] - ry) / rw)
            if name == "mirror":
                ref_rel = (1 - ref_rel[0], ref_rel[1])
            assert abs(mouth_rel[0] - ref_rel[0]) < 0.08, name
            assert abs(mouth_rel[1] - ref_rel[1]) < 0.08, name


@pytest.mark.parametrize(
    "make, expected",
    [
        ("coffee", "no face found"),
        ("two_faces", "several faces"),
        ("tiny", "face too small"),
        ("corrupt", "cannot read image"),
        ("gif", "unsupported file type"),
        ("huge_pixels", "image too large"),
        ("huge_bytes", "file too large"),
        ("missing", "file not found"),
    ],
)
def test_bad_inputs(tmp_path, astronaut_rgb, make, expected):
    from skimage import data

    if make == "coffee":
        path = _save(tmp_path / "coffee.png", data.coffee())
    elif make == "two_faces":
        face = astronaut_rgb[0:260, 120:340]
        path = _save(tmp_path / "two.png", np.hstack([face, face]))
    elif make == "tiny":
        path = _save(tmp_path / "tiny.png", cv2.resize(astronaut_rgb, (160, 160), interpolation=cv2.INTER_AREA))
    elif make == "corrupt":
        good = (tmp_path / "x.png")
        _save(good, astronaut_rgb)
        path = tmp_path / "corrupt.png"
        path.write_bytes(good.read_bytes()[:3000])
    elif make == "gif":
        path = tmp_path / "face.gif"
        path.write_bytes(b"GIF89a" + b"\0" * 100)
    elif make == "huge_pixels":  # a decompression bomb: 9000x9000 flat PNG, small on disk
        path = tmp_path / "huge.png"
        cv2.imwrite(str(path), np.zeros((9000, 9000), np.uint8))
    elif make == "huge_bytes":  # sparse file over the byte limit: rejected before any decoding
        path = tmp_path / "huge.jpg"
        with open(path, "wb") as f:
            f.truncate(26 * 1024 * 1024)
    else:
        path = tmp_path / "nope.png"
    out = tmp_path / "out"
    with pytest.raises(ReplicaBuildError) as err:
        build_replica(path, out)
    assert expected in str(err.value)
    assert "accepted" in str(err.value) or make in ("two_faces", "tiny", "huge_pixels", "huge_bytes", "coffee")
    assert not is_complete(out)


def test_video_source_picks_a_frontal_frame(tmp_path, astronaut_rgb):
    import av

    path = tmp_path / "face.mp4"
    with av.open(str(path), "w") as out:
        s = out.add_stream("mpeg4", rate=25)
        s.width, s.height, s.pix_fmt = 512, 512, "yuv420p"
        for i in range(20):
            # a few frames without the face (blank), then the portrait moving slightly
            img = np.full_like(astronaut_rgb, 40) if i < 6 else np.roll(astronaut_rgb, i, axis=1)
            for pkt in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")):
                out.mux(pkt)
        for pkt in s.encode():
            out.mux(pkt)
    meta = build_replica(path, tmp_path / "vid", limits=ReplicaLimits(video_candidates=8))
    assert meta["kind"] == "video" and meta["frame_index"] >= 2
    assert is_complete(tmp_path / "vid")


def test_rebuild_is_atomic_marker(tmp_path, astronaut_replica):
    """replica.json is the completeness marker: without it (a crash mid-write) the dir is not a replica."""
    import shutil

    d = tmp_path / "copy"
    shutil.copytree(astronaut_replica, d)
    (d / "replica.json").unlink()
    assert not is_complete(d)
    assert not list(d.glob(".*"))  # no temp leftovers from the atomic writes
