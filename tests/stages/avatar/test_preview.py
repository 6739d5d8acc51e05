"""`cvi-lab replica preview` writes a playable MP4 with video and audio of the expected length."""

import av

from cvi_lab.stages.avatar.preview import main


def test_preview_writes_playable_mp4(tmp_path, astronaut_replica):
    out = tmp_path / "preview.mp4"
    rc = main(["--replica-dir", str(astronaut_replica), "--text", "Hello, nice to meet you.", "--out", str(out),
               "--greenscreen", "--seconds", "3", "--width", "256", "--height", "256"])
    assert rc == 0 and out.stat().st_size > 10_000
    with av.open(str(out)) as c:
        kinds = {s.type for s in c.streams}
        assert kinds == {"video", "audio"}
        duration = c.duration / 1e6
        frames = [f for f in c.decode(video=0)]
    assert len(frames) == 75 and abs(duration - 3.0) < 0.2
    assert frames[0].width == 256


def test_preview_bad_image_reports_error(tmp_path, capsys):
    bad = tmp_path / "x.png"
    bad.write_bytes(b"not a png")
    assert main(["--image", str(bad), "--out", str(tmp_path / "o.mp4")]) == 2
    assert "cannot read image" in capsys.readouterr().err
