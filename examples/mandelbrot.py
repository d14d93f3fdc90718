"""The Mandelbrot set, computed by a compiled step that is fed and fetched again and again: each call
advances z <- z^2 + c by a few iterations on every pixel and counts the pixels still bounded, and the
Python loop feeds its outputs back in. The escape counts become a PNG (written with zlib and struct).

    python examples/mandelbrot.py                  # 40 calls of 5 iterations, mandelbrot.png
    python examples/mandelbrot.py --steps 20
"""
import argparse
import struct
import zlib

import numpy as np

import kernelflow as kf


def make_step(iterations: int):
    def step(zr, zi, cr, ci, counts):
        for _ in range(iterations):  # unrolled into the graph
            bounded = zr * zr + zi * zi <= 4.0
            # once a point escapes its z is frozen, so nothing overflows
            zr, zi = np.where(bounded, zr * zr - zi * zi + cr, zr), np.where(bounded, 2.0 * zr * zi + ci, zi)
            counts = counts + bounded.astype(counts.dtype)
        return zr, zi, counts
    return step


def colorize(counts: np.ndarray, max_count: int) -> np.ndarray:
    """Escape counts -> RGB uint8 (points that never escaped are black)."""
    t = np.sqrt(counts / max_count)
    rgb = np.stack([9 * (1 - t) * t ** 3, 15 * (1 - t) ** 2 * t ** 2, 8.5 * (1 - t) ** 3 * t], axis=-1)
    rgb[counts >= max_count] = 0.0
    return (np.clip(rgb, 0, 1) * 255).astype(np.uint8)


def write_png(path: str, rgb: np.ndarray) -> None:
    """A minimal PNG: 8-bit RGB, no interlacing, every scanline with filter type 0."""
    height, width, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].tobytes() for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # depth 8, colour type 2 (RGB)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9))
                + chunk(b"IEND", b""))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40, help="compiled calls (default 40)")
    parser.add_argument("--iterations", type=int, default=5, help="iterations per call (default 5)")
    parser.add_argument("--width", type=int, default=480)
    parser.add_argument("--height", type=int, default=320)
    parser.add_argument("--output", default="mandelbrot.png")
    parser.add_argument("--backend", default="numba", help="numba (default) or interpret")
    args = parser.parse_args(argv)

    xs = np.linspace(-2.2, 0.8, args.width, dtype=np.float32)
    ys = np.linspace(-1.0, 1.0, args.height, dtype=np.float32)
    cr, ci = np.meshgrid(xs, ys)
    zr, zi = np.zeros_like(cr), np.zeros_like(ci)
    counts = np.zeros_like(cr)
    step = kf.jit(make_step(args.iterations), backend=args.backend)
    for call in range(args.steps):
        zr, zi, counts = step(zr, zi, cr, ci, counts)  # fetched as numpy arrays, fed straight back
    max_count = args.steps * args.iterations
    inside = float(np.mean(counts >= max_count))
    write_png(args.output, colorize(counts, max_count))
    print(f"{args.steps} calls x {args.iterations} iterations on {args.width}x{args.height} pixels: "
          f"{inside:.1%} of them still bounded; image saved to {args.output}")
    return {"counts": counts, "inside": inside, "path": args.output}


if __name__ == "__main__":
    main()
