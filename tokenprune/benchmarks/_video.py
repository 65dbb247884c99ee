"""Video frames, sampled uniformly: from a folder of frame images (PIL only)
or a video file (PyAV or decord, whichever is importable)."""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import NamedTuple

from ._data import BenchmarkDataError

VIDEO_SUFFIXES = (".mp4", ".MP4", ".mkv", ".webm", ".avi", ".mov")
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})


def uniform_indices(total: int, count: int) -> list[int]:
    """``count`` frame indices spread evenly over ``total`` frames, both ends
    included (numpy ``linspace(0, total-1, count)`` truncated to int, the rule
    of lmms-eval's video models); all frames when there are fewer."""
    import numpy as np

    if total <= 0:
        return []
    if count >= total:
        return list(range(total))
    return [int(i) for i in np.linspace(0, total - 1, count, dtype=int)]


class SampledFrames(NamedTuple):
    """The frames sampled from one video, and where they came from."""

    frames: list  # PIL images
    indices: list[int]  # each frame's index in the source
    fps: float | None = None  # the source's frame rate (video files; a frame folder has none)
    total: int | None = None  # frames in the source video (video files)

    def meta(self) -> dict:
        """``Sample.meta`` entries: ``frame_indices``, plus ``video_fps`` and ``video_frames`` for a video file
        (what the Qwen adapters turn into timestamps; see models/video_clip.py)."""
        out = {"frame_indices": self.indices}
        if self.total is not None:
            out["video_frames"] = self.total
        if self.fps is not None:
            out["video_fps"] = self.fps
        return out


def find_video(benchmark: str, folder: str | Path, stem: str) -> Path:
    """The frame folder ``folder/stem/`` or the file ``folder/stem.<ext>``."""
    folder = Path(folder).expanduser()
    candidates = [folder / stem] + [folder / f"{stem}{suffix}" for suffix in VIDEO_SUFFIXES]
    for candidate in candidates:
        if candidate.exists():
            return candidate
    raise BenchmarkDataError(
        f"benchmark {benchmark!r}: no video {stem!r} in {str(folder)!r} (looked for a frame folder "
        f"{stem}/ and {stem}{{{','.join(VIDEO_SUFFIXES)}}}); set the 'video_dir' option"
    )


def _natural(name: str):
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def load_frames(benchmark: str, path: Path, count: int) -> SampledFrames:
    """``count`` uniform samples of a frame folder or a video file."""
    if path.is_dir():
        files = sorted((p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES),
                       key=lambda p: _natural(p.name))
        if not files:
            raise BenchmarkDataError(f"benchmark {benchmark!r}: frame folder {str(path)!r} has no images")
        from PIL import Image

        picks = uniform_indices(len(files), count)
        return SampledFrames([Image.open(files[i]).convert("RGB") for i in picks], picks)
    # decord seeks to the sampled frames; PyAV decodes up to the last one.
    decoder = next((d for d in (_frames_decord, _frames_av)
                    if importlib.util.find_spec(d.__name__.split("_")[-1]) is not None), None)
    if decoder is None:
        raise BenchmarkDataError(
            f"benchmark {benchmark!r}: decoding {str(path)!r} needs PyAV or decord; install one "
            "(`pip install av`), or extract the frames into a folder of images named after the video"
        )
    try:
        clip = decoder(path, count)
    except Exception as exc:
        raise BenchmarkDataError(
            f"benchmark {benchmark!r}: could not decode {str(path)!r}: {type(exc).__name__}: {exc}"
        ) from exc
    if not clip.frames:
        raise BenchmarkDataError(f"benchmark {benchmark!r}: no frames could be decoded from {str(path)!r}")
    return clip


def _fps(rate) -> float | None:
    return float(rate) if rate else None  # a container may not know its rate (None or 0)


def _frames_av(path: Path, count: int) -> SampledFrames:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        fps = _fps(stream.average_rate)
        total = stream.frames or sum(1 for _ in container.decode(stream))
    wanted = uniform_indices(total, count)
    if not wanted:
        return SampledFrames([], [])
    want = set(wanted)
    frames = {}
    with av.open(str(path)) as container:
        for index, frame in enumerate(container.decode(container.streams.video[0])):
            if index in want:
                frames[index] = frame.to_image().convert("RGB")
            if index >= wanted[-1]:
                break
    # A container that over-reports its frame count yields fewer frames than promised.
    kept = [i for i in wanted if i in frames]
    return SampledFrames([frames[i] for i in kept], kept, fps, total)


def _frames_decord(path: Path, count: int) -> SampledFrames:
    import decord
    from PIL import Image

    reader = decord.VideoReader(str(path))
    wanted = uniform_indices(len(reader), count)
    if not wanted:
        return SampledFrames([], [])
    batch = reader.get_batch(wanted).asnumpy()
    return SampledFrames([Image.fromarray(frame).convert("RGB") for frame in batch], wanted, _fps(reader.get_avg_fps()),
                len(reader))
