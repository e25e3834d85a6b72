"""Places365-Standard from its official archive, extracted into a folder: no TensorFlow.

The small-images archive ``places365standard_easyformat.tar`` (256x256 JPEGs,
about 24 GB, from places2.csail.mit.edu) extracts to::

    places365_standard/train/<class>/*.jpg     1.8 M images, <= 5000 per class
    places365_standard/val/<class>/*.jpg       36,500 images, 100 per class
    places365_standard/train.txt, val.txt      "train/<class>/<file>.jpg <label>" lists

Class folders name the scene with its sub-scene joined by ``-`` (the
category ``/f/field/wild`` is the folder ``field-wild``; ``_`` belongs to a
name: ``field_road`` is another scene), so a requested scene matches its
folder and every sub-scene folder ("field" matches both fields and not
``field_road``, as in the TFDS route). A split whose folder is flat (the ``val_256`` archive) is read
through its list (``val.txt`` or ``places365_val.txt``: ``<file> <label>``)
and ``categories_places365.txt`` (``/a/airfield 0``) for the label names.
``root`` may be ``places365_standard`` itself or the folder holding it.
"""

from __future__ import annotations

import re
from pathlib import Path

from shiftnet_jax.data.image_io import MAX_PIXELS, is_image_file, list_images, open_rgb, read_image

SPLITS = {"train": ("train",), "test": ("val", "validation"), "val": ("val",), "validation": ("val",)}
CATEGORIES = "categories_places365.txt"


def scene_key(name: str) -> str:
    """A class name in one spelling: ``/f/field/wild``, ``field-wild`` -> ``field/wild``."""
    name = re.sub(r"^/?[a-z]/", "", name.strip())
    return re.sub(r"[-/]+", "/", name)


def matches(folder: str, classes) -> bool:
    key = scene_key(folder)
    return any(key == c or key.startswith(c + "/") for c in map(scene_key, classes))


class PlacesFolderSource:
    """The images of some scenes of one split of an extracted Places365-Standard."""

    def __init__(self, root, split: str = "train", classes=None, max_pixels: int = MAX_PIXELS):
        """An image over ``max_pixels`` is an :class:`~shiftnet_jax.data.image_io.ImageTooLarge`
        error (the loader skips it with a warning, as it does unreadable files)."""
        self.max_pixels = max_pixels
        root = Path(root).expanduser()
        if (root / "places365_standard").is_dir():
            root = root / "places365_standard"
        names = SPLITS.get(split, (split,))
        folder = next((root / n for n in names if (root / n).is_dir()), None)
        if folder is None:
            raise FileNotFoundError(f"{root}: no {'/'.join(names)} folder (extract "
                                    "places365standard_easyformat.tar here: places365_standard/train/<class>/)")
        subdirs = sorted(d for d in folder.iterdir() if d.is_dir())
        if subdirs:
            picked = [d for d in subdirs if not classes or matches(d.name, classes)]
            self.paths = [p for d in picked for p in list_images(d)]
        else:
            self.paths = self._from_list(root, folder, names, classes)
        if not self.paths:
            wanted = f" of the scenes {', '.join(classes)}" if classes else ""
            raise FileNotFoundError(f"{folder}: no images{wanted}")
        self.root = folder

    @staticmethod
    def _from_list(root: Path, folder: Path, names, classes) -> list[str]:
        """A flat split folder: its list file gives each image's label."""
        lists = [root / f"{n}.txt" for n in names] + [root / f"places365_{n}.txt" for n in names]
        listing = next((p for p in lists if p.is_file()), None)
        if listing is None:
            raise FileNotFoundError(f"{folder} has no class folders and {root} no list "
                                    f"({', '.join(p.name for p in lists)})")
        labels = {}
        if (root / CATEGORIES).is_file():
            for line in (root / CATEGORIES).read_text().splitlines():
                if line.strip():
                    name, label = line.rsplit(maxsplit=1)
                    labels[int(label)] = name
        elif classes:
            raise FileNotFoundError(f"{root / CATEGORIES} is needed to pick scenes from {listing.name}")
        paths = []
        for line in listing.read_text().splitlines():
            if not line.strip():
                continue
            rel, label = line.rsplit(maxsplit=1)
            path = folder / Path(rel).name
            if is_image_file(path.name) and (not classes or matches(labels.get(int(label), ""), classes)):
                paths.append(str(path))
        return paths

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        return read_image(self.paths[i], self.max_pixels)

    def open_image(self, i, min_side=None):
        return open_rgb(self.paths[i], min_side, self.max_pixels)

    def describe(self, i):
        return self.paths[i]
