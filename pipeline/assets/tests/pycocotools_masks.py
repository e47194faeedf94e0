"""Reference masks from pycocotools, for the asset bank's parity test.

Usage: pycocotools_masks.py INSTANCES_JSON CLASS[,CLASS...]

Prints one JSON object to stdout, keyed by annotation id (as a string), for every non-crowd
annotation of the given classes:
  {"box": [x0, y0, x1, y1],   tight box of COCO.annToMask, ends exclusive (null if empty)
   "area": pixels,
   "runs": [...],             row-major runs of the cropped mask, starting with a run of zeros
   "occluded": fraction}      of the box covered by other annotations' masks and not by its own
"""

import contextlib
import json
import sys

import numpy as np
from pycocotools.coco import COCO


def runs_of(flat):
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(bounds).tolist()
    return ([0] + runs) if flat[0] else runs


def main():
    json_path, classes = sys.argv[1], sys.argv[2].split(",")
    with contextlib.redirect_stdout(sys.stderr):  # COCO() prints progress
        coco = COCO(json_path)
    wanted = set(coco.getCatIds(catNms=classes))
    out = {}
    for image_id in sorted(coco.imgs):
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[image_id], iscrowd=None))
        masks = [coco.annToMask(a).astype(bool) for a in anns]
        covered = np.logical_or.reduce(masks) if masks else None
        for ann, mask in zip(anns, masks):
            if ann["category_id"] not in wanted or ann["iscrowd"]:
                continue
            ys, xs = np.nonzero(mask)
            if xs.size == 0:
                out[str(ann["id"])] = {"box": None, "area": 0, "runs": [], "occluded": 0.0}
                continue
            x0, x1, y0, y1 = int(xs.min()), int(xs.max()) + 1, int(ys.min()), int(ys.max()) + 1
            crop = mask[y0:y1, x0:x1]
            others = covered[y0:y1, x0:x1] & ~crop
            out[str(ann["id"])] = {
                "box": [x0, y0, x1, y1],
                "area": int(mask.sum()),
                "runs": runs_of(crop.ravel().astype(np.int8)),
                "occluded": float(others.sum()) / crop.size,
            }
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
