"""The converter's transcode against bare ffmpeg, on the same files.

``make bench-convert`` (or ``python -m bench.convert``) generates a 3-minute
and a 60-minute MP3 with ffmpeg in a temporary directory, then, for each
target, runs two things in turn, each in a fresh worker process:

- converter: ``Converter.produce``, the code the push handler runs minus the
  network: fetch the original from ``file://`` storage, transcode it with the
  catalog's settings, store the output (the "outside ffmpeg" column is the
  part of its time not spent waiting for ffmpeg);
- bare: the same encoder settings as one plain ffmpeg command, from the
  stored original to a file.

The runs of the two sides alternate, so a busy machine slows both alike. It
prints the median wall time and CPU time (user + system, of the worker's
Python for the converter and of ffmpeg for both) of each side and their
ratios, and peak resident memory: ffmpeg's own peak on both sides
(``RUSAGE_CHILDREN`` of the worker) and, for the converter, the worker's
Python process plus ffmpeg. On a loaded machine the CPU ratio is the steadier
of the two.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from services.converter.conversion import ConversionRequest, Converter
from services.converter.ffmpeg import (
    FfmpegBinary,
    Transcoded,
    Transcoder,
    locate_ffmpeg,
)
from services.shared import formats
from services.shared.storage import FileStorage

log = logging.getLogger("bench.convert")

SHORT_TARGETS = formats.names()
LONG_TARGETS = ("wav", "ogg")
SOURCE_FORMAT = formats.get("mp3")


@dataclass(frozen=True)
class Case:
    clip: str
    minutes: float
    source_key: str
    target: formats.AudioFormat
    runs: int


@dataclass(frozen=True)
class Sample:
    seconds: float
    cpu_seconds: float
    io_seconds: float
    ffmpeg_peak_kib: int
    process_peak_kib: int


class _NoPublisher:
    """The benchmark stops before publishing: there is no network here."""

    def publish(self, topic: str, data: bytes, attributes: dict[str, str]) -> str:
        raise AssertionError("the benchmark does not publish")

    def close(self) -> None:
        return None


class _TimedTranscoder(Transcoder):
    """Transcoder that adds up the time spent inside ffmpeg."""

    ffmpeg_seconds = 0.0

    def transcode(
        self, source: Path, output: Path, target: formats.AudioFormat
    ) -> Transcoded:
        started = time.perf_counter()
        try:
            return super().transcode(source, output, target)
        finally:
            self.ffmpeg_seconds += time.perf_counter() - started


def bare_command(
    ffmpeg: str, source: Path, output: Path, target: formats.AudioFormat
) -> list[str]:
    """What someone would type: the catalog's encoder settings, nothing else."""
    return [
        ffmpeg,
        "-nostdin",
        "-v",
        "error",
        "-y",
        "-i",
        str(source),
        "-vn",
        "-map_metadata",
        "0",
        "-c:a",
        target.codec,
        *target.encoder_args,
        "-f",
        target.muxer,
        str(output),
    ]


# Workers: one measured run each, reporting JSON on stdout -----------------


def _usage() -> tuple[int, int, float, float]:
    """Peak RSS (KiB) and CPU seconds of this process and of its children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (
        own.ru_maxrss,
        children.ru_maxrss,
        own.ru_utime + own.ru_stime,
        children.ru_utime + children.ru_stime,
    )


def _worker_converter(args: argparse.Namespace) -> dict[str, float]:
    storage = FileStorage(Path(args.root))
    transcoder = _TimedTranscoder(FfmpegBinary(args.ffmpeg, "benchmark"), 7200)
    converter = Converter(storage, _NoPublisher(), transcoder, Path(args.work))
    request = ConversionRequest(
        task_id=args.task,
        version=args.version,
        source_key=args.source_key,
        source_format=SOURCE_FORMAT.name,
        target=formats.get(args.target),
        filename=f"bench.{SOURCE_FORMAT.extension}",
    )
    _, _, cpu_before, _ = _usage()
    started = time.perf_counter()
    output = converter.produce(request)
    seconds = time.perf_counter() - started
    assert output is not None and output.size_bytes > 0
    own, children, own_cpu, children_cpu = _usage()
    storage.delete(output.key)
    return {
        "seconds": seconds,
        "cpu_seconds": own_cpu - cpu_before + children_cpu,
        "io_seconds": seconds - transcoder.ffmpeg_seconds,
        "ffmpeg_peak_kib": children,
        "process_peak_kib": own + children,
        "size_bytes": output.size_bytes,
    }


def _worker_bare(args: argparse.Namespace) -> dict[str, float]:
    output = Path(args.work) / f"bare.{args.target}"
    command = bare_command(
        args.ffmpeg, Path(args.source), output, formats.get(args.target)
    )
    started = time.perf_counter()
    subprocess.run(command, check=True)
    seconds = time.perf_counter() - started
    size = output.stat().st_size
    output.unlink()
    _, children, _, children_cpu = _usage()
    return {
        "seconds": seconds,
        "cpu_seconds": children_cpu,
        "io_seconds": 0.0,
        "ffmpeg_peak_kib": children,
        "process_peak_kib": children,
        "size_bytes": size,
    }


# The driver ---------------------------------------------------------------


def generate(ffmpeg: str, path: Path, minutes: float) -> None:
    """A stereo MP3 of pink noise under a tone, tagged, ``minutes`` long."""
    seconds = f"{minutes * 60:g}"
    subprocess.run(
        [
            ffmpeg,
            "-nostdin",
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            f"anoisesrc=color=pink:amplitude=0.2:sample_rate=44100:d={seconds}",
            "-f",
            "lavfi",
            "-i",
            f"sine=frequency=330:sample_rate=44100:d={seconds}",
            "-filter_complex",
            "[0:a][1:a]amerge=inputs=2[a]",
            "-map",
            "[a]",
            "-metadata",
            "title=Benchmark clip",
            "-metadata",
            "artist=Audiomill",
            "-c:a",
            "libmp3lame",
            "-q:a",
            "2",
            str(path),
        ],
        check=True,
    )


def _run_worker(kind: str, extra: list[str]) -> Sample:
    done = subprocess.run(
        [sys.executable, "-m", "bench.convert", kind, *extra],
        check=True,
        capture_output=True,
        text=True,
    )
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return Sample(
        seconds=report["seconds"],
        cpu_seconds=report["cpu_seconds"],
        io_seconds=report["io_seconds"],
        ffmpeg_peak_kib=report["ffmpeg_peak_kib"],
        process_peak_kib=report["process_peak_kib"],
    )


def measure(
    case: Case, ffmpeg: str, root: Path, work: Path, first_task: int
) -> tuple[list[Sample], list[Sample]]:
    converter, bare = [], []
    common = ["--ffmpeg", ffmpeg, "--target", case.target.name, "--work", str(work)]
    for run in range(case.runs):
        convert_args = [
            *common,
            "--root",
            str(root),
            "--source-key",
            case.source_key,
            "--task",
            str(first_task),
            "--version",
            str(run + 1),
        ]
        bare_args = [*common, "--source", str(root / case.source_key)]
        # Alternate which side goes first, so neither always runs warm.
        order = [("converter", convert_args), ("bare", bare_args)]
        if run % 2:
            order.reverse()
        for kind, extra in order:
            sample = _run_worker(f"worker-{kind}", extra)
            (converter if kind == "converter" else bare).append(sample)
    return converter, bare


def _mib(kib: float) -> str:
    return f"{kib / 1024:.0f}"


def _median(samples: list[Sample], field: str) -> float:
    return statistics.median(getattr(s, field) for s in samples)


def ratios(converter: list[Sample], bare: list[Sample]) -> tuple[float, float]:
    """Converter over bare ffmpeg: wall time, CPU time (medians)."""
    return (
        _median(converter, "seconds") / _median(bare, "seconds"),
        _median(converter, "cpu_seconds") / _median(bare, "cpu_seconds"),
    )


def render(rows: list[tuple[Case, list[Sample], list[Sample]]]) -> str:
    lines = [
        "| clip | target | bare ffmpeg s | converter s | wall ratio"
        " | bare CPU s | converter CPU s | CPU ratio | outside ffmpeg s"
        " | bare ffmpeg peak MiB | converter's ffmpeg peak MiB"
        " | converter Python+ffmpeg peak MiB |",
        "|" + "---|" * 12,
    ]
    for case, converter, bare in rows:
        wall, cpu = ratios(converter, bare)
        lines.append(
            f"| {case.clip} | {case.target.name} "
            f"| {_median(bare, 'seconds'):.2f} | {_median(converter, 'seconds'):.2f} "
            f"| {wall:.3f} "
            f"| {_median(bare, 'cpu_seconds'):.2f} "
            f"| {_median(converter, 'cpu_seconds'):.2f} | {cpu:.3f} "
            f"| {_median(converter, 'io_seconds'):.2f} "
            f"| {_mib(max(s.ffmpeg_peak_kib for s in bare))} "
            f"| {_mib(max(s.ffmpeg_peak_kib for s in converter))} "
            f"| {_mib(max(s.process_peak_kib for s in converter))} |"
        )
    return "\n".join(lines)


def drive(args: argparse.Namespace) -> int:
    binary = FfmpegBinary(args.ffmpeg, "given") if args.ffmpeg else locate_ffmpeg()
    out = sys.stdout
    out.write(f"ffmpeg: {binary.describe()}\n")
    out.write(
        f"cpus: {os.cpu_count()}, python: {sys.version.split()[0]}, "
        f"load average: {os.getloadavg()[0]:.1f}\n"
    )
    with tempfile.TemporaryDirectory(prefix="bench-convert-", dir=args.dir) as tmp:
        base = Path(tmp)
        root, work = base / "storage", base / "work"
        work.mkdir()
        storage = FileStorage(root)
        clips = [
            (
                f"{args.short_minutes:g} min",
                args.short_minutes,
                SHORT_TARGETS,
                args.runs,
            )
        ]
        if args.long_minutes > 0:
            clips.append(
                (
                    f"{args.long_minutes:g} min",
                    args.long_minutes,
                    LONG_TARGETS,
                    args.long_runs,
                )
            )

        cases = []
        for number, (clip, minutes, targets, runs) in enumerate(clips, start=1):
            made = base / f"clip-{number}.mp3"
            started = time.perf_counter()
            generate(binary.path, made, minutes)
            key = f"tasks/{number}/original.mp3"
            storage.upload_from(key, made, SOURCE_FORMAT.media_type)
            made.unlink()
            out.write(
                f"generated {clip} mp3: {storage.size(key) / 2**20:.1f} MiB "
                f"in {time.perf_counter() - started:.1f} s\n"
            )
            for name in targets:
                if args.only and name not in args.only:
                    continue
                cases.append(Case(clip, minutes, key, formats.get(name), runs))

        rows = []
        for index, case in enumerate(cases):
            out.write(f"measuring {case.clip} -> {case.target.name} ...\n")
            out.flush()
            converter, bare = measure(case, binary.path, root, work, 100 + index)
            rows.append((case, converter, bare))
    out.write(
        "\nmedian wall time of the runs of each side (interleaved); "
        "peaks are the largest of the runs\n\n"
    )
    out.write(render(rows) + "\n")
    walls, cpus = zip(*(ratios(c, b) for _, c, b in rows), strict=True)
    out.write(
        f"\nworst ratio: wall {max(walls):.3f}, CPU {max(cpus):.3f} (bar: 1.05); "
        f"load average now {os.getloadavg()[0]:.1f}\n"
    )
    return 0


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.convert")
    sub = parser.add_subparsers(dest="command")
    for kind in ("worker-converter", "worker-bare"):
        worker = sub.add_parser(kind)
        worker.add_argument("--ffmpeg", required=True)
        worker.add_argument("--target", required=True)
        worker.add_argument("--work", required=True)
        worker.add_argument("--root")
        worker.add_argument("--source-key")
        worker.add_argument("--source")
        worker.add_argument("--task", type=int, default=1)
        worker.add_argument("--version", type=int, default=1)
    parser.add_argument("--runs", type=int, default=5, help="runs per side, short")
    parser.add_argument(
        "--long-runs", type=int, default=3, help="runs per side, long clip"
    )
    parser.add_argument("--short-minutes", type=float, default=3)
    parser.add_argument(
        "--long-minutes", type=float, default=60, help="0 leaves the long clip out"
    )
    parser.add_argument("--only", nargs="*", help="only these target formats")
    parser.add_argument("--dir", help="where the temporary directory goes")
    parser.add_argument(
        "--ffmpeg", help="this ffmpeg on both sides instead of the converter's own"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.command == "worker-converter":
        sys.stdout.write(json.dumps(_worker_converter(args)) + "\n")
        return 0
    if args.command == "worker-bare":
        sys.stdout.write(json.dumps(_worker_bare(args)) + "\n")
        return 0
    logging.basicConfig(level=logging.WARNING)
    return drive(args)


if __name__ == "__main__":
    raise SystemExit(main())
