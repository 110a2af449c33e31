from __future__ import annotations

import numpy as np
import pytest

from dfa_bench.instruct.sources.video import sample_frames
from dfa_bench.schema import ValidationError


def _write_video(path, n_frames=25):
    import av

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(n_frames):
            image = np.full((48, 64, 3), i * 10 % 256, dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_samples_every_nth_frame(tmp_path):
    video = tmp_path / "clip.mp4"
    _write_video(video)
    frames = list(sample_frames(video, every=10))
    assert [i for i, _ in frames] == [0, 10, 20]
    assert frames[0][1].size == (64, 48) and frames[0][1].mode == "RGB"
    # the frames differ as the encoded brightness ramps up
    assert np.asarray(frames[2][1]).mean() > np.asarray(frames[0][1]).mean() + 50
    assert [i for i, _ in sample_frames(video, every=4, max_frames=2)] == [0, 4]


def test_corrupt_video_names_the_file(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all")
    with pytest.raises(ValidationError, match="bad.mp4"):
        list(sample_frames(bad))
