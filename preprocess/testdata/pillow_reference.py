"""Writes test images in several Pillow modes and the uint8 output of CLIP's
transform for each, computed by the real Pillow, for preprocess's tests.

usage: pillow_reference.py DIR SIZE
Every image already in DIR (written by the Go test) is processed too. For
each image NAME, NAME.u8 holds the CHW uint8 result (3*SIZE*SIZE bytes).
The transform mirrors clip.clip._transform with torchvision 0.14.1:
Resize(SIZE, bicubic) of the shorter side, CenterCrop(SIZE), RGB.
"""
import os
import sys

import numpy as np
from PIL import Image


def transform(im, size):
    w, h = im.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    im = im.resize((new_w, new_h), Image.BICUBIC)
    top = int(round((new_h - size) / 2.0))
    left = int(round((new_w - size) / 2.0))
    im = im.crop((left, top, left + size, top + size)).convert("RGB")
    return np.asarray(im).transpose(2, 0, 1).tobytes()


def pattern(w, h, bands, seed):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    out = []
    for b in range(bands):
        fx, fy = rng.uniform(0.01, 0.3, 2)
        v = 127.5 + 127.5 * np.sin(x * fx + b) * np.cos(y * fy - b)
        v += rng.normal(0, 30, (h, w))  # sharp detail so kernels overshoot
        out.append(np.clip(v, 0, 255).astype(np.uint8))
    return np.stack(out, axis=-1)


def main():
    d, size = sys.argv[1], int(sys.argv[2])
    cases = [
        ("L", 300, 200), ("L", 31, 47), ("LA", 250, 333), ("RGBA", 401, 299),
        ("RGBA", 50, 41), ("RGB", 225, 224), ("RGB", 224, 223), ("RGB", 5, 700),
        ("RGB", 700, 9), ("RGB", 1023, 767), ("LA", 224, 600), ("RGBA", 224, 224),
    ]
    for i, (mode, w, h) in enumerate(cases):
        arr = pattern(w, h, len(mode), i)
        if "A" in mode:
            arr[..., -1][::7, ::5] = 0  # fully transparent pixels
            arr[..., -1][1::3, :] = 255  # and opaque ones
        im = Image.fromarray(arr[..., 0] if mode == "L" else arr, mode)
        im.save(os.path.join(d, f"py{i}_{mode}_{w}x{h}.png"))
        if mode in ("L", "RGB"):
            im.save(os.path.join(d, f"py{i}_{mode}_{w}x{h}.jpg"), quality=90)
            if mode == "RGB":
                im.save(os.path.join(d, f"py{i}_{mode}_{w}x{h}_444.jpg"), quality=95, subsampling=0)
    for name in sorted(os.listdir(d)):
        if name.endswith((".png", ".jpg")):
            with Image.open(os.path.join(d, name)) as im:
                data = transform(im, size)
            with open(os.path.join(d, name + ".u8"), "wb") as f:
                f.write(data)
            print(name, Image.open(os.path.join(d, name)).mode)


if __name__ == "__main__":
    main()
