"""Writes the uint8 output of CLIP's transform of crops of images, computed
by the real Pillow, for preprocess's box tests.

usage: pillow_crops.py < jobs
Each line of stdin is IMAGE TAB x1,y1,x2,y2 TAB SIZE TAB OUT: OUT gets the
CHW uint8 result of transform(Image.open(IMAGE).crop((x1, y1, x2, y2)), SIZE)
(3*SIZE*SIZE bytes), transform being pillow_reference.py's, i.e.
clip.clip._transform with torchvision 0.14.1 up to ToTensor.
"""
import os
import sys

from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pillow_reference import transform  # noqa: E402


def main():
    opened = {}
    n = 0
    for line in sys.stdin:
        line = line.rstrip("\n")
        if not line:
            continue
        path, box, size, out = line.split("\t")
        box = tuple(int(v) for v in box.split(","))
        if path not in opened:
            im = Image.open(path)
            im.load()
            opened = {path: im}  # inputs come grouped by image
        crop = opened[path].crop(box)
        with open(out, "wb") as f:
            f.write(transform(crop, int(size)))
        n += 1
    print(n, "crops")


main()
