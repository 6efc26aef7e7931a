"""ImageNet VID frames seen as an ILSVRC DET split: VID's 30 classes are DET synsets and its XML is
DET's schema (plus ``trackid`` and the like, which the DET reader ignores), so the frames only need
DET's folders and an image list. Used to measure the detector's parts (proposal recall, training)
on real photos where only VID frames are at hand."""

from __future__ import annotations

import glob
import os

from core.errors import DataError


def vid_as_det(vid_root: str, out: str, split: str = "val") -> int:
    """Make ``out`` an ILSVRC DET root whose ``split`` holds every annotated frame under
    ``vid_root`` (``<vid_root>/{Data,Annotations}/VID/...``), by symbolic links; returns the
    number of frames. ``out`` then needs ``data.blacklist=none`` (VID has no DET blacklist)."""
    xmls = sorted(glob.glob(os.path.join(vid_root, "Annotations", "VID", "**", "*.xml"), recursive=True))
    lines = []
    for k, xml in enumerate(xmls, 1):
        rel = os.path.relpath(xml, os.path.join(vid_root, "Annotations", "VID"))[:-4]
        image = os.path.join(vid_root, "Data", "VID", rel + ".JPEG")
        if not os.path.isfile(image):
            continue
        name = rel.replace(os.sep, "__")
        for src, dst in ((image, f"Data/DET/{split}/{name}.JPEG"), (xml, f"Annotations/DET/{split}/{name}.xml")):
            path = os.path.join(out, dst)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            if not os.path.lexists(path):
                os.symlink(os.path.abspath(src), path)
        lines.append(f"{name} {k}")
    if not lines:
        raise DataError(f"{vid_root}: no annotated VID frames (Annotations/VID/**/*.xml with Data/VID/**/*.JPEG)")
    os.makedirs(os.path.join(out, "ImageSets", "DET"), exist_ok=True)
    with open(os.path.join(out, "ImageSets", "DET", f"{split}.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return len(lines)
